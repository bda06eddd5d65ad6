"""Derivatives of derivatives: every elementwise op differentiates three times into code
that prints and computes SymPy's numbers; a kink's derivative is 0 away from the kink, a
long float exponent costs SymPy no more than a short one, and a zero base's pow is PyTorch's."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import graphc as gc
from graphc.graph import ops, symbolic
from graphc.graph.symbolic import ARGS

A0 = ARGS[0]
NAMES = ("a", "b", "c")


# ---- kinks: SymPy's distributions become what the code computes -------------------------

def test_second_derivative_of_abs_is_zero_away_from_the_kink():
    """abs' = sign, sign' = 2*DiracDelta to SymPy: 0 in the code, as in autograd and PyTorch."""
    fn = gc.compile(gc.grad(gc.graph(lambda x: 3.0 * gc.abs(x), name="f")))
    for x in (-2.0, 0.5, 3.0):
        value, (second,) = fn.value_and_grad(x)
        assert value == 3.0 * np.sign(x)
        assert second == 0.0


def test_relu_second_derivative_is_zero_and_its_step_ties_to_zero():
    x = np.array([-1.5, 0.0, 0.25, 2.0])
    fn = gc.compile(gc.grad(gc.graph(lambda x: gc.sum(gc.relu(x) ** 2), name="f")))
    value, (second,) = fn.value_and_grad(x)
    np.testing.assert_array_equal(value, 2.0 * np.maximum(x, 0.0))
    np.testing.assert_array_equal(second, np.where(x > 0, 2.0, 0.0))


def test_printable_replaces_distributions_by_their_values_off_the_kink():
    u = sp.Function("u")(A0)      # an argument SymPy cannot call real
    assert symbolic.printable(2 * sp.DiracDelta(A0) + A0 * sp.DiracDelta(A0, 2)) == 0
    assert symbolic.printable(sp.Derivative(sp.sign(u), A0)) == 0
    step = symbolic.printable(sp.Heaviside(A0 - 1))
    assert not step.has(sp.Heaviside)
    assert [step.subs(A0, v) for v in (2, 1, 0)] == [1, sp.S.Half, 0]   # 1/2 at 0, as sign(0) = 0
    assert symbolic.printable(sp.Heaviside(A0, 0)) == sp.Piecewise((1, A0 > 0), (0, True))
    # derived partials: Max's derivative and then its derivative, sign's, a constant step's
    (max_prime,) = symbolic.partials(sp.Max(0, A0), 1)
    assert max_prime == step.subs(A0, A0 + 1)
    assert symbolic.partials(max_prime, 1) == (0,)
    assert symbolic.partials(sp.sign(A0), 1) == (0,)
    assert symbolic.partials(sp.Piecewise((2, A0 > 0), (-3, True)), 1) == (0,)


def test_kinks_that_cancel_give_the_smooth_derivative():
    """Max(x, 0) + Min(x, 0) is x: SymPy's half-steps at 0 add up to its derivative 1 there;
    steps tied to 0 would give 0."""
    assert symbolic.partials(sp.Max(A0, 0) + sp.Min(A0, 0), 1)[0].subs(A0, 0) == 1


def test_softplus_second_derivative_is_right_at_zero():
    """softplus's rule is written with Min(x, 0) and Abs(x), whose kinks at 0 cancel:
    softplus''(0) = sigmoid'(0) = 1/4, as PyTorch gives (Newton's method starts there)."""
    torch = pytest.importorskip("torch")
    tx = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(torch.nn.functional.softplus(tx), tx, create_graph=True)
    assert torch.autograd.grad(first, tx)[0].item() == 0.25
    fn = gc.compile(gc.grad(gc.graph(lambda x: gc.softplus(x), name="f")))
    for x in (0.0, -1.5, 2.0, -30.0, 40.0):
        e = np.exp(-abs(x))      # sigmoid' = s*(1 - s) with no overflow (PyTorch's is 0 past 20)
        value, (second,) = fn.value_and_grad(x)
        assert value == pytest.approx(1 / (1 + np.exp(-x)), rel=1e-14)
        assert second == pytest.approx(e / (1 + e) ** 2, rel=1e-12)


def test_the_printer_names_what_it_cannot_print():
    printer = symbolic.Printer({"exp": "np.exp"}, {A0: "x"})
    with pytest.raises(NotImplementedError, match="'Subs'"):
        printer(sp.Subs(sp.Derivative(sp.Function("u")(A0), A0), A0, 0))


def _op_functions():
    """Every registered elementwise op (expr aside), with its differentiable inputs."""
    out = []
    for name, op in sorted(gc.REGISTRY.items()):
        if op.elementwise and op.formula is not None:
            diff = tuple(i for i in range(op.n_inputs) if i not in op.nondiff)
            out.append(pytest.param(name, diff, id=name))
    return out


def _reference(op, indices, point):
    """d^3 formula / d arg_i d arg_j d arg_k at `point`, by SymPy, at the defaults' values."""
    formula = op.formula.subs({sp.Symbol(k, real=True): ops._freeze(v) for k, v in op.params})
    for i in indices:
        formula = sp.diff(formula, ARGS[i])
    return float(formula.subs({ARGS[k]: v for k, v in enumerate(point)}))


# a graph's inputs are its function's parameters: one function per number of inputs
_CALLS = {1: lambda fn: lambda a: fn(a), 2: lambda fn: lambda a, b: fn(a, b),
          3: lambda fn: lambda a, b, c: fn(a, b, c)}


# where the points below or the public function's call do not fit: arccosh needs x > 1,
# gc.clip takes its bounds (these are the op's defaults, which _reference substitutes)
POINTS = {"arccosh": (1.3,)}
CALLS = {"clip": lambda a: gc.clip(a, 0.0, 1.0)}


@pytest.mark.parametrize("name, diff", _op_functions())
def test_third_derivatives_of_every_op_print_and_are_right(name, diff):
    """grad(grad(f, wrt=i), wrt=j) compiled with its gradient is every d^3 f / di dj dk, at
    points off every kink (a base > 0 for log, sqrt and pow, no tie for max)."""
    op = gc.REGISTRY[name]
    fn = CALLS.get(name) or getattr(gc, name, None) or (lambda *args: ops.apply(op, args))
    names = NAMES[:op.n_inputs]
    point = POINTS.get(name, (0.7, -0.4, 1.3)[:op.n_inputs])
    f = gc.graph(_CALLS[op.n_inputs](fn), name="f")
    for i in diff:
        for j in diff:
            second = gc.compile(gc.grad(gc.grad(f, wrt=(names[i],)), wrt=(names[j],)))
            for marker in ("Dirac", "Heaviside", "Subs", "Derivative"):
                assert marker not in second.source
            value, thirds = second.value_and_grad(*point)
            assert value == pytest.approx(_reference(op, (i, j), point), rel=1e-12, abs=1e-12)
            for k, third in enumerate(thirds):
                assert third == pytest.approx(_reference(op, (i, j, k), point), rel=1e-12, abs=1e-12), \
                    (name, names[i], names[j], names[k])


# ---- long float exponents: SymPy never sees their digits ----------------------------------

EXPONENTS = (3.638497860454269, 2.718281828459045, 3.14159)


@pytest.mark.parametrize("p", EXPONENTS)
def test_a_long_float_exponent_differentiates_twice(p):
    """x ** p's first and second derivative (solve and simplify once took 24 GB and 100 s
    on these exponents, each turned into an exact fraction of 50 digits)."""
    def g(x: gc.Tensor[3]):
        return gc.sum(x ** p)

    f = gc.graph(lambda x: x ** p, name="f")
    x = np.array([0.5, 1.25, 3.0])
    value, (first,) = gc.compile(gc.graph(g)).value_and_grad(x)
    assert value == pytest.approx(np.sum(x ** p), rel=1e-14)
    np.testing.assert_allclose(first, p * x ** (p - 1), rtol=1e-14)
    for xi in x:
        first, (second,) = gc.compile(gc.grad(f)).value_and_grad(xi)
        assert first == pytest.approx(p * xi ** (p - 1), rel=1e-14)
        assert second == pytest.approx(p * (p - 1) * xi ** (p - 2), rel=1e-14)


def test_sympy_never_sees_a_long_constant(monkeypatch):
    """solve and simplify, whose cost grows with a number's digits, see a symbol in its place;
    the answer carries the number again."""
    seen = []

    def watch(real):
        def call(expr, *args, **kwargs):
            seen.append(expr)
            assert not [n for n in sp.sympify(expr).atoms(sp.Number) if not symbolic._is_small(n)], expr
            return real(expr, *args, **kwargs)
        return call

    monkeypatch.setattr(sp, "solve", watch(sp.solve))
    monkeypatch.setattr(sp, "simplify", watch(sp.simplify))
    p = sp.Float(2.718281828459045)
    formula = p * A0 ** (p - 1)        # the unit seed folded into x ** p's local gradient
    derivative = sp.diff(formula, A0)
    rule = symbolic.prefer_output_form(derivative, formula, 1)
    assert seen, "the output-form search ran"
    assert rule.free_symbols <= {A0, symbolic.Y} and rule.has(sp.Float)
    assert sp.simplify(rule.subs(symbolic.Y, formula) - derivative) == 0


def test_a_large_formula_keeps_its_plain_derivative():
    """Past a size bound no simplification is tried: the derivative is SymPy's as it is."""
    formula = sum(sp.sin(k * A0) / k for k in range(1, 30))
    assert sp.count_ops(formula) > symbolic.MAX_OPS
    assert symbolic.partials(formula, 1) == (sp.diff(formula, A0),)


# ---- pow at a zero base: PyTorch's numbers ---------------------------------------------------

def _torch_pow(a, b):
    torch = pytest.importorskip("torch")
    ta = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    value = (ta ** tb).sum()
    value.backward()
    return value.item(), ta.grad.numpy(), tb.grad.numpy()


# NumPy's where() computes both branches (log(0) = -inf), and 0**-0.5 is inf, as PyTorch's
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_pow_matches_pytorch_at_a_zero_base(target):
    """d(a**b)/db = a**b*log(a), masked to 0 at a == 0, where 0**b does not change with b."""
    @gc.graph
    def f(a: gc.Tensor[6], b: gc.Tensor[6]):
        return gc.sum(a ** b)

    a = np.array([0.0, 0.0, 2.0, 2.0, 0.5, 0.5])
    b = np.array([2.0, 0.5, 2.0, 0.5, 2.0, 0.5])
    value, (ga, gb) = gc.compile(f, target=target).value_and_grad(a, b)
    expected, ta, tb = _torch_pow(a, b)
    assert value == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(ga, ta, rtol=1e-14)
    np.testing.assert_allclose(gb, tb, rtol=1e-14)
    positive = a > 0   # np.power's derivative in the exponent where log(a) is finite
    np.testing.assert_allclose(gb[positive], np.power(a, b)[positive] * np.log(a[positive]), rtol=1e-14)


def test_pow_exponent_rule_reads_as_a_masked_log():
    @gc.graph
    def f(x: gc.Tensor[3], y: gc.Tensor[3]):
        return gc.sum(x ** y)

    source = gc.compile(f).source
    assert "np.where(x == 0, 0.0, " in source and "np.log(x))" in source


@pytest.mark.parametrize("base", [0, 0.0, 2.0, 0.5])
def test_pow_of_a_constant_base_folds_the_mask_away(base):
    """0 ** y has no gradient in y, 2.0 ** y's reads 0.693...*grad_L*L: no where() left."""
    fn = gc.compile(gc.graph(lambda y: base ** y, name="f"))
    assert "where" not in fn.source
    backward = fn.source.split("def backward")[1].split("def value_and_grad")[0]
    grad_line = next(line for line in backward.splitlines() if line.strip().startswith("grad_y ="))
    if base == 0:
        assert grad_line.split("=")[1].split("#")[0].strip() == "0.0"
    else:
        assert f"{float(np.log(base))!r}*grad_L*L" in grad_line
    for y in (2.0, 0.5):
        value, (grad,) = fn.value_and_grad(y)
        expected, _, tb = _torch_pow(np.array([float(base)]), np.array([y]))
        assert value == pytest.approx(expected, rel=1e-14) and grad == pytest.approx(tb[0], rel=1e-14)
