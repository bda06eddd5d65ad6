"""Every registered op: its value against its NumPy reference, its gradient
against central differences, and its dtype in float32.

OPS below is the table of every op in graphc.REGISTRY and how it is tested.
`test_table_covers_registry` fails as soon as an op is registered that the
table does not name, so no op can be added untested.
"""
from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import sympy as sp

import graphc as gc
from graphc.graph import ops, structural, symbolic

# ---- sampling domains -----------------------------------------------------------------
# Each domain is a function (rng, shape) -> float64 array, chosen so that the op
# is smooth at every sampled point (logs of positives, no kinks, no ties).


def uniform(lo, hi):
    return lambda rng, shape: rng.uniform(lo, hi, size=shape)


def signed(lo, hi):
    """|x| in [lo, hi] with a random sign: away from zero (kinks of abs, relu...)."""
    return lambda rng, shape: rng.choice([-1.0, 1.0], size=shape) * rng.uniform(lo, hi, size=shape)


def integers(lo, hi):
    """Integer-valued floats: ties on purpose, for the comparisons."""
    return lambda rng, shape: rng.integers(lo, hi + 1, size=shape).astype(np.float64)


def mask(rng, shape):
    return rng.integers(0, 2, size=shape).astype(np.float64)


class indices:
    """int64 values in [lo, hi): the domain of an integer input (gc.IntTensor), which is
    never differentiated. Repeats on purpose (a gather's gradient accumulates)."""
    integer = True

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __call__(self, rng, shape):
        return rng.integers(self.lo, self.hi, size=shape)


def is_integer(domain):
    return getattr(domain, "integer", False)


def distinct(rng, shape):
    """Values at least 0.25 apart, so a max has a single winner along any axis."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.25 - n * 0.1).reshape(shape)


NORMAL = uniform(-1.5, 1.5)


def separated(shape_a, shape_b):
    """(a, b) with |a - b| >= 0.2 everywhere: away from the kink of maximum/minimum."""
    def sample(rng):
        b = rng.uniform(-1.0, 1.0, size=shape_b)
        return [b + signed(0.2, 1.0)(rng, shape_a), b]
    return sample


def away_from_multiples(shape_a, shape_b):
    """(a, b) with a/b at least 0.1 from an integer: away from the jumps of mod(a, b)."""
    def sample(rng):
        b = signed(0.7, 1.5)(rng, shape_b)
        return [b * (rng.integers(-3, 3, size=shape_a) + rng.uniform(0.1, 0.9, size=shape_a)), b]
    return sample


def bands(*intervals):
    """Values each in one of `intervals`, chosen at random: below, inside and above clip's range."""
    def sample(rng, shape):
        lo, hi = np.array(intervals).T
        k = rng.integers(0, len(intervals), size=shape)
        return rng.uniform(lo[k], hi[k])
    return sample


# ---- the table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """How to test one op directly.

    inputs: (shape, domain) per graph input; sample (rng -> arrays) replaces the
    domains where inputs must be drawn together. attrs: the node attributes, as
    passed to the op and to its reference. build: tensors -> output (default:
    the op applied to the inputs with attrs). ref: (op, arrays, attrs) -> the
    expected value (default op.ref(*arrays, **attrs)). grad: "check" compares with
    central differences; "zero" means the op has no gradient by definition.
    """
    inputs: tuple
    attrs: dict = field(default_factory=dict)
    build: Callable | None = None
    ref: Callable | None = None
    grad: str = "check"
    sample: Callable | None = None


@dataclass(frozen=True)
class Elsewhere:
    """An op that cannot be applied on its own; `reason` says where it is tested."""
    reason: str


def _custom_rule(g, x):
    return (g * gc.cos(x),)


def _custom_vjp_build(x):
    # sin(x) with its derivative given by a rule instead of derived by autodiff
    return structural.with_vjp(gc.sin(x), (x,), _custom_rule, "sin gate by rule")


def _custom_vjp_ref(op, arrays, attrs):
    (x,) = arrays
    return op.ref(np.sin(x), x, **attrs)


A0, A1 = symbolic.ARGS[:2]
EXPR_FORMULA = A0 * sp.exp(-A1) + sp.sin(A0) * A1 ** 2


def _expr_build(a, b):
    return ops.expr(EXPR_FORMULA, a, b)


def _expr_ref(op, arrays, attrs):
    # expr carries no op.ref: its formula is in its attributes, evaluated here by SymPy
    return sp.lambdify((A0, A1), EXPR_FORMULA, "numpy")(*arrays)


M23, V3 = (2, 3), (3,)

OPS = {
    # -- internal
    "input": Elsewhere("every graph starts from input nodes: test_inputs_are_the_graph_parameters"),
    "const": Elsewhere("Python numbers in a graph become const nodes: test_python_constants"),
    "scan": Elsewhere("a loop whose step is a graph: tests/test_scan.py checks its values and gradients "
                      "against the unrolled loop, central differences and PyTorch, on every target"),
    "expr": Case(((M23, NORMAL), (V3, NORMAL)), build=_expr_build, ref=_expr_ref),
    "stop_gradient": Case(((M23, NORMAL),), grad="zero"),
    "custom_vjp": Case(((M23, NORMAL),), attrs={"rule": _custom_rule, "label": "sin gate by rule"},
                       build=_custom_vjp_build, ref=_custom_vjp_ref),
    "broadcast_like": Case(((V3, NORMAL), (M23, NORMAL))),
    "broadcast_to": Case(((V3, NORMAL),), attrs={"shape": (2, 2, 3)}),
    "basis": Case((((2, 3), NORMAL),), grad="zero"),
    "tri": Case((((2, 3), NORMAL),), attrs={"n": 3, "m": 4, "k": -1}, grad="zero"),
    "patches": Case((((2, 2, 5, 4), NORMAL),), attrs={"kernel": (2, 3), "stride": (2, 1), "padding": ((1, 0), (1, 1)),
                                                     "dilation": (1, 2), "fill": "0"}),
    "unpatches": Case((((2, 2, 2, 3, 3, 2), NORMAL),), attrs={"kernel": (2, 3), "stride": (2, 1), "size": (5, 4),
                                                             "padding": ((1, 0), (1, 1)), "dilation": (1, 2)}),
    "zeros_like": Case(((M23, NORMAL),), grad="zero"),
    "scatter": Case((((2, 2), NORMAL), ((3, 4), NORMAL)),
                    attrs={"index": (("s", 2, 0, -1), ("s", 1, None, 2))}),
    # -- arithmetic (binary ones broadcast (2, 3) against (3,))
    "add": Case(((M23, NORMAL), (V3, NORMAL))),
    "sub": Case(((M23, NORMAL), (V3, NORMAL))),
    "mul": Case(((M23, NORMAL), (V3, NORMAL))),
    "div": Case(((M23, NORMAL), (V3, signed(0.5, 2.0)))),
    "pow": Case(((M23, uniform(0.5, 2.0)), (V3, NORMAL))),
    "neg": Case(((M23, NORMAL),)),
    # -- functions
    "exp": Case(((M23, NORMAL),)),
    "log": Case(((M23, uniform(0.3, 3.0)),)),
    "sqrt": Case(((M23, uniform(0.3, 3.0)),)),
    "abs": Case(((M23, signed(0.2, 2.0)),)),
    "reciprocal": Case(((M23, signed(0.5, 2.0)),)),
    "sin": Case(((M23, NORMAL),)),
    "cos": Case(((M23, NORMAL),)),
    "sigmoid": Case(((M23, uniform(-4.0, 4.0)),)),
    "tanh": Case(((M23, uniform(-2.0, 2.0)),)),
    "softplus": Case(((M23, uniform(-4.0, 4.0)),)),
    "gelu": Case(((M23, uniform(-3.0, 3.0)),)),
    "gelu_tanh": Case(((M23, uniform(-3.0, 3.0)),)),
    "log1p": Case(((M23, uniform(-0.5, 2.0)),)),
    "expm1": Case(((M23, NORMAL),)),
    "log2": Case(((M23, uniform(0.3, 3.0)),)),
    "log10": Case(((M23, uniform(0.3, 3.0)),)),
    "logaddexp": Case(((M23, uniform(-3.0, 3.0)), (V3, uniform(-3.0, 3.0)))),
    "tan": Case(((M23, uniform(-1.2, 1.2)),)),
    "sinh": Case(((M23, NORMAL),)),
    "cosh": Case(((M23, NORMAL),)),
    "arcsin": Case(((M23, uniform(-0.9, 0.9)),)),
    "arccos": Case(((M23, uniform(-0.9, 0.9)),)),
    "arctan": Case(((M23, uniform(-3.0, 3.0)),)),
    "arcsinh": Case(((M23, uniform(-3.0, 3.0)),)),
    "arccosh": Case(((M23, uniform(1.2, 3.0)),)),
    "arctanh": Case(((M23, uniform(-0.9, 0.9)),)),
    # away from the branch cut (a = 0, b < 0) and the origin
    "arctan2": Case(((M23, signed(0.2, 1.5)), (V3, signed(0.2, 1.5)))),
    "hypot": Case(((M23, signed(0.2, 1.5)), (V3, signed(0.2, 1.5)))),
    # -- piecewise: sampled away from the jumps and the ends
    "sign": Case(((M23, signed(0.2, 2.0)),), grad="zero"),
    "mod": Case(((M23, None), (V3, None)), sample=away_from_multiples(M23, V3)),
    "clip": Case(((M23, bands((-1.5, -0.6), (-0.4, 0.4), (0.6, 1.5))),), attrs={"a_min": -0.5, "a_max": 0.5}),
    # -- rectifiers: sampled away from the kink at 0
    "relu": Case(((M23, signed(0.1, 2.0)),)),
    "leaky_relu": Case(((M23, signed(0.1, 2.0)),), attrs={"alpha": 0.2}),
    "elu": Case(((M23, signed(0.1, 2.0)),), attrs={"alpha": 1.5}),
    "prelu": Case(((M23, signed(0.1, 2.0)), (V3, uniform(0.05, 0.5)))),
    "maximum": Case(((M23, None), (V3, None)), sample=separated(M23, V3)),
    "minimum": Case(((M23, None), (V3, None)), sample=separated(M23, V3)),
    # -- comparisons: ties on purpose; no gradient (a step function's derivative is 0)
    "greater": Case(((M23, integers(-1, 1)), (V3, integers(-1, 1))), grad="zero"),
    "less": Case(((M23, integers(-1, 1)), (V3, integers(-1, 1))), grad="zero"),
    "greater_equal": Case(((M23, integers(-1, 1)), (V3, integers(-1, 1))), grad="zero"),
    "less_equal": Case(((M23, integers(-1, 1)), (V3, integers(-1, 1))), grad="zero"),
    "equal": Case(((M23, integers(-1, 1)), (V3, integers(-1, 1))), grad="zero"),
    "not_equal": Case(((M23, integers(-1, 1)), (V3, integers(-1, 1))), grad="zero"),
    # the condition is a 0/1 mask (no gradient: a perturbed 0 would flip it)
    "where": Case(((M23, mask), (M23, NORMAL), (V3, NORMAL))),
    # -- structural
    "matmul": Case((((2, 3), NORMAL), ((3, 4), NORMAL))),
    "transpose": Case((((2, 3, 4), NORMAL),), attrs={"axes": (2, 0, 1)}),
    "sum": Case((((3, 4), NORMAL),), attrs={"axis": (1,), "keepdims": False}),
    "mean": Case((((3, 4, 2), NORMAL),), attrs={"axis": (0, 2), "keepdims": True}),
    "max": Case((((3, 4), distinct),), attrs={"axis": (0,), "keepdims": False}),
    "reshape": Case((((2, 6), NORMAL),), attrs={"shape": (3, 2, 2)}),
    "getitem": Case((((3, 4, 5), NORMAL),),
                    attrs={"index": (("i", -1), ("n",), ("s", None, None, -2), ("s", 1, 4, None))}),
    "concatenate": Case((((2, 1), NORMAL), ((2, 3), NORMAL), ((2, 2), NORMAL)), attrs={"axis": 1}),
    # -- integers: indices in [-n, n) (negative ones count from the end), labels out of range give zero rows
    "take": Case((((3, 4), NORMAL), ((2, 5), indices(-4, 4))), attrs={"axis": 1}),
    "scatter_add": Case((((3, 2, 5), NORMAL), ((2, 5), indices(-4, 4)), ((3, 4), NORMAL)), attrs={"axis": 1}),
    "one_hot": Case((((2, 3), indices(-1, 5)),), attrs={"n": 4}, grad="zero"),
    "argmax": Case((((3, 4), integers(-1, 1)),), attrs={"axis": 1}, grad="zero"),   # ties: the first wins
    "argmin": Case((((3, 4), integers(-1, 1)),), attrs={"axis": 0}, grad="zero"),
    "sort_by": Case(((M23, NORMAL), (M23, integers(-1, 1))), attrs={"axis": 1}),   # ties keep their order
    "unsort_by": Case(((M23, NORMAL), (M23, integers(-1, 1))), attrs={"axis": 0}),
}

TESTED = sorted(name for name, case in OPS.items() if isinstance(case, Case))


# ---- helpers --------------------------------------------------------------------------

INPUT_NAMES = ("a", "b", "c", "d")


def build_graph(name, case):
    """The graph `name(a, b, ...)` applying the op to its inputs."""
    op = gc.REGISTRY[name]
    params = [inspect.Parameter(INPUT_NAMES[k], inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=gc.IntTensor[shape] if is_integer(domain) else gc.Tensor[shape])
              for k, (shape, domain) in enumerate(case.inputs)]

    def model(*tensors):
        if case.build is not None:
            return case.build(*tensors)
        return ops.apply(op, tensors, **case.attrs)

    model.__signature__ = inspect.Signature(params)
    return gc.graph(model, name=f"op_{name}")


def sample_inputs(name, case, seed=0):
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    if case.sample is not None:
        return [np.asarray(v, dtype=np.float64) for v in case.sample(rng)]
    return [domain(rng, shape) for shape, domain in case.inputs]


def reference(name, case, arrays):
    op = gc.REGISTRY[name]
    if case.ref is not None:
        return case.ref(op, arrays, case.attrs)
    return op.ref(*arrays, **case.attrs)


def differentiable(name, case):
    """Input names that carry a gradient: all but the op's non-differentiable ones
    (and, for where, the mask: perturbing a 0 flips the condition)."""
    op = gc.REGISTRY[name]
    return [INPUT_NAMES[k] for k in range(len(case.inputs)) if k not in op.nondiff and k in floats(case)]


def floats(case):
    """The positions of the float inputs (the others are integers: never differentiated)."""
    return [k for k, (_, domain) in enumerate(case.inputs) if not is_integer(domain)]


def numeric_grad(f, arrays, k, h=1e-6):
    """Central differences of the scalar f(arrays) with respect to arrays[k]."""
    x = arrays[k]
    out = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        plus = [a.copy() for a in arrays]
        minus = [a.copy() for a in arrays]
        plus[k][idx] += h
        minus[k][idx] -= h
        out[idx] = (f(plus) - f(minus)) / (2 * h)
    return out


def reference_grads(name, case, arrays, seed, wrt):
    """{input name: d sum(seed * ref(arrays)) / d input} by central differences of
    the NumPy reference; zeros where the op has no gradient by definition."""
    objective = lambda xs: float(np.sum(reference(name, case, xs) * seed))  # noqa: E731
    differentiable_inputs = differentiable(name, case) if case.grad == "check" else []
    out = {}
    for input_name in wrt:
        k = INPUT_NAMES.index(input_name)
        out[input_name] = (numeric_grad(objective, arrays, k) if input_name in differentiable_inputs
                           else np.zeros_like(arrays[k]))
    return out


@pytest.fixture(scope="module")
def compiled_on():
    """Compiled graphs, one per (op, target, dtype, wrt), shared by this module's tests."""
    cache = {}

    def get(name, target, dtype="float64", wrt=None):
        key = (name, target, dtype, None if wrt is None else tuple(wrt))
        if key not in cache:
            cache[key] = gc.compile(build_graph(name, OPS[name]), target=target, dtype=dtype, wrt=wrt)
        return cache[key]
    return get


@pytest.fixture
def compiled(compiled_on, target):
    """The same, on the target this test runs on (every test here runs on every target)."""
    return lambda name, dtype="float64", wrt=None: compiled_on(name, target, dtype, wrt)


# ---- the table covers the registry ----------------------------------------------------

def _registered_by_graphc():
    """The registry of a fresh interpreter: the ops graphc itself declares (tests
    elsewhere may declare their own ops in this process)."""
    out = subprocess.run([sys.executable, "-c", "import graphc; print(' '.join(graphc.REGISTRY))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_table_covers_registry():
    registered = _registered_by_graphc()
    missing = sorted(registered - set(OPS))
    assert not missing, f"ops registered without a row in tests/test_ops.py OPS: {missing}"
    stale = sorted(set(OPS) - registered)
    assert not stale, f"rows in OPS for ops that are not registered: {stale}"


def test_in_process_registry_holds_every_row():
    for name in OPS:
        assert name in gc.REGISTRY, name
        assert gc.REGISTRY[name].name == name


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_row_is_a_case_or_says_why_not(name):
    row = OPS[name]
    assert isinstance(row, (Case, Elsewhere))
    if isinstance(row, Elsewhere):
        assert len(row.reason) > 20
    else:
        assert row.grad in ("check", "zero")
        if row.ref is None:
            assert callable(gc.REGISTRY[name].ref), f"{name} has no NumPy reference"


def test_every_elementwise_op_with_a_formula_is_tested_directly():
    for name, op in gc.REGISTRY.items():
        if op.elementwise and op.formula is not None and name in OPS:
            assert isinstance(OPS[name], Case), name


# ---- values ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", TESTED)
def test_value_matches_reference(name, compiled):
    case = OPS[name]
    fn = compiled(name)
    op = gc.REGISTRY[name]
    assert any(n.op is op for n in fn.graph.live_nodes()), f"the graph does not apply {name}"
    arrays = sample_inputs(name, case)
    expected = reference(name, case, [a.copy() for a in arrays])
    got = fn.forward(*arrays)
    assert np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    # the output shape the graph declared is the one computed
    assert np.shape(got) == tuple(fn.graph.outputs[0][1].shape)


# ---- gradients ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(n for n in TESTED if OPS[n].grad == "check"))
def test_gradient_matches_central_differences(name, compiled):
    case = OPS[name]
    wrt = differentiable(name, case)
    fn = compiled(name, wrt=wrt)
    arrays = sample_inputs(name, case)
    inputs = dict(zip(INPUT_NAMES, arrays))

    result = gc.gradcheck(fn, inputs)
    assert result.ok, f"{name}:\n{result}"

    # and against central differences of the NumPy reference, through a projection
    seed = np.random.default_rng(1).standard_normal(np.shape(reference(name, case, arrays)))
    grads = fn.backward(*arrays, grad_out=seed) if seed.shape else fn.value_and_grad(*arrays)[1]
    expected = reference_grads(name, case, arrays, seed, fn.wrt)
    for input_name, g in zip(fn.wrt, grads):
        assert np.shape(g) == np.shape(expected[input_name]), f"{name}: d/d{input_name} has the wrong shape"
        np.testing.assert_allclose(g, expected[input_name], rtol=1e-6, atol=1e-8,
                                   err_msg=f"{name}: d/d{input_name}")


@pytest.mark.parametrize("jvp_target", ["numpy", "cuda"])
@pytest.mark.parametrize("name", [n for n in TESTED if floats(OPS[n])])   # one_hot's only input is an integer
def test_jvp_matches_central_differences(name, jvp_target, compiled_on):
    """gc.jvp of every op: the tangent output against central differences of the NumPy
    reference along the same direction, (ref(x + h t) - ref(x - h t)) / 2h. (The numba
    target's forward mode is checked against PyTorch in test_forward_mode.py.)"""
    case = OPS[name]
    wrt = differentiable(name, case) if case.grad == "check" else [INPUT_NAMES[k] for k in floats(case)]
    fn = gc.compile(gc.jvp(build_graph(name, case), wrt=wrt), target=jvp_target)
    arrays = sample_inputs(name, case)
    rng = np.random.default_rng(2)
    tangents = {w: rng.standard_normal(np.shape(arrays[INPUT_NAMES.index(w)])) for w in wrt}
    value, tangent = fn.forward(*arrays, *tangents.values())
    np.testing.assert_allclose(np.asarray(value), reference(name, case, arrays), rtol=1e-12, atol=1e-12)

    def moved(h):
        xs = [a + h * tangents[n] if n in tangents and case.grad == "check" else a
              for n, a in zip(INPUT_NAMES, arrays)]
        return np.asarray(reference(name, case, xs), dtype=np.float64)   # a comparison's mask: 0/1
    h = 1e-6
    expected = (moved(h) - moved(-h)) / (2 * h)
    assert np.shape(tangent) == np.shape(expected), f"{name}: the tangent has the wrong shape"
    np.testing.assert_allclose(np.asarray(tangent), expected, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("name", sorted(n for n in TESTED if OPS[n].grad == "zero"
                                        or gc.REGISTRY[n].nondiff))
def test_inputs_without_gradient_get_zeros(name, compiled):
    """Non-differentiable inputs (and every input of a gradient-free op) get exact
    zeros of their own shape."""
    case = OPS[name]
    fn = compiled(name)
    arrays = sample_inputs(name, case)
    out = reference(name, case, arrays)
    seed = np.random.default_rng(2).standard_normal(np.shape(out))
    grads = dict(zip(fn.wrt, fn.backward(*arrays, grad_out=seed)))
    assert list(fn.wrt) == [INPUT_NAMES[k] for k in floats(case)], "integer inputs are not differentiated"
    zero = set(floats(case)) if case.grad == "zero" else set(gc.REGISTRY[name].nondiff) & set(floats(case))
    grads = [grads.get(INPUT_NAMES[k]) for k in range(len(arrays))]
    for k in sorted(zero):
        assert np.shape(grads[k]) == arrays[k].shape
        assert np.all(np.asarray(grads[k]) == 0.0), f"{name}: d/d{INPUT_NAMES[k]} should be 0"


# ---- float32 ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", TESTED)
def test_float32_stays_float32(name, compiled):
    case = OPS[name]
    fn = compiled(name, dtype="float32")
    arrays = sample_inputs(name, case)
    expected = reference(name, case, arrays)
    value = fn.forward(*arrays)
    want = np.int64 if fn.graph.outputs[0][1].dtype == "int" else np.float32   # integers stay int64
    assert np.asarray(value).dtype == want, f"{name}: forward gives {np.asarray(value).dtype}"
    np.testing.assert_allclose(value, expected, rtol=2e-5, atol=2e-6)
    seed = np.random.default_rng(3).standard_normal(np.shape(expected))
    grads = fn.backward(*arrays, grad_out=seed)
    expected_grads = reference_grads(name, case, arrays, seed, fn.wrt)
    for input_name, g in zip(fn.wrt, grads):
        assert np.asarray(g).dtype == np.float32, f"{name}: d/d{input_name} is {np.asarray(g).dtype}"
        np.testing.assert_allclose(g, expected_grads[input_name], rtol=1e-4, atol=1e-5,
                                   err_msg=f"{name}: d/d{input_name} in float32")
    value, grads = fn.value_and_grad(*arrays, grad_out=seed)
    assert np.asarray(value).dtype == want
    assert all(np.asarray(g).dtype == np.float32 for g in grads)


@pytest.mark.parametrize("name", ["sigmoid", "exp", "mul", "sum", "max"])
def test_float32_scalar_graph_stays_float32(name, target):
    """Scalar inputs and Python constants must not promote float32 to float64."""
    fn_of = {
        "sigmoid": lambda x: gc.sigmoid(x * 0.5 + 1.25),
        "exp": lambda x: gc.exp(-x) / 3.0,
        "mul": lambda x: 2.5 * x * x - 1.0,
        "sum": lambda x: gc.sum(gc.reshape(x * 1.5, (1,))),
        "max": lambda x: gc.max(gc.reshape(x, (1, 1)) - 0.1),
    }[name]

    @gc.graph
    def f(x):
        return fn_of(x)

    fn = gc.compile(f, dtype="float32", target=target)
    value, (g,) = fn.value_and_grad(0.7)
    assert isinstance(value, np.float32), type(value)
    assert isinstance(g, np.float32), type(g)


# ---- the ops tested through other ops -----------------------------------------------------

def test_python_constants(target):
    """const: Python numbers (ints and floats, either side of an operator)."""
    @gc.graph
    def f(x: gc.Tensor[3]):
        return gc.sum(2 * x ** 3 - x / 4.0 + 1.5 - 3 / x)

    x = np.array([0.5, -1.25, 2.0])
    fn = gc.compile(f, target=target)
    assert any(n.op.name == "const" for n in f.nodes)
    value, (g,) = fn.value_and_grad(x)
    assert value == pytest.approx(np.sum(2 * x ** 3 - x / 4.0 + 1.5 - 3 / x), rel=1e-14)
    np.testing.assert_allclose(g, 6 * x ** 2 - 0.25 + 3 / x ** 2, rtol=1e-13)


def test_inputs_are_the_graph_parameters():
    """input: one node per argument, named and shaped as declared."""
    @gc.graph
    def f(p, q: gc.Tensor["B", 2]):
        return gc.sum(q) * p

    assert f.input_names == ("p", "q")
    assert [n.op.name for n in f.inputs] == ["input", "input"]
    assert f.inputs[0].shape == ()
    assert f.inputs[1].shape[1] == 2 and str(f.inputs[1].shape[0]) == "B"


def test_custom_vjp_rule_replaces_the_derived_gradient(target):
    """custom_vjp: the rule is what backward computes, not autodiff through the value."""
    @gc.graph
    def f(x: gc.Tensor[3]):
        return gc.sum(structural.with_vjp(gc.sin(x), (x,), lambda g, x: (g * 3.0,), "three"))

    x = np.array([0.1, 0.2, 0.3])
    value, (g,) = gc.compile(f, target=target).value_and_grad(x)
    assert value == pytest.approx(np.sum(np.sin(x)))
    np.testing.assert_array_equal(g, [3.0, 3.0, 3.0])


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_softplus_gradient_is_accurate_far_left(dtype, rtol, target):
    """softplus' = sigmoid(x) keeps its relative accuracy where softplus(x) is tiny."""
    @gc.graph
    def f(x: gc.Tensor[6]):
        return gc.sum(gc.softplus(x))

    x = np.array([-40.0, -30.0, -17.0, -12.0, 3.0, 30.0])
    _, (g,) = gc.compile(f, dtype=dtype, target=target).value_and_grad(x)
    np.testing.assert_allclose(g, 1.0 / (1.0 + np.exp(-x)), rtol=rtol)
