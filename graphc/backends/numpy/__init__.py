"""The numpy target: one NumPy statement per operation, as the lecture writes it."""
from __future__ import annotations

from ...graph import ops
from ...graph.indexing import index_to_python
from ...lower.scan import scan_printer
from ..base import OPERATORS, Target, atom, dtype_of, element
from . import conv, integers

# The printer's functions: `{np}` is the module's NumPy alias
FUNCTIONS = {
    "exp": "{np}.exp", "log": "{np}.log", "sqrt": "{np}.sqrt", "sin": "{np}.sin",
    "cos": "{np}.cos", "tan": "{np}.tan", "sinh": "{np}.sinh", "cosh": "{np}.cosh", "tanh": "{np}.tanh", "Abs": "{np}.abs",
    "sign": "{np}.sign", "log1p": "{np}.log1p", "expm1": "{np}.expm1",
    "Max": "{np}.maximum", "Min": "{np}.minimum", "where": "{np}.where",
    "log2": "{np}.log2", "log10": "{np}.log10", "asin": "{np}.arcsin", "acos": "{np}.arccos",
    "atan": "{np}.arctan", "asinh": "{np}.arcsinh", "acosh": "{np}.arccosh", "atanh": "{np}.arctanh",
    "atan2": "{np}.arctan2", "hypot": "{np}.hypot", "floor": "{np}.floor",
    "erf": "__erf",   # NumPy has no erf: the module defines __erf where its code calls it (module.py.j2)
}


def _axis_text(axes):
    return str(axes[0]) if len(axes) == 1 else str(tuple(axes))


def _reduce(fn):
    def print_(node, args, ctx, name):
        axes, keep = node.attr["axis"], node.attr["keepdims"]
        if len(axes) == node.inputs[0].ndim and not keep:
            return f"{ctx.np}.{fn}({args[0]})"
        return f"{ctx.np}.{fn}({args[0]}, axis={_axis_text(axes)}" + (", keepdims=True)" if keep else ")")
    return print_


def _transpose(node, args, ctx, name):
    axes = node.attr["axes"]
    if axes == tuple(reversed(range(len(axes)))):
        return f"{atom(args[0])}.T"
    return f"{ctx.np}.transpose({args[0]}, {axes})"


def _broadcast(node, args, ctx, name):
    if node.inputs[0].op is ops.CONST:   # full_like keeps the dtype; a Python float would not
        return f"{ctx.np}.full_like({args[1]}, {args[0]})"
    return f"{ctx.np}.broadcast_to({args[0]}, {ctx.np}.shape({args[1]}))"


def _broadcast_to(node, args, ctx, name):
    shape = ctx.target.shape(node.shape, ctx)
    if node.inputs[0].shape == ():   # a number fills the array (in the module's dtype)
        return f"{ctx.np}.full({shape}, {args[0]}, dtype={ctx.np}.{dtype_of(node, ctx)})"
    return f"{ctx.np}.broadcast_to({args[0]}, {shape})"


def _basis(node, args, ctx, name):
    """np.eye, each row shaped like the input (forward mode's seeds for a Jacobian)."""
    n = node.shape[0]
    eye = f"{ctx.np}.eye({n}, dtype={ctx.np}.{ctx.dtype})"
    return eye if node.ndim == 2 else f"{eye}.reshape({ctx.target.shape(node.shape, ctx)})"


def _tri(node, args, ctx, name):
    """np.tri(n, m, k): the triangle of ones behind tril, triu and cumsum (graph/arrays.py)."""
    n, m = (ctx.target.dimension(d, ctx) for d in node.shape)
    return f"{ctx.np}.tri({n}, {m}, {node.attr['k']}, dtype={ctx.np}.{ctx.dtype})"


def _reshape(node, args, ctx, name):
    if node.shape == ():   # its one element: a number, not a 0-d array
        return element(args[0], node.inputs[0].ndim)
    return f"{ctx.np}.reshape({args[0]}, {ctx.target.shape(node.shape, ctx)})"


def _zeros(node, args, ctx, name):
    if node.shape == ():   # a number, not a 0-d array
        return ctx.target.constant(0.0, ctx)
    if node.inputs[0].dtype == "int":   # float zeros of an integer's shape
        return f"{ctx.np}.zeros({atom(args[0])}.shape, dtype={ctx.np}.{ctx.dtype})"
    return f"{ctx.np}.zeros_like({args[0]})"


def _getitem(node, args, ctx, name):
    if node.inputs[0].shape == ():   # a number given new unit axes (x[None]): an array holding it
        return f"{ctx.np}.full({ctx.target.shape(node.shape, ctx)}, {args[0]}, dtype={ctx.np}.{dtype_of(node, ctx)})"
    return f"{atom(args[0])}[{index_to_python(node.attr['index'])}]"


def _scatter(node, args, ctx, name):
    v = node.inputs[0]
    if node.shape == ():   # into a number (the VJP of x[None]): v's one element
        return element(args[0], v.ndim)
    return (f"{ctx.np}.zeros_like({args[1]})",
            [f"{name}[{index_to_python(node.attr['index'])}] = {args[0]}"])


# whole-array statements; the numba target compiles most of them as they are
OPS = {
    **OPERATORS,
    "not_equal": "{np}.{dtype}({0} != {1})",   # a mask in the code's dtype, as base.OPERATORS' equal
    "where": "{np}.where({0}, {1}, {2})",
    "matmul": "{0} @ {1}",
    "transpose": _transpose,
    "sum": _reduce("sum"), "mean": _reduce("mean"), "max": _reduce("max"),
    "reshape": _reshape,
    "broadcast_like": _broadcast,
    "broadcast_to": _broadcast_to,
    "basis": _basis,
    "tri": _tri,
    "zeros_like": _zeros,
    "getitem": _getitem,
    "scatter": _scatter,
    "concatenate": lambda node, args, ctx, name: (f"{ctx.np}.concatenate(({', '.join(args)},), "
                                                  f"axis={node.attr['axis']})"),
    "scan": scan_printer(lambda node, ctx: f"{ctx.np}.empty({ctx.target.shape(node.shape, ctx)}, "
                                           f"dtype={ctx.np}.{dtype_of(node, ctx)})"),
    **conv.OPS,
    **integers.OPS,
}

TARGET = Target("numpy", "numpy/module.py.j2", FUNCTIONS, OPS, vectorised=True,
                summary="one readable NumPy statement per operation")
