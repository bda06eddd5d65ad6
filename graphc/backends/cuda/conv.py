"""im2col and col2im (graph/conv.py) as CUDA kernels: one thread per element written.

im2col reads the input element under each window position (padding is `fill`). col2im
is written as a gather, not a scatter: each input element adds up the window entries
that read it, so no two threads write one element and no atomics are needed.
"""
from __future__ import annotations

from .kernels import _empty, _kernel


def _axis(attrs, k):
    return attrs["kernel"][k], attrs["stride"][k], attrs["padding"][k][0], attrs["dilation"][k]


def _read(o, stride, pad, i, dilation):
    """The input row that output row `o` and kernel offset `i` read: o*stride - pad + i*dilation."""
    terms = [o if stride == 1 else f"{o} * {stride}", i if dilation == 1 else f"{i} * {dilation}"]
    return f"{terms[0]} + {terms[1]}" + (f" - {pad}" if pad else "")


def patches(node, args, ctx, name):
    a, (h, w) = node.attr, node.inputs[0].shape[2:]
    (_, sh, ph, dh), (_, sw, pw, dw) = _axis(a, 0), _axis(a, 1)
    b, c, i, j, y, z = out = ctx.loop.index[:6]
    fill = f"-{ctx.np}.inf" if a["fill"] == "-inf" else "0.0"
    body = [f"__r = {_read(y, sh, ph, i, dh)}", f"__q = {_read(z, sw, pw, j, dw)}",
            f"if 0 <= __r < {h} and 0 <= __q < {w}:",
            f"    {name}[{', '.join(out)}] = {args[0]}[{b}, {c}, __r, __q]",
            "else:",
            f"    {name}[{', '.join(out)}] = {fill}"]
    return _empty(node, ctx), [_kernel(ctx, name, node.shape, out, body, comment="im2col: every window")]


def unpatches(node, args, ctx, name):
    a = node.attr
    (kh, sh, ph, dh), (kw, sw, pw, dw) = _axis(a, 0), _axis(a, 1)
    oh, ow = node.inputs[0].shape[4:]
    b, c, r, q = out = ctx.loop.index[:4]
    body = ["__acc = 0.0",
            f"for __i in range({kh}):",
            f"    __y = {r} + {ph} - {'__i' if dh == 1 else f'__i * {dh}'}",
            f"    if __y >= 0 and __y % {sh} == 0 and __y // {sh} < {oh}:",
            f"        for __j in range({kw}):",
            f"            __z = {q} + {pw} - {'__j' if dw == 1 else f'__j * {dw}'}",
            f"            if __z >= 0 and __z % {sw} == 0 and __z // {sw} < {ow}:",
            f"                __acc += {args[0]}[{b}, {c}, __i, __j, __y // {sh}, __z // {sw}]",
            f"{name}[{', '.join(out)}] = __acc"]
    return _empty(node, ctx), [_kernel(ctx, name, node.shape, out, body,
                                       comment="col2im: each element adds the window entries that read it")]


TABLE = {"patches": patches, "unpatches": unpatches}
