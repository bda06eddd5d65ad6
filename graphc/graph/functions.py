"""The rest of NumPy's elementwise functions, by NumPy's names and signatures: logarithms
and exponentials that keep their digits, trigonometric and hyperbolic functions and their
inverses, arctan2, hypot, sign, mod, clip and logaddexp. One line each, as in
primitives.py: a SymPy formula (SymPy derives the VJP and JVP), a NumPy reference, the
diagrams' symbol, and the domain a graph input must lie in.
"""
from __future__ import annotations

import functools
import numbers

import numpy as np

from .elementwise import elementwise
from .ir import GraphError
from .lazy import cfunctions, sp
from .primitives import maximum, minimum

# as primitives.py's: the formulas are built on first use, so that `import graphc` imports no SymPy
elementwise = functools.partial(elementwise, lazy=True)


@functools.lru_cache(maxsize=None)
def _floor_class():
    """SymPy's floor with derivative 0 (away from the integers, where it jumps): mod's
    rules and their derivatives come out as numbers, not an unevaluated Derivative.
    Defined on first use: a subclass of a SymPy class needs SymPy imported."""
    class floor(sp.floor):
        def fdiff(self, argindex=1):
            return sp.S.Zero
    return floor


floor = lambda x: _floor_class()(x)  # noqa: E731


# ---- logarithms and exponentials --------------------------------------------------
log1p = elementwise("log1p", lambda x: cfunctions.log1p(x), ref=np.log1p, symbol="log1p")
expm1 = elementwise("expm1", lambda x: cfunctions.expm1(x), ref=np.expm1, symbol="expm1")
log2 = elementwise("log2", lambda x: cfunctions.log2(x), ref=np.log2, symbol="log2", domain="positive")
log10 = elementwise("log10", lambda x: cfunctions.log10(x), ref=np.log10, symbol="log10", domain="positive")
# log(exp(a) + exp(b)), printed as max(a, b) + log1p(exp(-|a - b|)); its rules are sigmoid(a - b)
# and sigmoid(b - a) in softplus's form, with no overflow and exact at a tie (exp(a - y) is not:
# y rounds to a where a = b = 1e200, and the rule to 1)
_sigmoid = lambda d: sp.exp(sp.Min(d, 0) - cfunctions.log1p(sp.exp(-sp.Abs(d))))  # noqa: E731
logaddexp = elementwise("logaddexp", lambda a, b: sp.log(sp.exp(a) + sp.exp(b)),
                        partials=lambda a, b, y: (_sigmoid(a - b), _sigmoid(b - a)),
                        stable=lambda a, b: sp.Max(a, b) + cfunctions.log1p(sp.exp(-sp.Abs(a - b))),
                        ref=np.logaddexp, symbol="logaddexp")

# ---- trigonometric and hyperbolic functions, and their inverses ------------------------
tan = elementwise("tan", lambda x: sp.tan(x), ref=np.tan, symbol="tan")
sinh = elementwise("sinh", lambda x: sp.sinh(x), ref=np.sinh, symbol="sinh")
cosh = elementwise("cosh", lambda x: sp.cosh(x), ref=np.cosh, symbol="cosh")
arcsin = elementwise("arcsin", lambda x: sp.asin(x), ref=np.arcsin, symbol="arcsin", domain="unit")
arccos = elementwise("arccos", lambda x: sp.acos(x), ref=np.arccos, symbol="arccos", domain="unit")
arctan = elementwise("arctan", lambda x: sp.atan(x), ref=np.arctan, symbol="arctan")
arcsinh = elementwise("arcsinh", lambda x: sp.asinh(x), ref=np.arcsinh, symbol="arcsinh")
# x >= 1: no domain of the CLI's sampler fits (its "positive" starts at 0.5), so none is noted
arccosh = elementwise("arccosh", lambda x: sp.acosh(x), ref=np.arccosh, symbol="arccosh")
arctanh = elementwise("arctanh", lambda x: sp.atanh(x), ref=np.arctanh, symbol="arctanh", domain="unit")
arctan2 = elementwise("arctan2", lambda a, b: sp.atan2(a, b), ref=np.arctan2, symbol="arctan2")
# sqrt(a**2 + b**2) printed as hypot(a, b), which neither overflows nor underflows; a/y, b/y
hypot = elementwise("hypot", lambda a, b: sp.sqrt(a ** 2 + b ** 2), stable=lambda a, b: cfunctions.hypot(a, b),
                    ref=np.hypot, symbol="hypot")

# ---- sign, mod, clip: piecewise ------------------------------------------------------
sign = elementwise("sign", lambda x: sp.sign(x), ref=np.sign, symbol="sign", nondiff=(0,))
# NumPy's mod (Python's %): the result has the divisor's sign. Its rules are PyTorch's
# remainder's: 1 for a, -floor(a/b) for b (the jumps at multiples of b are not seen)
mod = elementwise("mod", lambda a, b: a - b * floor(a / b),
                  partials=lambda a, b, y: (sp.S.One, -floor(a / b)), ref=np.mod, symbol="mod")
# min(max(x, a_min), a_max), as NumPy (a_max wins where a_min > a_max), for bounds that are
# numbers (static attributes); PyTorch's clamp's rule: 1 on [a_min, a_max], both ends included
# (a tie goes to x), 0 outside (and everywhere when a_min > a_max)
_clip = elementwise("clip", lambda x, a_min=0.0, a_max=1.0: sp.Min(sp.Max(x, a_min), a_max),
                    partials=lambda x, a_min, a_max, y: (sp.Piecewise((0, x < a_min), (1, x <= a_max), (0, True)),),
                    ref=lambda x, a_min=0.0, a_max=1.0: np.clip(x, a_min, a_max), symbol="clip")


def clip(a, a_min, a_max):
    """np.clip(a, a_min, a_max): min(max(a, a_min), a_max). Bounds that are numbers are the
    clip op's attributes; where a bound is a graph value it is gc.maximum and gc.minimum, which
    route ties to `a` as clip does. None (or an infinite bound) leaves that side open."""
    if a_min is None and a_max is None:
        raise GraphError("clip: one of a_min and a_max must be given (not both None)")
    low, high = _bound(a_min, -np.inf), _bound(a_max, np.inf)
    if isinstance(low, numbers.Real) and isinstance(high, numbers.Real):
        return _clip(a, a_min=low, a_max=high)
    out = a if low is None else maximum(a, low)
    return out if high is None else minimum(out, high)


def _bound(bound, open_end):
    """None for no bound (None, or the infinity on its side), else the bound."""
    return None if bound is None or isinstance(bound, numbers.Real) and bound == open_end else bound


clip.op = _clip.op

__all__ = ["log1p", "expm1", "log2", "log10", "logaddexp", "tan", "sinh", "cosh", "arcsin", "arccos",
           "arctan", "arcsinh", "arccosh", "arctanh", "arctan2", "hypot", "sign", "mod", "clip"]
