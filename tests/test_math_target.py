"""The math target: a graph of scalars as plain Python floats and the math module."""
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from support import ROOT, example
from test_ops import OPS

import graphc as gc
from graphc.graph import ops

ELEMENTWISE = sorted(name for name, op in gc.REGISTRY.items()
                     if op.elementwise and op is not ops.EXPR and name in OPS)


def scalar_graph(name):
    """`op_<name>(a, b, ...)`: the op on scalar inputs, with the table's attributes."""
    case = OPS[name]
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
              for n in "abc"[:len(case.inputs)]]

    def model(*xs):
        return ops.apply(gc.REGISTRY[name], xs, **case.attrs)

    model.__signature__ = inspect.Signature(params)
    return gc.graph(model, name=f"op_{name}"), case


def scalar_points(case, rng, count):
    """`count` points of the op's domain, as Python floats."""
    points = []
    for _ in range(count):
        values = case.sample(rng) if case.sample else [domain(rng, ()) for _, domain in case.inputs]
        points.append([float(np.ravel(v)[0]) for v in values])
    return points


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_every_elementwise_op_matches_the_numpy_target(name):
    """Values and gradients at points of each op's domain equal the numpy target's, whose
    gradients tests/test_ops.py checks against central differences and SymPy."""
    graph, case = scalar_graph(name)
    plain, reference = gc.compile(graph, target="math"), gc.compile(graph)
    assert "numpy" not in plain.source and "np." not in plain.source
    for point in scalar_points(case, np.random.default_rng(7), 5):
        value, grads = plain.value_and_grad(*point)
        want_value, want_grads = reference.value_and_grad(*point)
        assert type(value) is float and value == pytest.approx(want_value, rel=1e-13, abs=1e-15)
        assert grads == pytest.approx(want_grads, rel=1e-12, abs=1e-15), point


def test_the_lecture_numbers():
    f, grads = gc.compile(example("circuit").circuit, target="math").value_and_grad(-2.0, 5.0, -4.0)
    assert (f, grads) == (-12.0, (-4.0, -4.0, 3.0))
    fn = gc.compile(example("neuron").neuron, target="math")
    value, grads = fn.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
    assert value == pytest.approx(0.73106, abs=5e-6)
    assert grads == pytest.approx((-0.19661, 0.39322, -0.39322, -0.58984, 0.19661), abs=5e-6)
    assert fn.backward(2.0, -1.0, -3.0, -2.0, -3.0, grad_out=2.0) == pytest.approx(tuple(2 * g for g in grads))


def test_arrays_run_once_per_example():
    fn, reference = (gc.compile(example("neuron").neuron, target=t) for t in ("math", "numpy"))
    w0 = np.linspace(-2, 2, 7)
    value, grads = fn.value_and_grad(w0, -1.0, -3.0, -2.0, -3.0)
    want_value, want_grads = reference.value_and_grad(w0, -1.0, -3.0, -2.0, -3.0)
    np.testing.assert_allclose(value, want_value, rtol=1e-14)
    for g, want in zip(grads, want_grads):
        np.testing.assert_allclose(g, want, rtol=1e-13)


def test_the_module_runs_without_numpy_or_graphc(tmp_path):
    fn = gc.compile(example("neuron").neuron, target="math", path=tmp_path / "neuron_math.py")
    assert fn.source == gc.compile(example("neuron").neuron, target="math").source   # deterministic
    code = ("import sys\nsys.modules['numpy'] = None\nsys.modules['graphc'] = None\n"
            "import neuron_math as m\n"
            "v, g = m.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)\n"
            "assert abs(v - 0.7310585786300049) < 1e-15 and abs(g[0] + 0.19661193324148185) < 1e-15, (v, g)\n"
            "assert m.backward(2.0, -1.0, -3.0, -2.0, -3.0) == g\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_a_value_named_math_moves_the_module_aside():
    @gc.graph
    def f(math, x):
        return gc.exp(math * x)
    fn = gc.compile(f, target="math")
    assert "import math as math_1" in fn.source and "math_1.exp(" in fn.source
    assert fn.value_and_grad(0.5, 2.0)[1] == pytest.approx((2 * np.e, 0.5 * np.e))


def test_abs_gets_numpy_s_sign_at_zero():
    @gc.graph
    def f(x):
        return gc.abs(x)
    fn = gc.compile(f, target="math")
    assert "def __sign(x):" in fn.source
    assert [fn.value_and_grad(x)[1][0] for x in (-2.0, 0.0, 3.0)] == [-1.0, 0.0, 1.0]


def test_what_it_cannot_compile_is_refused_clearly():
    with pytest.raises(gc.GraphError, match=r"graph 'mlp': the math target compiles graphs of scalars only, "
                                            r"and input 'x' has shape \(B, 784\); choose the numpy target"):
        gc.compile(example("mlp").mlp, target="math")

    @gc.graph
    def stacked(a, b):
        return gc.sum(gc.stack([a, b]) * 2.0)
    with pytest.raises(gc.GraphError, match=r"the reshape at .*test_math_target.py:\d+ has shape \(1,\)"):
        gc.compile(stacked, target="math")

    with pytest.raises(gc.GraphError, match="the math target computes in float64 only, not float32"):
        gc.compile(example("neuron").neuron, target="math", dtype="float32")

    @gc.graph
    def shadows(max, x):
        return gc.relu(x) * max
    with pytest.raises(gc.GraphError, match="graph 'shadows': the math target's code calls max, "
                                            "which a value of this graph is named"):
        gc.compile(shadows, target="math")


def test_the_command_line_writes_it():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "graphc", "compile", str(ROOT / "examples" / "neuron.py"),
                        "--target", "math", "-o", "-"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "import math\n" in r.stdout and "L = 1/(1 + math.exp(-s3))" in r.stdout and "numpy" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "graphc", "compile", str(ROOT / "examples" / "mlp.py"),
                        "--target", "math", "-o", "-"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "scalars only" in r.stderr and "Traceback" not in r.stderr

