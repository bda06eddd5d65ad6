"""The derivative rules of every elementwise op, checked symbolically against
sympy.diff of the op's formula, and a user-declared op end to end."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import graphc as gc
from graphc.graph import ops, symbolic
from graphc.backends.numpy import FUNCTIONS as NUMPY_FUNCTIONS
from graphc.graph.symbolic import ARGS, Y, log1p

A0, A1 = ARGS[:2]
P = sp.Symbol("p", positive=True)   # a strictly positive amount

# Regions where every condition of a piecewise rule is decided, away from its
# kink: there the rule must equal SymPy's derivative (which uses Heaviside, sign
# or Piecewise and differs from the rule only on the kink itself).
SIGN_OF_X = ({A0: P}, {A0: -P})
A_VERSUS_B = ({A0: A1 + P}, {A0: A1 - P})
REGIONS = {
    "abs": SIGN_OF_X,
    "relu": SIGN_OF_X,
    "leaky_relu": SIGN_OF_X,
    "elu": SIGN_OF_X,
    "prelu": SIGN_OF_X,
    "maximum": A_VERSUS_B,
    "minimum": A_VERSUS_B,
    "greater": A_VERSUS_B,
    "less": A_VERSUS_B,
    "greater_equal": A_VERSUS_B,
    "less_equal": A_VERSUS_B,
    "equal": A_VERSUS_B,
    "where": ({A0: P}, {A0: -P}, {A0: sp.Integer(0)}),   # the condition c != 0 is not a kink
    "softplus": SIGN_OF_X,   # smooth, but its rule is written with Min and Abs, which have a kink at 0
    "pow": ({A0: P},),       # the exponent's rule is masked to 0 at a zero base, where a**b is 0**b
    "not_equal": A_VERSUS_B,
    "sign": SIGN_OF_X,
    "logaddexp": A_VERSUS_B,   # smooth, but its rules are written with Min and Abs, as softplus's
    # clip(x, a_min, a_max): x below, inside, above [a_min, a_max] = [0, 1]; and, with
    # a_min > a_max (a_max wins), x below or above both (the default [0, 1] sees it inside, above)
    "clip": tuple({A0: x, sp.Symbol("a_min", real=True): lo, sp.Symbol("a_max", real=True): hi}
                  for x, lo, hi in ((-P, 0, 1), (sp.Rational(1, 2), 0, 1), (1 + P, 0, 1),
                                    (sp.Rational(1, 2), 1, 0), (2 + P, 1, 0))),
}
_PIECEWISE_KINDS = (sp.Piecewise, sp.Heaviside, sp.Max, sp.Min, sp.sign, sp.Abs)


def elementwise_ops():
    """Every registered elementwise op declared by a formula (not expr, whose
    formula lives in its attributes), with its parameters kept symbolic, and
    again at their default values where it has any."""
    out = []
    for name, op in sorted(gc.REGISTRY.items()):
        if op.elementwise and op.formula is not None:
            out.append(pytest.param(op, (), id=name))
            if op.params:
                out.append(pytest.param(op, default_attrs(op), id=f"{name}-defaults"))
    return out


def default_attrs(op):
    """The attributes a node gets when none are given, frozen as apply freezes them."""
    return tuple((k, ops._freeze(v)) for k, v in op.params)


def is_zero(expr):
    """Whether SymPy proves `expr` is 0 (log1p, which the stable forms use, taken as the log
    it stands for: SymPy's simplify does not see through it)."""
    return sp.simplify(expr.replace(log1p, lambda a: sp.log(1 + a))) == 0


def has_piecewise(expr):
    return any(expr.has(kind) for kind in _PIECEWISE_KINDS)


def rule_minus_derivative(op, attrs):
    """[rule_i with Y replaced by the formula - d formula / d arg_i] for each input."""
    formula = op.formula_for(attrs)
    rules = op.partials_for(attrs, op.n_inputs)
    assert len(rules) == op.n_inputs
    out = []
    for i, rule in enumerate(rules):
        assert rule.free_symbols <= set(ARGS[:op.n_inputs]) | {Y} | formula.free_symbols, \
            f"{op.name}: rule {i} uses unknown symbols {rule.free_symbols}"
        out.append((i, rule, sp.sympify(rule).subs(Y, formula) - sp.diff(formula, ARGS[i])))
    return out


@pytest.mark.parametrize("op, attrs", elementwise_ops())
def test_rule_equals_sympy_derivative(op, attrs):
    for i, rule, difference in rule_minus_derivative(op, attrs):
        if op.name in REGIONS:
            regions = REGIONS[op.name]
        elif has_piecewise(difference):
            pytest.fail(f"{op.name}: rule {i} ({rule}) is piecewise; add its regions to REGIONS")
        else:
            regions = ({},)
        for region in regions:
            d = difference.subs(region)
            assert not d.has(sp.Heaviside, sp.Piecewise), \
                f"{op.name}: region {region} does not decide rule {i}: {d}"
            assert is_zero(d), (f"{op.name}: d/d{ARGS[i]}: rule {rule} differs from "
                                f"sympy.diff {sp.diff(op.formula_for(attrs), ARGS[i])} in region {region}")


@pytest.mark.parametrize("name", sorted(REGIONS))
def test_piecewise_rules_are_checked_on_both_sides_of_the_kink(name):
    """The regions are a real check: on each side, the rule and the derivative are
    plain numbers or expressions, and at least one side's derivative is not 0
    unless the op has no gradient at all."""
    op = gc.REGISTRY[name]
    formula = op.formula
    nonzero = 0
    for i in range(op.n_inputs):
        for region in REGIONS[name]:
            derivative = sp.diff(formula, ARGS[i]).subs(region)
            assert not derivative.has(sp.Heaviside, sp.Piecewise), (name, region, derivative)
            nonzero += not is_zero(derivative)
    assert (nonzero == 0) == (set(op.nondiff) == set(range(op.n_inputs)))


def test_a_wrong_rule_is_caught():
    """The check itself: a rule with the wrong sign on one side of the kink fails."""
    bad = gc.elementwise("bad_relu", lambda x: sp.Max(0, x),
                          partials=lambda x, y: (sp.Piecewise((1, x > 0), (-1, True)),),
                          register_op=False)
    (i, rule, difference), = rule_minus_derivative(bad.op, ())
    assert is_zero(difference.subs({A0: P}))
    assert not is_zero(difference.subs({A0: -P}))


# ---- the lecture forms: rules in terms of the output y -----------------------------------

@pytest.mark.parametrize("name, expected", [
    ("sigmoid", Y * (1 - Y)),
    ("tanh", 1 - Y ** 2),
    ("exp", Y),
])
def test_rule_is_the_lecture_form(name, expected):
    (rule,) = gc.REGISTRY[name].partials_for((), 1)
    assert rule.free_symbols == {Y}, f"{name}' = {rule} is not in terms of the output"
    assert sp.expand(rule - expected) == 0


def test_mul_gate_swaps_and_add_gate_distributes():
    assert gc.REGISTRY["mul"].partials_for((), 2) == (A1, A0)
    assert gc.REGISTRY["add"].partials_for((), 2) == (1, 1)
    assert gc.REGISTRY["sub"].partials_for((), 2) == (1, -1)


def test_relu_and_max_route():
    """relu passes where x > 0; max sends the gradient to exactly one input."""
    (relu,) = gc.REGISTRY["relu"].partials_for((), 1)
    assert [relu.subs(A0, v) for v in (2, -2)] == [1, 0]
    da, db = gc.REGISTRY["maximum"].partials_for((), 2)
    for a, b in ((3, 1), (1, 3), (2, 2)):
        assert da.subs({A0: a, A1: b}) + db.subs({A0: a, A1: b}) == 1
        assert da.subs({A0: a, A1: b}) == (1 if a >= b else 0)


def test_expr_rules_come_from_its_formula_attribute():
    formula = A0 * sp.exp(A1) + sp.sin(A0 * A1)
    attrs = (("expr", formula),)
    rules = ops.EXPR.partials_for(attrs, 2)
    for i, rule in enumerate(rules):
        assert is_zero(rule.subs(Y, formula) - sp.diff(formula, ARGS[i]))


def test_partials_are_cached():
    op = gc.REGISTRY["sigmoid"]
    assert op.partials_for((), 1) is op.partials_for((), 1)


# ---- a user-declared op -------------------------------------------------------------------

@pytest.fixture
def swish():
    """gc.elementwise('swish', ...), removed from the registry afterwards."""
    saved = dict(gc.REGISTRY)
    try:
        yield gc.elementwise("swish", lambda x: x / (1 + sp.exp(-x)))
    finally:
        gc.REGISTRY.clear()
        gc.REGISTRY.update(saved)


def _np_swish(x):
    return x / (1.0 + np.exp(-x))


def _np_swish_prime(x):
    # by hand: s(x) + x s(x) (1 - s(x)), with s the sigmoid
    s = 1.0 / (1.0 + np.exp(-x))
    return s + x * s * (1.0 - s)


def test_user_op_is_registered(swish):
    assert gc.REGISTRY["swish"] is swish.op
    assert swish.op.elementwise and swish.op.n_inputs == 1


def test_user_op_derivative_is_symbolically_right(swish):
    x = A0
    formula = x / (1 + sp.exp(-x))
    (rule,) = swish.op.partials_for((), 1)
    s = 1 / (1 + sp.exp(-x))
    by_hand = s + x * s * (1 - s)
    assert is_zero(rule.subs(Y, formula) - sp.diff(formula, x))
    assert is_zero(rule.subs(Y, formula) - by_hand)


def test_user_op_compiles_and_its_gradient_checks(swish):
    @gc.graph
    def f(x: gc.Tensor[7], w: gc.Tensor[7]):
        return gc.sum(swish(x) * w)

    fn = gc.compile(f)
    assert "swish" in fn.source
    x = np.linspace(-3.0, 2.5, 7)
    w = np.random.default_rng(0).standard_normal(7)
    value, (gx, gw) = fn.value_and_grad(x, w)
    assert value == pytest.approx(np.sum(_np_swish(x) * w), rel=1e-13)
    np.testing.assert_allclose(gx, _np_swish_prime(x) * w, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gw, _np_swish(x), rtol=1e-13)
    result = gc.gradcheck(fn, {"x": x, "w": w})
    assert result.ok, str(result)


def test_user_op_non_scalar_output_gradcheck(swish):
    @gc.graph
    def g(x: gc.Tensor[2, 3]):
        return swish(x)

    fn = gc.compile(g)
    assert "swish" in fn.source
    x = np.array([[-2.0, -0.5, 0.0], [0.3, 1.0, 4.0]])
    np.testing.assert_allclose(fn.forward(x), _np_swish(x), rtol=1e-13)
    seed = np.arange(6.0).reshape(2, 3) - 2.0
    (gx,) = fn.backward(x, grad_out=seed)
    np.testing.assert_allclose(gx, _np_swish_prime(x) * seed, rtol=1e-12, atol=1e-15)
    assert gc.gradcheck(fn, [x]).ok


def test_user_op_with_a_parameter():
    """A static attribute (a default argument) is substituted into the rule."""
    saved = dict(gc.REGISTRY)
    try:
        scaled = gc.elementwise("scaled_tanh", lambda x, k=2.0: sp.tanh(k * x))

        @gc.graph
        def f(x: gc.Tensor[4]):
            return gc.sum(scaled(x, k=0.5))

        x = np.array([-1.0, -0.2, 0.4, 1.5])
        value, (g,) = gc.compile(f).value_and_grad(x)
        assert value == pytest.approx(np.sum(np.tanh(0.5 * x)))
        np.testing.assert_allclose(g, 0.5 * (1 - np.tanh(0.5 * x) ** 2), rtol=1e-12)
    finally:
        gc.REGISTRY.clear()
        gc.REGISTRY.update(saved)


def test_printer_writes_numpy():
    """The printer's text evaluates to the formula's value."""
    functions = {k: v.format(np="np") for k, v in NUMPY_FUNCTIONS.items()}
    printer = symbolic.Printer(functions, {A0: "x", A1: "z"})
    formula = A0 * sp.exp(-A1) / (1 + A0 ** 2) - sp.sqrt(A1) + sp.Max(A0, A1)
    text = printer(formula)
    x, z = 0.7, 1.9
    expected = x * np.exp(-z) / (1 + x ** 2) - np.sqrt(z) + max(x, z)
    assert eval(text, {"np": np, "x": x, "z": z}) == pytest.approx(expected, rel=1e-14)
