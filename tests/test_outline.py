"""Repeated structure compiled once (lower/outline.py): on the numba target a stretch of
statements that recurs becomes one helper called at each place, and a value read in many
places sums its gradient as the contributions arrive (autodiff/reverse.py). Neither may
change a result: outlined and flat modules agree to 1e-12, threads or not."""

import math
import re

import numpy as np
import pytest

import graphc as gc
from graphc.autodiff.reverse import RUNNING_SUM, WIDE
from graphc.backends import TARGETS
from graphc.lower.outline import outline
from graphc.lower.program import Function, Statement, code_lines

from test_scan import rnn_graphs


class _NumPyInt:
    int64 = int   # np.int64(3) in a call, as plain Python runs it


def run(functions, helpers, name, *args):
    """Runs the lowered functions as plain Python (the math module as __math)."""
    text = []
    for f in helpers + functions:
        text.append(f"def {f.name}({', '.join(f.params)}):")
        text += ["    " + line for line in code_lines(f.statements) or ["pass"]]
        text.append(f"    return {f.returns}")
    scope = {"__math": math, "np": _NumPyInt}
    exec("\n".join(text), scope)
    return scope[name](*args)


def chain(links):
    """`y = sin(y) * 1.0001 + x`, `links` times: three statements a link."""
    statements, y = [], "x"
    for k in range(links):
        statements += [Statement(f"a{k}", f"__math.sin({y})", "sin"), Statement(f"b{k}", f"a{k} * 1.0001", "mul"),
                       Statement(f"y{k}", f"b{k} + x", "add")]
        y = f"y{k}"
    return Function("f", ["x"], statements, y)


def test_a_repeated_stretch_becomes_one_helper_called_at_each_place():
    flat = chain(40)
    (done,), helpers = outline([flat])
    # 4 links (12 lines) a call; the first four read x twice, so differ, and stay
    calls = [st for st in done.statements if "__repeat0(" in st.expr]
    assert len(helpers) == 1 and len(done.statements) == 12 + 9
    assert len(calls) == 9 and calls[0].target == "y7" and calls[-1].target == "y39"
    assert sorted(helpers[0].params) == ["x", "y3"]   # what the first stretch reads
    assert run([done], helpers, "f", 0.3) == run([flat], [], "f", 0.3)
    assert "called 9 times in f" in helpers[0].note


def test_the_same_graph_gives_the_same_helpers_and_text():
    texts = []
    for _ in range(2):
        (done,), helpers = outline([chain(30)])
        texts.append("\n".join(code_lines(done.statements) + [line for h in helpers for line in code_lines(h.statements)]))
    assert texts[0] == texts[1]


def test_stretches_of_the_same_shape_but_another_data_flow_stay_apart():
    statements = []
    for k in range(8):   # t - x in even steps, x - t in odd ones: the same text with names blanked
        left, right = (f"t{k}", "x") if k % 2 == 0 else ("x", f"t{k}")
        prev = f"u{k - 1}" if k else "x"
        statements += [Statement(f"t{k}", f"{prev} * 0.5", "mul")] + [
            Statement(f"v{k}_{j}", f"{left} - {right}" if j == 0 else f"v{k}_{j - 1} * 0.9", "mix") for j in range(12)]
        statements.append(Statement(f"u{k}", f"v{k}_11 - 0.1", "sub"))
    flat = Function("g", ["x"], statements, "u7")
    (done,), helpers = outline([flat])
    # a helper for each order, each with one order in it
    orders = [{st.expr.startswith("x -") for st in h.statements if " - x" in st.expr or st.expr.startswith("x -")}
              for h in helpers]
    assert sorted(map(sorted, orders)) == [[False], [True]], [[st.expr for st in h.statements] for h in helpers]
    assert run([done], helpers, "g", 0.7) == run([flat], [], "g", 0.7)


def test_a_helper_returns_only_what_later_statements_read():
    (done,), helpers = outline([chain(24)])
    h = helpers[0]
    assert h.returns == h.statements[-1].target   # the link's last value; a_k and b_k stay inside
    assert all(st.target in ("", h.statements[-1].target) or not st.target.startswith(("a", "b"))
               for st in done.statements if "__repeat" in st.expr)


def test_integers_in_brackets_that_differ_become_arguments():
    statements, h = [], "h0"
    for t in range(12):
        statements += [Statement(f"x{t}", f"xs[{t}]", "getitem"), Statement(f"m{t}", f"{h} * 0.5 + x{t}", "mix"),
                       Statement(f"h{t + 1}", f"__math.tanh(m{t})", "tanh")]
        h = f"h{t + 1}"
    flat = Function("rnn", ["xs", "h0"], statements, h)
    (done,), helpers = outline([flat], np="np")
    assert any(re.search(r"xs\[__k\d+\]", st.expr) for st in helpers[0].statements)
    assert "np.int64(" in done.statements[0].expr   # typed once, not once per constant
    xs = np.linspace(-1, 1, 12)
    assert run([done], helpers, "rnn", xs, 0.2) == run([flat], [], "rnn", xs, 0.2)


def test_loops_and_reassigned_names_keep_their_values():
    """A loop's index is assigned by each loop (never passed on); `L = L / n` reads L."""
    statements = []
    for k in range(10):
        src = f"acc{k - 1}" if k else "x"
        statements.append(Statement(f"acc{k}", f"{src}.copy()", "copy",
                                    [f"for i in range({src}.shape[0]):", f"    acc{k}[i] = acc{k}[i] * 0.5 + i"]))
        statements.append(Statement("L", f"L + acc{k}[0]", "sum"))
        statements.append(Statement("L", "L / 2.0", "halve"))
    flat = Function("h", ["x", "L"], statements, "L, acc9")
    (done,), helpers = outline([flat])
    assert helpers and all("i" not in h.params and "i" not in h.returns.split(", ") for h in helpers)
    x = np.arange(4.0)
    got, want = run([done], helpers, "h", x.copy(), 1.0), run([flat], [], "h", x.copy(), 1.0)
    assert got[0] == want[0] and np.array_equal(got[1], want[1])


def flat_and_outlined(graph, tmp_path, monkeypatch):
    """The graph compiled for numba as it is (outlined) and with outlining off (flat)."""
    outlined = gc.compile(graph, target="numba", path=tmp_path / "outlined.py")
    monkeypatch.setattr(TARGETS["numba"], "outlines", False)
    flat = gc.compile(graph, target="numba", path=tmp_path / "flat.py")
    monkeypatch.undo()
    assert "__repeat" in outlined.source and "__repeat" not in flat.source
    return outlined, flat


def test_an_unrolled_rnn_outlined_and_flat_agree(tmp_path, monkeypatch):
    _, unrolled = rnn_graphs(6)
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((6, 3, 2)), rng.standard_normal((3, 4)), rng.standard_normal((2, 4)),
            rng.standard_normal((4, 4)) * 0.5, rng.standard_normal(4))
    outlined, flat = flat_and_outlined(unrolled, tmp_path, monkeypatch)
    value, grads = outlined.value_and_grad(*args)
    want_value, want_grads = flat.value_and_grad(*args)
    assert value == pytest.approx(want_value, rel=1e-12, abs=1e-12)
    for got, want in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(outlined.forward(*args), flat.forward(*args), rtol=1e-12)
    for got, want in zip(outlined.backward(*args, grad_out=2.0), flat.backward(*args, grad_out=2.0), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_chain_of_scalars_outlined_agrees_one_call_and_per_example(tmp_path, monkeypatch):
    @gc.graph
    def chain90(x, w):
        y = x
        for _ in range(30):
            y = gc.sin(y) * w + x
        return y
    outlined, flat = flat_and_outlined(chain90, tmp_path, monkeypatch)
    value, grads = outlined.value_and_grad(0.3, 1.0001)
    want, want_grads = flat.value_and_grad(0.3, 1.0001)
    assert value == pytest.approx(want, rel=1e-12) and grads == pytest.approx(want_grads, rel=1e-12)
    xs = np.linspace(-1, 1, 7)
    value, grads = outlined.value_and_grad(xs, 1.0001)
    want, want_grads = flat.value_and_grad(xs, 1.0001)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    for got, want in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_large_call_takes_the_parallel_twins_of_the_helpers(tmp_path, monkeypatch):
    """A call of 262,144 elements or more runs __value_and_grad_threads, which calls each
    helper's parallel twin: the same values as the flat module's threads."""
    @gc.graph(wrt=("w",))
    def decay(x: gc.Tensor["N"], w):
        h = x
        for _ in range(12):
            h = gc.tanh(h * w + x) * 0.9 + h * 0.1
        return gc.mean(h * h)
    outlined, flat = flat_and_outlined(decay, tmp_path, monkeypatch)
    twin = outlined.source[outlined.source.index("def __value_and_grad_threads("):]
    assert re.search(r"__repeat\d+_threads\(", twin)
    x = np.random.default_rng(1).standard_normal(300_000)
    value, grads = outlined.value_and_grad(x, 0.7)
    want, want_grads = flat.value_and_grad(x, 0.7)
    assert value == pytest.approx(want, rel=1e-12)
    assert grads[0] == pytest.approx(want_grads[0], rel=1e-10)


def function_lines(source):
    """{function name: lines} of a generated module's top-level functions."""
    out, name = {}, None
    for line in source.splitlines():
        m = re.match(r"def (\w+)\(", line)
        if m:
            name = m[1]
            out[name] = 0
        elif name and line.startswith("    "):
            out[name] += 1
        elif line and not line.startswith(("#", "@")):
            name = None
    return out


def test_compiled_code_grows_far_slower_than_the_steps():
    """What Numba compiles, in lines: 4x the steps of an unrolled RNN, at most 2x the
    lines of its longest function and of all the functions a call of value_and_grad
    compiles (flat, 4x; the time of Numba's passes follows the lines, and grew faster
    than them in one long function; bench/compile_time.py times it)."""
    sizes = {}
    for steps in (8, 32):
        _, unrolled = rnn_graphs(steps)
        lines = function_lines(gc.compile(unrolled, target="numba").source)
        compiled = {k: v for k, v in lines.items() if not k.endswith("_threads") and "forward" not in k
                    and "backward" not in k and (k.startswith("__repeat") or k == "__value_and_grad")}
        sizes[steps] = (max(compiled.values()), sum(compiled.values()))
    assert sizes[32][0] <= 2 * sizes[8][0], sizes
    assert sizes[32][1] <= 2 * sizes[8][1], sizes


def test_a_weight_read_in_many_places_sums_its_gradient_as_it_arrives(target):
    reads = WIDE + 4

    @gc.graph(wrt=("w",))
    def shared(x: gc.Tensor[3], w: gc.Tensor[3]):
        h = x
        for _ in range(reads):
            h = gc.sin(h * w)
        return gc.sum(h)
    fn = gc.compile(shared, target=target)
    if target == "numpy":   # a statement per node, each add commented: in backward and value_and_grad
        assert fn.source.count(RUNNING_SUM) == 2 * (reads - 1)
    x, w = np.array([0.3, -0.2, 0.5]), np.array([1.1, 0.9, -0.7])
    _, grads = fn.value_and_grad(x, w)
    eps, want = 1e-6, np.zeros(3)
    for i in range(3):
        d = np.zeros(3)
        d[i] = eps
        want[i] = (float(fn.forward(x, w + d)) - float(fn.forward(x, w - d))) / (2 * eps)
    np.testing.assert_allclose(np.asarray(grads[0]), want, rtol=1e-6, atol=1e-9)


def test_each_add_of_a_running_sum_is_a_loop_of_its_own_on_numba():
    """Not one loop reading every contribution at the end: a loop per add, beside the
    contribution, so that the step the add belongs to repeats (and is outlined)."""
    @gc.graph(wrt=("w",))
    def shared(x: gc.Tensor[3], w: gc.Tensor[3]):
        h = x
        for _ in range(WIDE + 4):
            h = gc.sin(h * w)
        return gc.sum(h)
    source = gc.compile(shared, target="numba").source
    loops = re.findall(r"for i in range\(3\):\s+# fused: (.*)", source)
    assert not any(line.count("add") > 1 for line in loops), loops


def test_the_functions_of_a_module_share_a_helper():
    """forward, backward and value_and_grad run the same forward steps: one helper, which
    returns what value_and_grad reads later (forward's calls take the extra values too)."""
    _, unrolled = rnn_graphs(8)
    source = gc.compile(unrolled, target="numba").source
    helpers = re.findall(r"# \d+ statements that recur, compiled once: called (.*)\n.*\ndef (__repeat\d+)\(", source)
    assert [name for _, name in helpers] == [f"__repeat{k}" for k in range(len(helpers))]
    assert any("in forward" in calls and "in value_and_grad" in calls for calls, _ in helpers), helpers
    assert len(helpers) == 2, helpers   # a forward step and a backward step


def test_stretches_with_other_constant_indices_get_helpers_of_their_own():
    """Two runs of the same text, one reading xs[2] at every step and one xs[5]: the
    integer is the same within each run, so each run's helper has it written in."""
    statements, h = [], "h0"
    for run_index in (2, 5):
        for t in range(6):
            statements += [Statement(f"a{run_index}_{t}", f"xs[{run_index}] * {h}", "mul")] + [
                Statement(f"b{run_index}_{t}_{j}", f"a{run_index}_{t} * 0.5 + {j}.0" if j == 0 else
                          f"b{run_index}_{t}_{j - 1} * 0.5", "mix") for j in range(12)]
            h = f"b{run_index}_{t}_11"
        statements.append(Statement(f"c{run_index}", f"__math.cos({h})", "cos"))   # the runs are apart
        h = f"c{run_index}"
    flat = Function("two", ["xs", "h0"], statements, h)
    (done,), helpers = outline([flat])
    assert len(helpers) == 2, [h.statements[0].expr for h in helpers]
    xs = np.linspace(0.5, 1.5, 8)
    assert run([done], helpers, "two", xs, 0.3) == run([flat], [], "two", xs, 0.3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_cells_unrolled_agree_with_the_numpy_target(seed):
    """A cell of random elementwise ops and a product, applied 10 times by a Python loop:
    the numba module (outlined: the cell is a helper) gives the numpy target's values and
    gradients."""
    rng = np.random.default_rng(seed)
    ops = [rng.integers(0, 5) for _ in range(4)]

    @gc.graph(wrt=("W", "b"))
    def cells(x: gc.Tensor["B", 3], W: gc.Tensor[3, 3], b: gc.Tensor[3]):
        h = x
        for _ in range(10):
            z = h @ W + b
            for op in ops:
                z = [gc.tanh(z), gc.sin(z) * 0.5, z * gc.sigmoid(z), z + x * 0.1, gc.relu(z) - 0.2 * z][op]
            h = z
        return gc.mean(h * h)
    x, W, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 3)) * 0.5, rng.standard_normal(3)
    fn = gc.compile(cells, target="numba")
    assert "__repeat" in fn.source
    value, grads = fn.value_and_grad(x, W, b)
    want, want_grads = gc.compile(cells, target="numpy").value_and_grad(x, W, b)
    assert value == pytest.approx(want, rel=1e-10, abs=1e-12)
    for got, expected in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
