"""The math target: a graph of scalars as plain Python on floats, with the standard
library's math module and nothing else: the lecture's slide code, runnable anywhere.

It computes in Python floats, so Python's rules hold where NumPy's would give inf or
nan: a division by zero raises ZeroDivisionError, math.exp(1000) OverflowError, and
math.log(-1) ValueError. Tensors and float32 are refused before any work (compiler.py).
"""
from __future__ import annotations

from ..base import OPERATORS, Target, check_called

# The printer's functions: `{np}` is the module's alias for math (math, unless a value is
# called so). sign has no math function: the module defines __sign when it calls it.
FUNCTIONS = {
    "exp": "{np}.exp", "log": "{np}.log", "sqrt": "{np}.sqrt", "sin": "{np}.sin",
    "cos": "{np}.cos", "tan": "{np}.tan", "sinh": "{np}.sinh", "cosh": "{np}.cosh", "tanh": "{np}.tanh",
    "Abs": "abs", "sign": "__sign", "log1p": "{np}.log1p", "expm1": "{np}.expm1",
    "Max": "max", "Min": "min", "where": "({{a}} if {{c}} else {{b}})",
    "log2": "{np}.log2", "log10": "{np}.log10", "asin": "{np}.asin", "acos": "{np}.acos",
    "atan": "{np}.atan", "asinh": "{np}.asinh", "acosh": "{np}.acosh", "atanh": "{np}.atanh",
    "atan2": "{np}.atan2", "hypot": "{np}.hypot", "floor": "{np}.floor", "erf": "{np}.erf",
}

# Python's own functions the code calls: a value named so would hide them
BUILTINS = ("abs", "max", "min", "float")

OPS = {
    **{k: v for k, v in OPERATORS.items() if "{np}" not in v},   # + - * / ** and negation
    "greater": "float({0} > {1})", "less": "float({0} < {1})", "greater_equal": "float({0} >= {1})",
    "less_equal": "float({0} <= {1})", "equal": "float({0} == {1})",
    "not_equal": "float({0} != {1})",
    "where": "({1} if {0} else {2})",
    "zeros_like": "0.0",   # the gradient of an input the output does not depend on
}


def _reserve(namer, user):
    check_called("math", BUILTINS, user)
    return {}, None


TARGET = Target("math", "math/module.py.j2", FUNCTIONS, OPS, reserve=_reserve, scalars_only=True,
                dtypes=("float64",), module_alias="math",
                summary="a graph of scalars as plain Python floats and the math module, no NumPy")
