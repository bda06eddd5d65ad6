"""How the numba target prints the integer ops (graph/integers.py): a loop nest each, since
Numba compiles neither np.take along an axis, np.add.at, nor an argsort of more than one
axis. argmax of a vector and the argsort of one line (kind="mergesort": stable) are Numba's
own. Integer arrays are int64 (base.dtype_of); a negative index counts from the end, as
Numba's indexing does."""
from __future__ import annotations

import sympy as sp

from ..base import atom, dtype_of


def _nest(shape, index, ctx):
    """The `for` lines over `shape` with the index names `index` (an axis of size 1 needs
    none: it reads 0), the body's indentation, and the index of each axis."""
    lines, at = [], []
    for d, i in zip(shape, index):
        if d == 1:
            at.append("0")
            continue
        lines.append("    " * len(lines) + f"for {i} in {ctx.loop.range}({ctx.target.dimension(d, ctx)}):")
        at.append(i)
    return lines, "    " * len(lines), at


def _alloc(node, ctx, fill="empty"):
    return f"{ctx.np}.{fill}({ctx.target.shape(node.shape, ctx)}, dtype={ctx.np}.{dtype_of(node, ctx)})"


def element(arg, node, at):
    """`arg`'s element at the indices `at` (a value without axes is a number already)."""
    return f"{atom(arg)}[{', '.join(at)}]" if node.ndim else arg


def not_empty(n, what, ctx):
    """NumPy's error for an arg-reduction over an axis whose symbolic size is 0 at run time."""
    if sp.sympify(n).is_Integer:
        return []
    return [f"if {ctx.target.dimension(n, ctx)} == 0:",
            f'    raise ValueError("attempt to get {what} of an empty sequence")']


def take(node, args, ctx, name):
    x, idx = node.inputs
    a = node.attr["axis"]
    head, pad, at = _nest(node.shape, ctx.loop.index[:node.ndim], ctx)
    source = at[:a] + [element(args[1], idx, at[a:a + idx.ndim])] + at[a + idx.ndim:]
    if node.shape == ():
        return f"{atom(args[0])}[{source[0]}]"
    return _alloc(node, ctx), head + [pad + f"{name}[{', '.join(at)}] = {element(args[0], x, source)}"]


def scatter_add(node, args, ctx, name):
    """Zeros, then a loop over g adding each entry at its index (a repeated index accumulates)."""
    v, idx, _ = node.inputs
    a = node.attr["axis"]
    head, pad, at = _nest(v.shape, ctx.loop.index[:v.ndim], ctx)
    target = at[:a] + [element(args[1], idx, at[a:a + idx.ndim])] + at[a + idx.ndim:]
    return _alloc(node, ctx, "zeros"), head + [pad + f"{name}[{', '.join(target)}] += {element(args[0], v, at)}"]


def one_hot(node, args, ctx, name):
    head, pad, at = _nest(node.shape, ctx.loop.index[:node.ndim], ctx)
    one, zero = ctx.target.constant(1, ctx), ctx.target.constant(0, ctx)
    hit = f"{element(args[0], node.inputs[0], at[:-1])} == {at[-1]}"
    return _alloc(node, ctx), head + [pad + f"{name}[{', '.join(at)}] = {one} if {hit} else {zero}"]


def arg_lines(node, x, out, at, j, ctx):
    """The body that finds argmax/argmin along the node's axis for one output element `out`,
    `at` indexing the other axes: the first of ties, and (as NumPy) the first NaN."""
    a = node.attr["axis"]
    first, src = at[:a] + ["0"] + at[a:], at[:a] + [j] + at[a:]
    value = f"{x}[{', '.join(src)}]"
    better = ">" if node.op.name == "argmax" else "<"
    return [f"__best = {x}[{', '.join(first)}]", f"{out} = 0",
            f"for {j} in {ctx.loop.range}(1, {ctx.target.dimension(node.inputs[0].shape[a], ctx)}):",
            f"    if {value} {better} __best or ({value} != {value} and __best == __best):",
            f"        __best = {value}", f"        {out} = {j}"]


def arg(node, args, ctx, name):
    x = node.inputs[0]
    if x.ndim == 1:
        return f"{ctx.np}.{node.op.name}({args[0]})"
    a = node.attr["axis"]
    index = ctx.loop.index[:x.ndim]
    head, pad, at = _nest(node.shape, index[:a] + index[a + 1:], ctx)
    body = arg_lines(node, args[0], f"{name}[{', '.join(at)}]", at, index[a], ctx)
    check = not_empty(x.shape[a], node.op.name, ctx)
    return _alloc(node, ctx), check + head + [pad + line for line in body]


def permute(node, args, ctx, name):
    """sort_by and unsort_by: per line along the axis, the key's stable order, then the
    entries moved to (sort_by) or from (unsort_by) their places in it."""
    t = node.inputs[0]
    a = node.attr["axis"]
    index = ctx.loop.index[:t.ndim]
    head, pad, at = _nest(t.shape[:a] + t.shape[a + 1:], index[:a] + index[a + 1:], ctx)
    j = index[a]
    here, there = at[:a] + [j] + at[a:], at[:a] + [f"__order[{j}]"] + at[a:]
    out, src = (here, there) if node.op.name == "sort_by" else (there, here)
    body = [f'__order = {ctx.np}.argsort({args[1]}[{", ".join(at[:a] + [":"] + at[a:])}], kind="mergesort")',
            f"for {j} in {ctx.loop.range}({ctx.target.dimension(t.shape[a], ctx)}):",
            f"    {name}[{', '.join(out)}] = {args[0]}[{', '.join(src)}]"]
    return _alloc(node, ctx), head + [pad + line for line in body]


OPS = {"take": take, "scatter_add": scatter_add, "one_hot": one_hot, "argmax": arg, "argmin": arg,
       "sort_by": permute, "unsort_by": permute}
