"""Kernels for the integer ops (graph/integers.py) on the cuda target: a thread per element
of the result for take, one_hot and argmax; take's scatter-add as atomic adds (an index
may repeat); sort's permutation by ranks, a thread per element counting the entries of
its line that sort before it (smaller, or equal and earlier: a stable sort; NaN last, as
NumPy), which is simple and needs no sort on the device, at n steps per element."""
from __future__ import annotations

from ..base import atom
from ..numba.integers import arg_lines, element, not_empty
from .kernels import _empty, _full, _kernel


def take(node, args, ctx, name):
    x, idx = node.inputs
    a = node.attr["axis"]
    out = ctx.loop.index[:node.ndim]
    source = out[:a] + [element(args[1], idx, out[a:a + idx.ndim])] + out[a + idx.ndim:]
    if node.shape == ():   # one element, read back to the host
        return f"{atom(args[0])}[{source[0]}]"
    body = [f"{name}[{', '.join(out)}] = {args[0]}[{', '.join(source)}]"]
    return _empty(node, ctx), [_kernel(ctx, name, node.shape, out, body, comment="take")]


def scatter_add(node, args, ctx, name):
    """Zeros, then a thread per entry of g adding it at its index, atomically (indices repeat)."""
    v, idx, _ = node.inputs
    a = node.attr["axis"]
    out = ctx.loop.index[:v.ndim]
    target = out[:a] + [element(args[1], idx, out[a:a + idx.ndim])] + out[a + idx.ndim:]
    at = target[0] if len(target) == 1 else f"({', '.join(target)})"
    body = [f"cuda.atomic.add({name}, {at}, {element(args[0], v, out)})"]
    launch = _kernel(ctx, name, v.shape, out, body, comment="scatter_add: an atomic add each, as indices repeat")
    return _full(node, ctx, "0.0"), [launch]


def one_hot(node, args, ctx, name):
    out = ctx.loop.index[:node.ndim]
    one, zero = ctx.target.constant(1, ctx), ctx.target.constant(0, ctx)
    hit = f"{element(args[0], node.inputs[0], out[:-1])} == {out[-1]}"
    body = [f"{name}[{', '.join(out)}] = {one} if {hit} else {zero}"]
    return _empty(node, ctx), [_kernel(ctx, name, node.shape, out, body, comment="one_hot")]


def arg(node, args, ctx, name):
    """argmax/argmin: a thread per element of the result walks its line."""
    x = node.inputs[0]
    a = node.attr["axis"]
    index = ctx.loop.index[:x.ndim]
    out = index[:a] + index[a + 1:]
    at = ", ".join(out) if out else "0"
    body = arg_lines(node, args[0], f"{name}[{at}]", out, index[a], ctx)
    launch = _kernel(ctx, name, node.shape, out, body, comment=node.op.name)
    check = not_empty(x.shape[a], node.op.name, ctx)
    if node.shape == ():   # into a one-element array, read back to the host
        return _empty(node, ctx, (1,)), check + [launch, f"{name} = {name}[0]"]
    return _empty(node, ctx), check + [launch]


def permute(node, args, ctx, name):
    """sort_by and unsort_by: each entry's rank in its line's stable order of the key, then
    the entry moved to (sort_by) or from (unsort_by) that place."""
    t, key = node.inputs
    a = node.attr["axis"]
    index = ctx.loop.index[:t.ndim]
    here = ", ".join(index)

    def line(m):
        return ", ".join(index[:a] + [m] + index[a + 1:])
    move = (f"{name}[{line('__r')}] = {args[0]}[{here}]" if node.op.name == "sort_by"
            else f"{name}[{here}] = {args[0]}[{line('__r')}]")
    body = [f"__v = {args[1]}[{here}]", "__r = 0",
            f"for __m in range({ctx.target.dimension(t.shape[a], ctx)}):",
            f"    __w = {args[1]}[{line('__m')}]",
            "    __less = __w < __v or (__v != __v and __w == __w)   # NaN sorts last",
            "    __tie = __w == __v or (__w != __w and __v != __v)",
            f"    if __less or (__tie and __m < {index[a]}):",
            "        __r += 1", move]
    comment = f"{node.op.name}: each entry's rank along axis {a}"
    return _empty(node, ctx), [_kernel(ctx, name, t.shape, index, body, comment=comment)]


TABLE = {"take": take, "scatter_add": scatter_add, "one_hot": one_hot, "argmax": arg, "argmin": arg,
         "sort_by": permute, "unsort_by": permute}
