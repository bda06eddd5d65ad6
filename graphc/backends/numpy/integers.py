"""How the numpy target prints the integer ops (graph/integers.py): NumPy's take, add.at,
argmax and argmin, a comparison for one_hot, and a stable argsort for sort's permutation.
The numba target compiles the values' own ops (argmax of a vector), and prints loops for
the rest (numba/integers.py)."""
from __future__ import annotations

from ..base import atom


def _along(axis, idx):
    """An index that reads `idx` along `axis` and the other axes whole: `idx`, `(slice(None), idx)`."""
    return idx if axis == 0 else f"({'slice(None), ' * axis}{idx})"


def take(node, args, ctx, name):
    axis = node.attr["axis"]
    if axis == 0:
        return f"{atom(args[0])}[{args[1]}]"
    return f"{ctx.np}.take({args[0]}, {args[1]}, axis={axis})"


def scatter_add(node, args, ctx, name):
    """Zeros, then g added at the indices: np.add.at, so that a repeated index accumulates."""
    return (f"{ctx.np}.zeros_like({args[2]})",
            [f"{ctx.np}.add.at({name}, {_along(node.attr['axis'], args[1])}, {args[0]})"])


def one_hot(node, args, ctx, name):
    return f"{ctx.np}.{ctx.dtype}({atom(args[0])}[..., None] == {ctx.np}.arange({node.attr['n']}))"


def arg(node, args, ctx, name):
    fn = node.op.name
    if node.inputs[0].ndim == 1:
        return f"{ctx.np}.{fn}({args[0]})"
    return f"{ctx.np}.{fn}({args[0]}, axis={node.attr['axis']})"


def order(key, axis, ctx):
    """The permutation that sorts `key` along `axis`, ties in their order."""
    return f'{ctx.np}.argsort({key}, axis={axis}, kind="stable")'


def sort_by(node, args, ctx, name):
    axis = node.attr["axis"]
    return f"{ctx.np}.take_along_axis({args[0]}, {order(args[1], axis, ctx)}, axis={axis})"


def unsort_by(node, args, ctx, name):
    axis = node.attr["axis"]
    return (f"{ctx.np}.empty_like({args[0]})",
            [f"{ctx.np}.put_along_axis({name}, {order(args[1], axis, ctx)}, {args[0]}, axis={axis})"])


OPS = {"take": take, "scatter_add": scatter_add, "one_hot": one_hot, "argmax": arg, "argmin": arg,
       "sort_by": sort_by, "unsort_by": unsort_by}
