"""How the numpy target prints im2col and col2im (graph/conv.py): the windows as a view
(`sliding_window_view`), and the windows added back by a loop over the kernel's offsets."""
from __future__ import annotations


def _window(attrs, k):
    """Kernel size, stride, (before, after) padding and dilation along spatial axis k."""
    return attrs["kernel"][k], attrs["stride"][k], attrs["padding"][k], attrs["dilation"][k]


def patches(node, args, ctx, name):
    attrs, np_ = node.attr, ctx.np
    spans = [d * (k - 1) + 1 for k, _, _, d in (_window(attrs, 0), _window(attrs, 1))]
    source, first = args[0], []
    if any(p != (0, 0) for p in attrs["padding"]):
        fill = f", constant_values=-{np_}.inf" if attrs["fill"] == "-inf" else ""
        first = [f"{np_}.pad({source}, ((0, 0), (0, 0), {attrs['padding'][0]}, {attrs['padding'][1]}){fill})"]
        source = name
    view = f"{np_}.lib.stride_tricks.sliding_window_view({source}, ({spans[0]}, {spans[1]}), axis=(2, 3))"
    steps = (*attrs["stride"], *attrs["dilation"])
    if steps != (1, 1, 1, 1):
        view += "[:, :, " + ", ".join(f"::{s}" if s != 1 else ":" for s in steps) + "]"
    # copied out of the strided view: the max or mean over each window, and the products,
    # then read contiguous memory (a pool's max over the view itself is 10x slower)
    view = f"{np_}.ascontiguousarray({view}.transpose(0, 1, 4, 5, 2, 3))"
    if not first:
        return view
    return first[0], [f"{name} = {view}   # im2col: every window, (N, C, kh, kw, OH, OW)"]


def _rows(offset, dilation, stride, count):
    """The slice of padded rows that kernel offset `offset` read for the `count` outputs."""
    start = offset if dilation == 1 else f"{dilation}*{offset}"
    stop = f"{start} + {stride * (count - 1) + 1}"
    return f"{start}:{stop}" + (f":{stride}" if stride != 1 else "")


def unpatches(node, args, ctx, name):
    attrs, np_ = node.attr, ctx.np
    (kh, sh, ph, dh), (kw, sw, pw, dw) = _window(attrs, 0), _window(attrs, 1)
    oh, ow = node.inputs[0].shape[4:]
    h, w = attrs["size"]
    padded = ctx.target.shape(node.shape[:2] + (h + sum(ph), w + sum(pw)), ctx)
    lines = ["for __i in range(%d):   # col2im: each kernel offset adds its window back" % kh,
             f"    for __j in range({kw}):",
             f"        {name}[:, :, {_rows('__i', dh, sh, oh)}, {_rows('__j', dw, sw, ow)}] += {args[0]}[:, :, __i, __j]"]
    if ph != (0, 0) or pw != (0, 0):
        lines.append(f"{name} = {name}[:, :, {ph[0]}:{ph[0] + h}, {pw[0]}:{pw[0] + w}]   # less the padding")
    return f"{np_}.zeros({padded}, dtype={np_}.{ctx.dtype})", lines


OPS = {"patches": patches, "unpatches": unpatches}
