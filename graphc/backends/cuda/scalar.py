"""How the cuda target prints scalar code: the host's scalar statements and, with `DEVICE`,
the elementwise code inside kernels.

numba-cuda compiles no NumPy ufunc for exp, sqrt, abs, log1p or expm1 on the device:
those are math functions, also in the scalar code the host runs (and, for a graph of
scalars, the device too). np.sign has no device version either: kernels call the
module's __sign (helpers.py). A choice is Python's conditional, as np.where on scalars
gives a 0-d array.
"""
from __future__ import annotations

from ..base import OPERATORS, Target
from ..numpy import FUNCTIONS as NUMPY_FUNCTIONS

FUNCTIONS = {**NUMPY_FUNCTIONS, "where": "({{a}} if {{c}} else {{b}})", "exp": "math.exp", "sqrt": "math.sqrt",
             "Abs": "abs", "log1p": "math.log1p", "expm1": "math.expm1",
             **{f: f"math.{f}" for f in ("asin", "acos", "atan", "asinh", "acosh", "atanh", "atan2", "hypot",
                                         "log2", "log10", "floor", "erf")}}

# kernels print their elementwise members with this (a printer only: never a module's target)
DEVICE = Target("cuda", "cuda/module.py.j2", {**FUNCTIONS, "sign": "__sign"}, OPERATORS, typed_literals=True)
