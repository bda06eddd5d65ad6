"""The elementwise primitives: one line each, a SymPy formula and a NumPy reference.

Derivatives come from SymPy (see symbolic.partials). Where the lecture's gate
has a rule of its own (ReLU and max route, ties go to the first input), the
partials are given beside the formula.
"""
from __future__ import annotations

import functools

import numpy as np

from .elementwise import elementwise
from .lazy import cfunctions, sp
from .tensor import OPERATORS

# graphc's own ops build their SymPy formulas on first use, so that `import graphc` imports no
# SymPy (lazy.py); the lambdas below, and `sp` in them, are only called then
elementwise = functools.partial(elementwise, lazy=True)
_step = lambda c: sp.Piecewise((1, c), (0, True))  # noqa: E731
_zero_where_zero = lambda a, value: sp.Piecewise((0, sp.Eq(a, 0)), (value, True))  # noqa: E731


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---- arithmetic: the lecture's gates --------------------------------------------
add = elementwise("add", lambda a, b: a + b, ref=np.add, symbol="+", gate="add gate distributes")
sub = elementwise("sub", lambda a, b: a - b, ref=np.subtract, symbol="-",
                  gate="sub gate distributes, negated into b")
mul = elementwise("mul", lambda a, b: a * b, ref=np.multiply, symbol="*", gate="mul gate swaps its inputs")
div = elementwise("div", lambda a, b: a / b, ref=np.divide, symbol="/", gate="div gate")
# pow's rule stays in terms of its inputs: the output form b*y/a divides by a. Its exponent's
# rule y*log(a) is 0*-inf at a = 0, where y = 0**b is constant in b (b != 0): 0 there, as PyTorch
# masks it. A constant base folds the choice away (0 ** b: no gradient; 2.0 ** b: 0.693*y).
pow = elementwise("pow", lambda a, b: a ** b,
                  partials=lambda a, b, y: (b * a ** (b - 1), _zero_where_zero(a, y * sp.log(a))),
                  ref=np.power, symbol="**", gate="pow gate")
neg = elementwise("neg", lambda x: -x, ref=np.negative, symbol="-", gate="neg gate flips the sign")

# ---- functions --------------------------------------------------------------------
exp = elementwise("exp", lambda x: sp.exp(x), ref=np.exp, symbol="exp")
log = elementwise("log", lambda x: sp.log(x), ref=np.log, symbol="log", domain="positive")
sqrt = elementwise("sqrt", lambda x: sp.sqrt(x), ref=np.sqrt, symbol="√", domain="positive")
abs = elementwise("abs", lambda x: sp.Abs(x), ref=np.abs, symbol="|x|")
reciprocal = elementwise("reciprocal", lambda x: 1 / x, ref=np.reciprocal, symbol="1/x")
sin = elementwise("sin", lambda x: sp.sin(x), ref=np.sin, symbol="sin")
cos = elementwise("cos", lambda x: sp.cos(x), ref=np.cos, symbol="cos")
sigmoid = elementwise("sigmoid", lambda x: 1 / (1 + sp.exp(-x)), ref=_np_sigmoid, symbol="σ")
tanh = elementwise("tanh", lambda x: sp.tanh(x), ref=np.tanh, symbol="tanh")
softplus = elementwise("softplus", lambda x: sp.log(1 + sp.exp(x)),
                       # sigmoid(x) in a form with no overflow and no cancellation anywhere:
                       # SymPy's 1 - exp(-y) cancels where y is tiny (x << 0), exp(x - y) is nan
                       # at x = inf (inf - inf), 1/(1 + exp(-x)) overflows (a NumPy warning) below -709
                       partials=lambda x, y: (sp.exp(sp.Min(x, 0) - cfunctions.log1p(sp.exp(-sp.Abs(x)))),),
                       stable=lambda x: sp.Max(x, 0) + cfunctions.log1p(sp.exp(-sp.Abs(x))),
                       ref=lambda x: np.logaddexp(0.0, x), symbol="softplus")

# ---- rectifiers: routing gates ------------------------------------------------------
relu = elementwise("relu", lambda x: sp.Max(0, x), partials=lambda x, y: (_step(x > 0),),
                   ref=lambda x: np.maximum(0.0, x), symbol="relu",
                   gate="relu gate routes: passes where x > 0")
leaky_relu = elementwise("leaky_relu", lambda x, alpha=0.01: sp.Piecewise((x, x > 0), (alpha * x, True)),
                         ref=lambda x, alpha=0.01: np.where(x > 0, x, alpha * x), symbol="lrelu")
elu = elementwise("elu", lambda x, alpha=1.0: sp.Piecewise((x, x > 0), (alpha * (sp.exp(x) - 1), True)),
                  ref=lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
                  symbol="elu")
prelu = elementwise("prelu", lambda x, alpha: sp.Piecewise((x, x > 0), (alpha * x, True)),
                    ref=lambda x, alpha: np.where(x > 0, x, alpha * x), symbol="prelu")
maximum = elementwise("maximum", lambda a, b: sp.Max(a, b),
                      partials=lambda a, b, y: (_step(a >= b), _step(a < b)),
                      ref=np.maximum, symbol="max", gate="max gate routes to the larger input")
minimum = elementwise("minimum", lambda a, b: sp.Min(a, b),
                      partials=lambda a, b, y: (_step(a <= b), _step(a > b)),
                      ref=np.minimum, symbol="min", gate="min gate routes to the smaller input")

# ---- comparisons (masks, no gradient) and selection -----------------------------------
greater = elementwise("greater", lambda a, b: _step(a > b), ref=np.greater, symbol=">", nondiff=(0, 1))
less = elementwise("less", lambda a, b: _step(a < b), ref=np.less, symbol="<", nondiff=(0, 1))
greater_equal = elementwise("greater_equal", lambda a, b: _step(a >= b), ref=np.greater_equal,
                            symbol=">=", nondiff=(0, 1))
less_equal = elementwise("less_equal", lambda a, b: _step(a <= b), ref=np.less_equal,
                         symbol="<=", nondiff=(0, 1))
equal = elementwise("equal", lambda a, b: _step(sp.Eq(a, b)), ref=np.equal, symbol="==", nondiff=(0, 1))
not_equal = elementwise("not_equal", lambda a, b: _step(sp.Ne(a, b)), ref=np.not_equal, symbol="!=",
                        nondiff=(0, 1))
where = elementwise("where", lambda c, a, b: sp.Piecewise((a, sp.Ne(c, 0)), (b, True)),
                    ref=lambda c, a, b: np.where(c, a, b), symbol="where", nondiff=(0,),
                    gate="where gate routes by the condition")

# what Tensor's operators call (a + b, -a, abs(a), a > b, ...)
OPERATORS.update(add=add, sub=sub, mul=mul, div=div, pow=pow, neg=neg, abs=abs, greater=greater, less=less,
                 greater_equal=greater_equal, less_equal=less_equal, equal=equal,
                 not_equal=not_equal)
