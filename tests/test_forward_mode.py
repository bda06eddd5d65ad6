"""Forward mode and the derivatives built on it: gc.jvp, gc.jacobian, gc.hessian, gc.hvp.

Each is checked against PyTorch's torch.autograd.functional (float64, rtol 1e-9) on
every target, on scalar graphs, vector graphs, an MLP with a symbolic batch and graphs
with where/max/relu; third derivatives of the elementwise ops against SymPy; the
generated code against the forward-mode slide; and the errors a user can cause.
(Every op's JVP against central differences is in test_ops.py.)
"""
from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
import torch

import graphc as gc
from graphc.graph import ops, symbolic
from support import ROOT, example

RTOL = 1e-9
torch.set_default_dtype(torch.float64)


def close(actual, expected, what=""):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected), rtol=RTOL,
                               atol=1e-12, err_msg=what)


def tensors(*arrays):
    return [torch.tensor(np.asarray(a, dtype=np.float64)) for a in arrays]


# ---- the graphs ---------------------------------------------------------------------------

@gc.graph
def scalar_f(x, y):
    return gc.sin(x) * y ** 3 + gc.exp(x * y) - gc.log(y)


def scalar_f_torch(x, y):
    return torch.sin(x) * y ** 3 + torch.exp(x * y) - torch.log(y)


@gc.graph(wrt=("x", "W1", "b1"))
def mlp(x: gc.Tensor["B", 4], W1: gc.Tensor[5, 4], b1: gc.Tensor[5], W2: gc.Tensor[3, 5]):
    """Symbolic batch B; a tanh net whose output is a (B, 3) array."""
    h = gc.tanh(gc.linear(x, W1, b1))
    return gc.sigmoid(h @ W2.T)


def mlp_torch(x, W1, b1, W2):
    return torch.sigmoid(torch.tanh(x @ W1.T + b1) @ W2.T)


@gc.graph(wrt=("W1", "W2"))
def classifier(x: gc.Tensor["B", 4], y: gc.Tensor["B", 3], W1: gc.Tensor[5, 4], W2: gc.Tensor[3, 5]):
    """An MLP loss with relu, where and max over axes (routing gates), symbolic batch."""
    h = gc.relu(x @ W1.T)
    h = gc.where(h > 0.5, h * h, h)
    scores = h @ W2.T
    return gc.softmax_cross_entropy(scores, y) + 0.1 * gc.mean(gc.max(scores, axis=1) ** 2)


def classifier_torch(x, y, W1, W2):
    h = torch.relu(x @ W1.T)
    h = torch.where(h > 0.5, h * h, h)
    scores = h @ W2.T
    return (torch.nn.functional.cross_entropy(scores, y) + 0.1 * (scores.max(dim=1).values ** 2).mean())


@gc.graph
def vector_map(a: gc.Tensor[2], b: gc.Tensor[3, 3]):
    """R^2 x R^(3x3) -> R^4: a Jacobian whose cheaper mode differs per input."""
    v = gc.concatenate([a, gc.sum(b * b, axis=0) + gc.maximum(b[0], 0.2)], axis=0)
    return gc.tanh(v[:4] * gc.reshape(b, (9,))[1:5]) + v[1:] * a[0]


def vector_map_torch(a, b):
    v = torch.cat([a, (b * b).sum(0) + torch.maximum(b[0], torch.tensor(0.2))])
    return torch.tanh(v[:4] * b.reshape(9)[1:5]) + v[1:] * a[0]


@gc.graph(wrt=("W1", "W2"))
def routed(x: gc.Tensor["B", 3], W1: gc.Tensor[4, 3], W2: gc.Tensor[2, 4]):
    """The routing gates only (relu, where, max over an axis): small, for every target."""
    h = gc.relu(x @ W1.T)
    scores = gc.where(h > 0.5, h * h, h) @ W2.T
    return gc.mean(gc.max(scores, axis=1) ** 2)


def routed_torch(x, W1, W2):
    h = torch.relu(x @ W1.T)
    scores = torch.where(h > 0.5, h * h, h) @ W2.T
    return (scores.max(dim=1).values ** 2).mean()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    labels = np.eye(3)[rng.integers(0, 3, 6)]
    return {"x": rng.normal(size=(6, 4)), "y": labels, "W1": rng.normal(size=(5, 4)),
            "b1": rng.normal(size=5), "W2": rng.normal(size=(3, 5)), "a": rng.normal(size=2),
            "b": rng.normal(size=(3, 3)), "tx": rng.normal(size=(6, 4)), "tW1": rng.normal(size=(5, 4)),
            "tb1": rng.normal(size=5)}


# ---- against PyTorch, on every target --------------------------------------------------

def test_jvp_of_an_mlp_with_a_symbolic_batch(target, data):
    d = data
    fn = gc.compile(gc.jvp(mlp), target=target)
    assert fn.inputs == ("x", "W1", "b1", "W2", "tangent_x", "tangent_W1", "tangent_b1")
    assert fn.outputs == ("L", "tangent_L")
    value, tangent = fn.forward(d["x"], d["W1"], d["b1"], d["W2"], d["tx"], d["tW1"], d["tb1"])
    x, W1, b1, W2 = tensors(d["x"], d["W1"], d["b1"], d["W2"])
    expected_value, expected = torch.autograd.functional.jvp(
        lambda x, W1, b1: mlp_torch(x, W1, b1, W2), (x, W1, b1), tuple(tensors(d["tx"], d["tW1"], d["tb1"])))
    close(value, expected_value)
    close(tangent, expected, "tangent")


def test_jacobian_picks_each_inputs_mode_and_matches_torch(target, data):
    d = data
    graph = gc.jacobian(vector_map)   # a: 2 entries < 4 outputs: forward; b: 9 > 4: reverse
    fn = gc.compile(graph, target=target)
    assert fn.outputs == ("jacobian_a", "jacobian_b")
    ja, jb = fn.forward(d["a"], d["b"])
    ta, tb = torch.autograd.functional.jacobian(vector_map_torch, tuple(tensors(d["a"], d["b"])))
    assert np.shape(ja) == (4, 2) and np.shape(jb) == (4, 3, 3)
    close(ja, ta, "d/da")
    close(jb, tb, "d/db")
    basis_ops = [n for n in graph.nodes if n.op.name == "basis"]
    assert [n.shape for n in basis_ops] == [(2, 2)], "forward mode for a, and for a only"


def test_hessian_with_relu_where_and_max(target, data):
    d = data
    fn = gc.compile(gc.hessian(routed), target=target)
    assert fn.outputs == ("hessian_W1_W1", "hessian_W1_W2", "hessian_W2_W1", "hessian_W2_W2")
    args = d["x"][:3, :3], d["W1"][:4, :3], d["W2"][:2, :4]
    blocks = fn.forward(*args)
    x, W1, W2 = tensors(*args)
    expected = torch.autograd.functional.hessian(lambda W1, W2: routed_torch(x, W1, W2), (W1, W2))
    for k, block in enumerate(blocks):
        close(block, expected[k // 2][k % 2], fn.outputs[k])


def test_hessian_of_an_mlp_loss_with_a_symbolic_batch(data):
    """softmax cross-entropy (a custom VJP), relu, where and max over an axis."""
    d = data
    fn = gc.compile(gc.hessian(classifier))
    blocks = fn.forward(d["x"], d["y"], d["W1"], d["W2"])
    x, y, W1, W2 = tensors(d["x"], d["y"], d["W1"], d["W2"])
    expected = torch.autograd.functional.hessian(lambda W1, W2: classifier_torch(x, y, W1, W2), (W1, W2))
    for k, block in enumerate(blocks):
        close(block, expected[k // 2][k % 2], fn.outputs[k])


def test_hvp_costs_two_passes_and_matches_torch(target, data):
    d = data
    graph = gc.hvp(routed, wrt="W1")
    assert not any(n.op.name == "basis" for n in graph.nodes), "no Hessian is built"
    fn = gc.compile(graph, target=target)
    assert fn.inputs[-1] == "v_W1" and fn.outputs == ("hvp_W1",)
    args = d["x"][:3, :3], d["W1"][:4, :3], d["W2"][:2, :4], d["tW1"][:4, :3]
    x, W1, W2, v = tensors(*args)
    _, expected = torch.autograd.functional.hvp(lambda W1: routed_torch(x, W1, W2), W1, v)
    close(fn.forward(*args), expected)


# ---- scalar graphs, every mode, on the numpy target -------------------------------------

def test_scalar_graph_jvp_and_hessian(target):
    args = (0.3, 1.7)
    x, y = tensors(*args)
    value, tangent = gc.compile(gc.jvp(scalar_f), target=target).forward(*args, 0.5, -2.0)
    _, expected = torch.autograd.functional.jvp(scalar_f_torch, (x, y), tuple(tensors(0.5, -2.0)))
    close(value, scalar_f_torch(x, y))
    close(tangent, expected)
    H = gc.compile(gc.hessian(scalar_f), target=target).forward(*args)
    expected = torch.autograd.functional.hessian(scalar_f_torch, (x, y))
    close(H, [expected[0][0], expected[0][1], expected[1][0], expected[1][1]])


def test_scalar_graph_jacobian_in_every_mode():
    args = (0.3, 1.7)
    x, y = tensors(*args)
    for mode in ("fwd", "rev", "auto"):
        jx, jy = gc.compile(gc.jacobian(scalar_f, mode=mode)).forward(*args)
        ex, ey = torch.autograd.functional.jacobian(scalar_f_torch, (x, y))
        close(jx, ex, mode)
        close(jy, ey, mode)


def test_a_value_read_fifteen_times_differentiates_twice():
    """The copy gate's sum of 15 contributions is one node of 15 inputs: too many for one
    formula with its tangents (or, in reverse, its seed and output), so a term each."""
    @gc.graph
    def wide(x: gc.Tensor[3]):
        h = gc.sin(x)
        return gc.sum(gc.concatenate([h * (k + 1) for k in range(15)]) ** 2)
    assert max(len(n.inputs) for n in gc.grad(wide).nodes) == 15
    x = np.array([0.1, 0.2, 0.3])
    weight = sum((k + 1) ** 2 for k in range(15))
    close(gc.compile(gc.hessian(wide)).forward(x), np.diag(2 * weight * np.cos(2 * x)))


def test_jacobian_of_a_vector_output_with_a_symbolic_batch_in_forward_mode(data):
    d = data
    J = gc.compile(gc.jacobian(mlp, wrt="W1")).forward(d["x"], d["W1"], d["b1"], d["W2"])
    x, W1, b1, W2 = tensors(d["x"], d["W1"], d["b1"], d["W2"])
    expected = torch.autograd.functional.jacobian(lambda W1: mlp_torch(x, W1, b1, W2), W1)
    assert J.shape == (6, 3, 5, 4)
    close(J, expected)


def test_math_target_compiles_a_scalar_hessian():
    fn = gc.compile(gc.hessian(scalar_f), target="math")
    close(fn.forward(0.3, 1.7), gc.compile(gc.hessian(scalar_f)).forward(0.3, 1.7))


# ---- third derivatives of every elementwise op, against SymPy -----------------------------

POINTS = {"log": (1.3,), "sqrt": (1.3,), "pow": (1.3, 0.7), "div": (0.8, 1.4), "reciprocal": (0.8,),
          "arccosh": (1.3,), "log2": (1.3,), "log10": (1.3,)}


def _third_derivative_cases():
    for name, op in sorted(gc.REGISTRY.items()):
        if op.elementwise and op.formula is not None and not op.nondiff:
            for k in range(op.n_inputs):
                yield pytest.param(name, k, id=f"{name}-d{'abc'[k]}3")


@pytest.mark.parametrize("name, k", list(_third_derivative_cases()))
def test_third_derivative_against_sympy(name, k):
    """d3 op / d arg_k3 by gc.grad of gc.hessian, against sympy.diff of the op's formula."""
    op = gc.REGISTRY[name]
    point = POINTS.get(name, (0.7, -0.4, 0.9)[:op.n_inputs])
    params = {p: 0.3 for p, _ in op.params}
    names = ["a", "b", "c"][:op.n_inputs]

    def model(*xs):   # op(a, b, ...) of scalar inputs
        return ops.apply(op, xs, **params)
    model.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                             for n in names])
    graph = gc.graph(model, name=f"third_{name}")
    third = gc.compile(gc.grad(gc.hessian(graph, wrt=names[k]), wrt=names[k]))
    formula = op.formula.subs({sp.Symbol(p, real=True): v for p, v in params.items()})
    expected = sp.diff(formula, symbolic.ARGS[k], 3).subs(dict(zip(symbolic.ARGS, point)))
    np.testing.assert_allclose(third.forward(*point), float(sp.N(expected)), rtol=1e-9, atol=1e-12)


# ---- the code reads like the forward-mode slide -------------------------------------------

def test_jvp_code_is_the_forward_mode_slide():
    neuron = example("neuron").neuron
    fn = gc.compile(gc.jvp(neuron))
    forward = fn.source.split("def forward")[1].split("def backward")[0]
    assert "tangent_s0 = tangent_w0*x0 + tangent_x0*w0  # mul tangent" in forward
    assert "tangent_L = tangent_s3*L*(1 - L)" in forward
    # the lecture's numbers: the tangent along w0 is dL/dw0 = -0.1966...
    value, tangent = fn.forward(2.0, -1.0, -3.0, -2.0, -3.0, 1.0, 0.0, 0.0, 0.0, 0.0)
    assert value == pytest.approx(0.7310585786300049, abs=1e-15)
    assert tangent == pytest.approx(-0.19661193324148185, abs=1e-15)


def test_a_scalar_input_is_seeded_with_the_number_one():
    """The Hessian of scalars needs no basis: the seed 1 folds into the tangent lines."""
    graph = gc.hessian(scalar_f)
    assert not any(n.op.name == "basis" for n in graph.nodes)
    source = gc.compile(graph).source
    assert "tangent_s0 = np.cos(x)" in source


def test_generated_code_is_deterministic(tmp_path):
    """Same graph, same bytes: built twice here, and once in another process."""
    texts = {gc.compile(gc.hessian(routed), path=tmp_path / f"h{k}.py").source for k in range(2)}
    other = subprocess.run([sys.executable, "-c", (
        "import sys; sys.path.insert(0, 'tests'); import test_forward_mode as t, graphc as gc; "
        "print(gc.compile(gc.hessian(t.routed)).source)")], cwd=ROOT, capture_output=True, text=True,
        check=True).stdout
    assert len(texts) == 1 and other == texts.pop() + "\n"


def test_the_dump_names_tangents_as_the_code_does():
    text = str(gc.jvp(example("neuron").neuron, wrt="w0"))
    assert "# forward mode: the tangents, from the inputs to the outputs" in text
    assert "tangent_s0 : () 1 = tangent_w0*x0" in text
    assert "# backward" not in text
    # a tangent that is a value the graph had keeps that value's name
    assert "s0          : () 1 = sin(x)" in str(gc.hessian(gc.graph(lambda x, y: gc.sin(x) * y, name="f")))


def test_transformed_graphs_render_and_differentiate_again(tmp_path):
    graph = gc.jvp(scalar_f)
    dot = gc.render(graph, values={"x": 0.3, "y": 1.7, "tangent_x": 1.0, "tangent_y": 0.0},
                    path=tmp_path / "jvp.dot")
    assert "tangent_" in dot.source
    # d/dx of the tangent along x is the second derivative
    along_x = gc.jvp(scalar_f, wrt="x")

    @gc.graph
    def tangent(x, y):
        return along_x(x, y, 1.0)[1]
    second = gc.compile(gc.grad(tangent, wrt="x"))
    x = torch.tensor(0.3, requires_grad=True)
    (dx,) = torch.autograd.grad(scalar_f_torch(x, torch.tensor(1.7)), x, create_graph=True)
    (dxx,) = torch.autograd.grad(dx, x)
    close(second.forward(0.3, 1.7), dxx)


# ---- errors ---------------------------------------------------------------------------------

def test_errors_name_the_graph_and_the_problem():
    with pytest.raises(gc.GraphError, match="mode must be one of auto, rev, fwd, got 'backward'"):
        gc.jacobian(scalar_f, mode="backward")
    with pytest.raises(gc.GraphError, match=r"graph 'mlp': gc.jacobian needs a static shape for the output "
                                            r"'L' \(B, 3\) \(reverse mode\): a pass per entry"):
        gc.jacobian(mlp, wrt="W1", mode="rev")
    with pytest.raises(gc.GraphError, match=r"for the output 'L' \(B, 3\) \(reverse mode\) or the input 'x' "
                                            r"\(B, 4\) \(forward mode\)"):
        gc.jacobian(mlp, wrt="x")
    with pytest.raises(gc.GraphError, match="gc.hessian needs a scalar first output, 'L' has shape"):
        gc.hessian(mlp)
    with pytest.raises(gc.GraphError, match="cannot differentiate with respect to 'z'"):
        gc.jvp(scalar_f, wrt="z")


def test_an_op_without_a_forward_rule_is_named():
    op = ops.structural("no_jvp_op", 1, lambda attrs, x: x, lambda g, y, x: (g,), ref=lambda x: x)
    try:
        @gc.graph
        def uses_it(x: gc.Tensor[3]):
            return gc.sum(ops.apply(op, (x,)))
        with pytest.raises(gc.GraphError, match="op 'no_jvp_op' has no forward-mode \\(JVP\\) rule"):
            gc.jvp(uses_it)
    finally:
        gc.REGISTRY.pop("no_jvp_op")


def test_tangent_names_step_around_the_users():
    @gc.graph
    def f(x, tangent_x):
        return x * tangent_x
    fn = gc.compile(gc.jvp(f, wrt="x"))
    assert fn.inputs == ("x", "tangent_x", "tangent_x_1")
    assert fn.forward(2.0, 3.0, 1.0) == (6.0, 3.0)


# ---- the command line and the example ---------------------------------------------------------

def test_cli_compiles_the_hessian_of_a_model_file():
    out = subprocess.run([sys.executable, "-m", "graphc", "compile", "examples/newton.py:logistic",
                          "--transform", "hessian", "--wrt", "w", "-o", "-"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "OUTPUTS = ('hessian_w',)" in out.stdout and "np.eye(6, dtype=np.float64)" in out.stdout
    check = subprocess.run([sys.executable, "-m", "graphc", "check", "examples/newton.py:logistic",
                            "--transform", "jvp"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    bad = subprocess.run([sys.executable, "-m", "graphc", "show", "examples/newton.py:logistic",
                          "--transform", "hessian", "--wrt", "X"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("graphc: error: ") and "Traceback" not in bad.stderr
    assert "newton.py" in bad.stderr


def test_newton_example_converges_quadratically(capsys):
    result = example("newton").main(mlp_batch=8)
    newton, gd = result["newton"], result["gd"]
    assert newton[-1][2] < 1e-10 and len(newton) <= 12
    assert gd[-1][2] < 1e-10 and gd[-1][0] > 20 * newton[-1][0]
    norms = [row[2] for row in newton]
    # quadratic convergence: near the minimum each step squares the error, |g_k+1| ~ C |g_k|^2
    # with C bounded, where gradient descent's |g_k+1| / |g_k| stays near a constant below 1
    near = [(a, b) for a, b in zip(norms, norms[1:]) if a < 1e-2]
    assert len(near) >= 2 and all(b / a ** 2 < 100 for a, b in near), norms
    assert min(b / a for a, b in near) < 1e-4
    assert result["mlp_parameters"] == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert "Newton-CG (hvp)" in capsys.readouterr().out
