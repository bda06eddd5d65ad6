"""Diagrams: the graph interpreter behind them, gc.scope, and the pictures themselves
(the numbers of DESIGN.md section 4 on the wires, golden DOT, escaping, no Graphviz)."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from support import example
import sympy as sp

import graphc as gc
from graphc.diagrams.evaluate import Evaluation, evaluate, prepare_inputs

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
NEURON_POINT = {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0}
CIRCUIT_POINT = {"x": -2.0, "y": 5.0, "z": -4.0}
HAS_DOT = subprocess.run(["which", "dot"], capture_output=True).returncode == 0
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot program is not installed")


def svg_texts(path):
    """Every text of an SVG file, which must be well-formed XML."""
    root = ElementTree.parse(path).getroot()
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


@gc.graph(wrt=("W1", "b1", "W2", "b2"))
def scoped_mlp(x: gc.Tensor["B", 6], y: gc.Tensor["B", 3],
               W1: gc.Tensor[5, 6], b1: gc.Tensor[5],
               W2: gc.Tensor[3, 5], b2: gc.Tensor[3]):
    with gc.scope("layer1"):
        h = gc.relu(x @ W1.T + b1).named("h")
    with gc.scope("layer2"):
        logits = h @ W2.T + b2
    with gc.scope("loss"):
        return gc.softmax_cross_entropy(logits, y)


def mlp_values(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, 6)), "y": np.eye(3)[rng.integers(0, 3, batch)],
            "W1": rng.standard_normal((5, 6)), "b1": rng.standard_normal(5),
            "W2": rng.standard_normal((3, 5)), "b2": rng.standard_normal(3)}


# ---- the interpreter: every node's value, every node's and edge's gradient ------------

swish = gc.elementwise("swish_render_test", lambda x: x / (1 + sp.exp(-x)))   # no NumPy reference


@gc.graph
def many_ops(a: gc.Tensor["B", 4], b: gc.Tensor[4], c):
    s = gc.leaky_relu(a, alpha=0.1) + gc.elu(a) * b - gc.where(a > 0, a, c)
    t = gc.concatenate([s, gc.softplus(s)], axis=1).reshape(-1, 4, 2)
    u = gc.transpose(t, (0, 2, 1))[:, 0, 1:3]
    v = swish(u) / (1 + gc.abs(c)) + gc.max(s, axis=1, keepdims=True).mean()
    return gc.sum(gc.tanh(v) * gc.sigmoid(a[:, :2])) + gc.l2(b)


@pytest.mark.parametrize("graph, point", [
    (example("neuron").neuron, lambda rng: NEURON_POINT),
    (example("wx_norm").wx_norm, lambda rng: {"W": rng.standard_normal((2, 2)), "x": rng.standard_normal(2)}),
    (scoped_mlp, lambda rng: mlp_values()),
    (many_ops, lambda rng: {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(4), "c": 0.3}),
])
def test_interpreter_agrees_with_compiled_code(graph, point):
    values = point(np.random.default_rng(1))
    fn = gc.compile(graph, wrt=graph.input_names)
    value, grads = fn.value_and_grad(**values)
    ev = Evaluation(graph, values)
    np.testing.assert_allclose(ev.values[graph.outputs[0][1]], value, rtol=1e-12, atol=1e-12)
    for name, g in zip(fn.wrt, grads):
        np.testing.assert_allclose(ev.grad(graph.input(name)), g, rtol=1e-10, atol=1e-12)


def test_evaluate_gives_every_node():
    g = example("neuron").neuron
    inputs, dims = prepare_inputs(g, NEURON_POINT)
    values = evaluate(g, inputs, dims)
    assert [round(float(values[n]), 5) for n in g.nodes if n.op.kind != "input"] == \
        [-2.0, 6.0, 4.0, 1.0, 0.73106]


def test_edges_of_a_value_used_twice_carry_their_own_gradients():
    @gc.graph
    def f(x, y):
        return x * y + gc.exp(x)

    ev = Evaluation(f, {"x": 0.5, "y": 3.0})
    x = f.input("x")
    mul, exp = [n for n in f.nodes if n.op.name in ("mul", "exp")]
    assert ev.edge(mul, 0) == pytest.approx(3.0)               # the mul gate swaps: y
    assert ev.edge(exp, 0) == pytest.approx(np.exp(0.5))       # exp: its own output
    assert ev.grad(x) == pytest.approx(3.0 + np.exp(0.5))      # the copy gate adds them


def test_a_tensor_output_is_seeded_with_grad_out():
    g = example("relu_vector").relu_vector
    ev = Evaluation(g, {"x": [1, -2, 3, -1]}, grad_out=[4, -1, 5, 9])
    np.testing.assert_array_equal(ev.grad(g.input("x")), [4, 0, 5, 0])
    ones = Evaluation(g, {"x": [1, -2, 3, -1]})
    np.testing.assert_array_equal(ones.grad(g.input("x")), [1, 0, 1, 0])


@pytest.mark.parametrize("values, words", [
    ({"w0": 1.0}, ["no value for input", "x0"]),
    ({**NEURON_POINT, "q": 1.0}, ["no input 'q'", "w0, x0"]),
    ({**NEURON_POINT, "w0": [1.0, 2.0]}, ["'w0'", "shape ()", "(2,)"]),
    ({**NEURON_POINT, "w0": "two"}, ["'w0'", "not a number"]),
])
def test_bad_values_are_named(values, words):
    with pytest.raises(gc.GraphError) as e:
        gc.render(example("neuron").neuron, values)
    for word in words:
        assert word in str(e.value)


def test_symbolic_dimensions_must_agree():
    values = mlp_values()
    values["y"] = np.eye(3)[[0, 1, 2]]   # 3 rows, x has 4
    with pytest.raises(gc.GraphError, match="dimension B is 4"):
        gc.render(scoped_mlp, values)


# ---- gc.scope ---------------------------------------------------------------------------

def test_scopes_label_nodes_and_nest():
    scopes = {n.op.name: n.scope for n in scoped_mlp.nodes}
    assert scopes["input"] == () and scopes["relu"] == ("layer1",)
    assert scopes["custom_vjp"] == ("loss",)

    @gc.graph
    def inner(x):
        with gc.scope("attn"):
            return gc.exp(x)

    @gc.graph
    def outer(x):
        with gc.scope("block/a"):
            y = gc.tanh(x)
            with gc.scope("b"):
                z = inner(y)
        return z * 2

    by_op = {n.op.name: n.scope for n in outer.nodes}
    assert by_op["tanh"] == ("block", "a")
    assert by_op["exp"] == ("block", "a", "b", "attn")   # an inlined graph's scopes nest
    assert by_op["mul"] == ()


def test_scope_outside_a_trace_or_without_a_name():
    with pytest.raises(gc.GraphError, match="inside a function decorated with @gc.graph"):
        with gc.scope("layer1"):
            pass
    for bad in ("", "a//b", 3):
        with pytest.raises(gc.GraphError, match="gc.scope needs a name"):
            with gc.scope(bad):
                pass


# ---- the lecture's pictures -----------------------------------------------------------------

@needs_dot
def test_neuron_svg_shows_the_lecture_numbers(tmp_path):
    g = example("neuron").neuron
    digraph = gc.render(g, values=NEURON_POINT, path=tmp_path / "neuron.svg")
    assert digraph.source.startswith("digraph neuron {")
    texts = svg_texts(tmp_path / "neuron.svg")
    for name in ("w0", "x0", "w1", "x1", "w2", "L", "*", "+", "σ"):
        assert name in texts, name
    # values forward: 2, -1, -3, -2, -3; w0*x0 = -2, w1*x1 = 6, 4, 1, sigma = 0.73
    for value in ("2.00", "-1.00", "-3.00", "-2.00", "6.00", "4.00", "1.00", "0.73"):
        assert value in texts, value
    # gradients back, as on the slide: -0.20, 0.39, -0.39, -0.59, 0.20 and the seed 1.00
    for grad in ("-0.20", "0.39", "-0.39", "-0.59", "0.20"):
        assert grad in texts, grad

    gc.render(g, values=NEURON_POINT, path=tmp_path / "precise.svg", precision=5)
    texts = svg_texts(tmp_path / "precise.svg")
    for number in ("0.73106", "-0.19661", "0.39322", "-0.39322", "-0.58984", "0.19661"):
        assert number in texts, number


@needs_dot
def test_circuit_svg(tmp_path):
    gc.render(example("circuit").circuit, CIRCUIT_POINT, tmp_path / "circuit.svg", precision=0)
    texts = svg_texts(tmp_path / "circuit.svg")
    # x, y, z and q = x + y = 3 forward, f = -12; df/dx = df/dy = -4, df/dz = 3, df/dq = z = -4
    assert texts.count("-4") == 4 and texts.count("3") == 2
    for text in ("-2", "5", "-12", "q", "+", "*", "x", "y", "z", "L"):
        assert text in texts, text


def test_the_long_sigmoid_circuit_labels_gates_with_their_constants():
    """The lecture's second circuit: 1 / (1 + exp(-(w0 x0 + w1 x1 + w2)))."""
    @gc.graph
    def sigmoid_circuit(w0, x0, w1, x1, w2):
        return 1 / (1 + gc.exp(-(w0 * x0 + w1 * x1 + w2)))

    source = gc.render(sigmoid_circuit, NEURON_POINT).source
    labels = re.findall(r"^\s*n\d+ \[label=<([^<>]*)>", source, re.M)   # the ops (inputs are bold)
    assert labels == ["*", "*", "+", "+", "-", "exp", "+1", "1/x"]
    # the slide: exp gives 0.37 and receives -0.53, +1 gives 1.37, 1/x gives 0.73
    for text in (">0.37<", ">-0.53<", ">1.37<", ">0.73<", ">-0.20<", ">0.39<"):
        assert text in source, text

    @gc.graph
    def consts(x, y):
        return gc.where(x > 0, 2 * x, 0.5) + gc.maximum(0, y) + 3 ** x

    source = gc.render(consts, {"x": 1.0, "y": -1.0}).source
    for label in ("&gt;0", "*2", "max(0, x)", "3**x"):   # escaped: > is markup
        assert f"[label=<{label}>" in source, label
    assert re.search(r'c\w+ \[label=<0.5> fontcolor="#777777" fontsize=12 shape=plaintext\]', source)


def test_golden_neuron_dot():
    """The DOT text is a golden file: the same graph and values give the same bytes."""
    source = gc.render(example("neuron").neuron, NEURON_POINT).source
    golden = GOLDEN / "neuron.dot"
    assert source == golden.read_text(encoding="utf-8")
    assert "id(" not in source and not re.search(r"0x[0-9a-f]{6,}", source)


def test_dot_text_is_the_same_in_another_process(tmp_path):
    code = textwrap.dedent(f"""
        import sys, importlib.util
        spec = importlib.util.spec_from_file_location("m", {str(ROOT / "examples" / "vanishing_gradients.py")!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        import graphc as gc
        d = gc.render(m.sigmoid_vs_relu, m.inputs(m.xavier), collapse=True)
        sys.stdout.write(d.source)
    """)
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONHASHSEED": seed}) for seed in ("1", "2")]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.startswith("digraph sigmoid_vs_relu {")


@needs_dot
def test_tensor_mlp_shows_shapes_scopes_and_a_legend(tmp_path):
    gc.render(scoped_mlp, mlp_values(), tmp_path / "mlp.svg")
    texts = svg_texts(tmp_path / "mlp.svg")
    for shape in ("(B, 6)", "(5, 6)", "(B, 5)", "(3,)", "(B, 3)"):
        assert shape in texts, shape
    for label in ("layer1", "layer2", "loss", "@", "relu", "softmax_cross_entropy", "h"):
        assert label in texts, label
    assert any(t.startswith("μ=") and "‖·‖=" in t for t in texts)
    assert "‖gradient‖, log scale" in texts
    assert (tmp_path / "mlp.svg").read_text().count('class="cluster"') == 3

    structure = gc.render(scoped_mlp, path=tmp_path / "structure.svg").source   # no values
    assert "(B, 6)" in structure and "μ=" not in structure and "legend" not in structure


def test_collapse_draws_each_scope_as_one_box():
    full = gc.render(scoped_mlp, mlp_values()).source
    collapsed = gc.render(scoped_mlp, mlp_values(), collapse=True).source
    assert collapsed.count("->") < full.count("->")
    boxes = re.findall(r"^\s*(s\d+) \[label=<<B>(\w+)</B>", collapsed, re.M)
    assert [name for _, name in boxes] == ["layer1", "layer2", "loss"]
    assert "cluster" not in collapsed
    # W1 -> layer1 carries W1's whole gradient; layer1 -> layer2 carries h
    assert re.search(r"s0 -> w\d+:bar:w", collapsed) and "<I>h</I>" in collapsed


def test_backward_view_shows_the_adjoints():
    @gc.graph
    def fan(x, y):
        return x * y + gc.exp(x)

    backward = gc.render(fan, {"x": 0.5, "y": 3.0}, show="backward").source
    assert "copy gate adds" in backward                        # the sum of x's two gradients
    for name in ("grad_x", "grad_y"):
        assert f"<B>{name}</B>" in backward
    assert "4.65" in backward                                  # 3 + e^0.5
    both = gc.render(fan, {"x": 0.5, "y": 3.0}, show="both").source
    assert "copy gate adds" in both and "4.65" in both and "<B>L</B>" in both
    assert "(backward)" in gc.render(fan, show="backward").source
    with pytest.raises(gc.GraphError, match="show must be one of"):
        gc.render(fan, show="sideways")


@needs_dot
def test_vanishing_gradients_fade_layer_by_layer(tmp_path):
    m = example("vanishing_gradients")
    fn = gc.compile(m.sigmoid_vs_relu)
    norms = m.gradient_norms(fn, m.inputs(m.xavier))
    sigmoid, relu = norms["sigmoid"], norms["relu"]
    assert all(a < b for a, b in zip(sigmoid, sigmoid[1:]))      # growing towards the output
    assert sigmoid[-1] / sigmoid[0] > 1e4 and relu[-1] / relu[0] < 100
    small = m.gradient_norms(fn, m.inputs(m.small))
    assert small["sigmoid"][0] < 1e-12 and small["relu"][0] < 1e-10     # small weights: gone
    gc.render(m.sigmoid_vs_relu, m.inputs(m.xavier), tmp_path / "vg.svg", collapse=True)
    texts = svg_texts(tmp_path / "vg.svg")
    assert texts.count("layer10") == 2 and "sigmoid" in texts and "relu" in texts


# ---- labels cannot break the DOT or the SVG ---------------------------------------------------

hostile_op = gc.elementwise("hostile_render_test", lambda x: 2 * x, symbol='<b>&"\'\\N{x}]]>')


@gc.graph
def hostile(x: gc.Tensor[3], y):
    with gc.scope('<script>alert("x")</script> & \\G \x00 {a|b} "q"'):
        z = hostile_op(x).named("z")
    return gc.sum(z * y)


@needs_dot
def test_hostile_labels_are_escaped(tmp_path):
    digraph = gc.render(hostile, {"x": [1.0, 2.0, 3.0], "y": 2.0}, tmp_path / "h.svg")
    texts = svg_texts(tmp_path / "h.svg")     # parses: the SVG is well-formed
    svg = (tmp_path / "h.svg").read_text()
    assert "<script>" not in svg and "<b>" not in svg
    assert any("&\"'\\" in t and "N{x}]]>" in t for t in texts)   # \N drawn, not expanded
    assert any(t.startswith('<script>alert("x")<') for t in texts)   # "/" nests scopes
    assert any("\ufffd" in t for t in texts)                       # the NUL is replaced
    assert "\x00" not in digraph.source
    gc.render(hostile, {"x": [1.0, 2.0, 3.0], "y": 2.0}, tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# ---- files, and no Graphviz ---------------------------------------------------------------------

def test_dot_file_and_bad_suffix(tmp_path):
    digraph = gc.render(example("circuit").circuit, CIRCUIT_POINT, tmp_path / "c.dot")
    assert (tmp_path / "c.dot").read_text(encoding="utf-8") == digraph.source
    with pytest.raises(gc.GraphError, match=r"suffix must be one of \.svg, \.png, \.pdf, \.dot"):
        gc.render(example("circuit").circuit, CIRCUIT_POINT, tmp_path / "c.jpeg")


def test_without_graphviz_dot_the_digraph_and_dot_still_work(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    code = textwrap.dedent("""
        import graphc as gc
        @gc.graph
        def circuit(x, y, z):
            return (x + y) * z
        d = gc.render(circuit, {"x": -2, "y": 5, "z": -4}, "c.dot")
        assert d.source.startswith("digraph circuit {")
        try:
            gc.render(circuit, {"x": -2, "y": 5, "z": -4}, "c.svg")
        except gc.GraphError as e:
            print(e)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PATH": str(empty)}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Graphviz's dot program is not installed" in r.stdout
    assert "apt-get install graphviz" in r.stdout and "brew install graphviz" in r.stdout
    assert (tmp_path / "c.dot").exists() and not (tmp_path / "c.svg").exists()


def test_the_compiler_never_imports_graphviz():
    code = ("import sys, graphc as gc\n"
            "@gc.graph\ndef f(x):\n    return gc.exp(x)\n"
            "gc.compile(f).forward(1.0)\n"
            "assert 'graphviz' not in sys.modules and 'graphc.diagrams.diagram' not in sys.modules, 'imported'\n"
            "gc.render(f, {'x': 1.0})\n"
            "assert 'graphviz' in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
