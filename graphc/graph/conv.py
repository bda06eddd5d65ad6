"""Convolution and pooling, with PyTorch's signatures and layouts (NCHW inputs, OIHW weights).

Two primitives carry all of them. `patches` is im2col: every window of the (padded)
input, laid out (N, C, kh, kw, OH, OW). `unpatches` is its transpose, col2im: each
window's values added back where they were read, overlapping windows summing. Each is
the other's VJP (both are linear), so a convolution, the weights' matrix product with
the patches, differentiates into matrix products and an unpatches: the VJP of a
convolution is a convolution (transposed), as the generated comments say. Pooling is a
max or a mean over each window's axes, so the max gate routes as it does everywhere.
"""
from __future__ import annotations

import numpy as np

from .ir import GraphError, format_shape
from .ops import apply, structural
from .structural import _tensor, batched, max, mean, reshape, transpose

_SPATIAL = "patches needs an input of shape (N, C, H, W) with static H and W"


def _out_size(size, kernel, stride, pad, dilation):
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def _patches_shape(attrs, x):
    if len(x) != 4 or not all(isinstance(d, int) for d in x[2:]):
        raise GraphError(f"{_SPATIAL}, got {format_shape(x)}")
    out = tuple(_out_size(x[2 + k], attrs["kernel"][k], attrs["stride"][k], attrs["padding"][k],
                          attrs["dilation"][k]) for k in range(2))
    if min(out) < 1:
        raise GraphError(f"a {attrs['kernel'][0]}x{attrs['kernel'][1]} window (dilation "
                         f"{attrs['dilation']}) does not fit the padded input {format_shape(x)}")
    return tuple(x[:2]) + tuple(attrs["kernel"]) + out


def _unpatches_shape(attrs, g):
    if len(g) != 6:
        raise GraphError(f"unpatches needs (N, C, kh, kw, OH, OW), got {format_shape(g)}")
    return tuple(g[:2]) + tuple(attrs["size"])


def _window_index(kernel, stride, padding, dilation, out_shape):
    """For each spatial axis, the input row that kernel offset i and output row o read:
    an array [i, o] (rows outside [0, size) are padding)."""
    return [np.arange(out_shape[k])[None, :] * stride[k] - padding[k][0] + np.arange(kernel[k])[:, None] * dilation[k]
            for k in range(2)]


def _patches_ref(x, kernel, stride, padding, dilation, fill):
    """NumPy reference: a loop over the kernel's offsets (the tests' and the diagrams')."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    oh, ow = (_out_size((h, w)[k], kernel[k], stride[k], padding[k], dilation[k]) for k in range(2))
    rows, cols = _window_index(kernel, stride, padding, dilation, (oh, ow))
    out = np.full((n, c, kernel[0], kernel[1], oh, ow), -np.inf if fill == "-inf" else 0.0,
                  dtype=np.result_type(x, 1.0))
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r, q = rows[i], cols[j]
            ok_r, ok_q = (r >= 0) & (r < h), (q >= 0) & (q < w)
            out[:, :, i, j][..., ok_r[:, None] & ok_q[None, :]] = \
                x[:, :, r[ok_r]][..., q[ok_q]].reshape(n, c, -1)
    return out


def _unpatches_ref(g, kernel, stride, padding, dilation, size):
    g = np.asarray(g)
    n, c = g.shape[:2]
    rows, cols = _window_index(kernel, stride, padding, dilation, g.shape[4:])
    out = np.zeros((n, c) + tuple(size), dtype=np.result_type(g, 1.0))
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r, q = rows[i], cols[j]
            ok_r, ok_q = (r >= 0) & (r < size[0]), (q >= 0) & (q < size[1])
            block = g[:, :, i, j][:, :, ok_r][:, :, :, ok_q]
            np.add.at(out, (slice(None), slice(None), r[ok_r][:, None], q[ok_q][None, :]), block)
    return out


def _merged(t, x, f):
    """f applied to a tangent: a batched one (n, N, ...) goes through as (n*N, ...)."""
    if not batched(t, x):
        return f(t)
    out = f(reshape(t, (t.shape[0] * t.shape[1],) + t.shape[2:]))
    return reshape(out, t.shape[:2] + out.shape[1:])


PATCHES = structural(
    "patches", 1, _patches_shape,
    lambda g, y, x, fill, **w: (unpatches(g, x.shape[2:], **w),),
    params=(("kernel", None), ("stride", None), ("padding", None), ("dilation", None), ("fill", "0")),
    ref=_patches_ref, symbol="im2col",
    gate="patches gate: col2im adds each window back (a convolution's VJP is a convolution)",
    jvp=lambda ts, y, x, fill, **w: _merged(ts[0], x, lambda t: patches(t, **w)))

UNPATCHES = structural(
    "unpatches", 1, _unpatches_shape,
    lambda g, y, v, size, **w: (patches(g, **w),),
    params=(("kernel", None), ("stride", None), ("padding", None), ("dilation", None), ("size", None)),
    ref=_unpatches_ref, symbol="col2im",
    gate="col2im gate: im2col reads each window again",
    jvp=lambda ts, y, v, size, **w: _merged(ts[0], v, lambda t: unpatches(t, size, **w)))


def patches(x, kernel, stride, padding, dilation, fill="0"):
    """Every window of x (N, C, H, W): (N, C, kh, kw, OH, OW). The tangent and the gradient
    of padding are 0, whatever it is filled with (a max pool fills it with -inf)."""
    return apply(PATCHES, (x,), kernel=kernel, stride=stride, padding=padding, dilation=dilation, fill=fill)


def unpatches(g, size, kernel, stride, padding, dilation):
    return apply(UNPATCHES, (g,), kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                 size=tuple(size))


# ---- the public functions --------------------------------------------------------------

class Layer(str):
    """A scope entry naming one layer ("conv2d 5x5, stride 1, pad 2"), with its input's and
    output's shapes: the public functions below stamp it on the nodes they build, so that a
    diagram draws the layer as one box. A str, so errors and clusters print it as any gc.scope.
    The node a layer returns carries a twin marked `output`: a diagram finds each call's nodes
    from there (an inlined graph's calls share their entries)."""

    def __new__(cls, label, shapes=(), output=False):
        layer = super().__new__(cls, label)
        layer.shapes, layer.output = tuple(shapes), output
        return layer


def _as_layer(start, x, y, label):
    """y, with the nodes built since index `start` stamped as one layer (an interned node built
    before keeps its scope); the outermost call stamps last, so conv1d's conv2d is conv1d."""
    graph = y.graph
    layer = Layer(label, (x.shape, y.shape))
    for node in graph.nodes[start:]:
        node.scope = graph._scope + (layer,)
    if y.node.index >= start:
        y.node.scope = graph._scope + (Layer(label, layer.shapes, output=True),)
    return y


def _label(kind, kernel, stride, pad, dilation=(1,), groups=1):
    """conv2d 5x5, stride 1, pad 2: padding, dilation and groups only where not the default."""
    def text(values):
        return str(values[0]) if len(set(values)) == 1 else "(" + ", ".join(map(str, values)) + ")"
    flat = [p for side in pad for p in side]
    parts = [f"{kind} {'x'.join(map(str, kernel))}", f"stride {text(stride)}"]
    parts += [f"pad {text(flat)}"] if any(flat) else []
    parts += [f"dilation {text(dilation)}"] if any(d != 1 for d in dilation) else []
    parts += [f"groups {groups}"] if groups != 1 else []
    return ", ".join(parts)


def _pair(value, what, fn, minimum=1):
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in pair):
        raise GraphError(f"{fn}: {what} must be an int >= {minimum} or a pair of them, got {value!r}")
    return pair


def _padding(padding, kernel, stride, dilation, fn):
    """((top, bottom), (left, right)) from an int, a pair, "valid" or "same" (PyTorch's:
    the extra row or column of an odd total goes after)."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        if stride != (1, 1):
            raise GraphError(f"{fn}: padding='same' needs stride 1, got stride {stride}")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if isinstance(padding, str):
        raise GraphError(f"{fn}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    return tuple((p, p) for p in _pair(padding, "padding", fn, minimum=0))


def _check_input(x, fn, what="x", rank=4, layout="(N, C, H, W)"):
    x = _tensor(x, fn)
    if x.ndim != rank:
        raise GraphError(f"graph '{x.graph.name}': {fn}: {what} must be {layout}, got shape {format_shape(x.shape)}")
    return x


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's conv2d: x (N, C, H, W), w (O, C/groups, kh, kw), b (O,) -> (N, O, OH, OW).
    It is one matrix product of the weights with the patches of x (im2col), the whole batch
    among its columns: one large product rather than one per example."""
    x, w = _check_input(x, "conv2d"), _check_input(w, "conv2d", "w", layout="(O, C/groups, kh, kw)")
    start = len(x.graph.nodes)
    n, c = x.shape[:2]
    o, per_group = w.shape[:2]
    if not isinstance(groups, int) or groups < 1 or c != per_group * groups or o % groups:
        raise GraphError(f"graph '{x.graph.name}': conv2d: input {format_shape(x.shape)} and weights "
                         f"{format_shape(w.shape)} do not match with groups={groups!r} (C must be "
                         f"w.shape[1] * groups, O a multiple of groups)")
    kernel = tuple(w.shape[2:])
    stride = _pair(stride, "stride", "conv2d")
    dilation = _pair(dilation, "dilation", "conv2d")
    pad = _padding(padding, kernel, stride, dilation, "conv2d")
    p = patches(x, kernel, stride, pad, dilation)
    oh, ow = p.shape[4:]
    k = per_group * kernel[0] * kernel[1]
    if groups == 1:   # one product for the whole batch: (O, K) @ (K, N*P), the batch among the columns
        cols = reshape(transpose(p, (1, 2, 3, 0, 4, 5)), (k, n * oh * ow))
        y = transpose(reshape(reshape(w, (o, k)) @ cols, (o, n, oh, ow)), (1, 0, 2, 3))
    else:   # one product per group, batched: (G, O/G, K) @ (N, G, K, P)
        y = reshape(w, (groups, o // groups, k)) @ reshape(p, (n, groups, k, oh * ow))
        y = reshape(y, (n, o, oh, ow))
    if b is not None:
        y = y + reshape(_tensor(b, "conv2d"), (o, 1, 1))
    return _as_layer(start, x, y, _label("conv2d", kernel, stride, pad, dilation, groups))


def conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's conv1d: x (N, C, L), w (O, C/groups, k) -> (N, O, OL): conv2d over a height of 1."""
    x, w = _check_input(x, "conv1d", rank=3, layout="(N, C, L)"), \
        _check_input(w, "conv1d", "w", rank=3, layout="(O, C/groups, k)")
    start = len(x.graph.nodes)
    single = lambda v, what, least: _pair(v, what, "conv1d", least)[0]  # noqa: E731
    pad = padding if isinstance(padding, str) else (0, single(padding, "padding", 0))
    stride, dilation = (1, single(stride, "stride", 1)), (1, single(dilation, "dilation", 1))
    y = conv2d(reshape(x, x.shape[:2] + (1, x.shape[2])), reshape(w, w.shape[:2] + (1, w.shape[2])), b,
               stride, pad, dilation, groups)
    y = reshape(y, y.shape[:2] + y.shape[3:])
    pad = _padding(pad, (1, w.shape[2]), stride, dilation, "conv1d")[1:]
    return _as_layer(start, x, y, _label("conv1d", w.shape[2:], stride[1:], pad, dilation[1:], groups))


def _pool(x, kernel_size, stride, padding, fn, fill, reduce):
    """reduce (max or mean) over each window: one layer."""
    x = _check_input(x, fn)
    kernel = _pair(kernel_size, "kernel_size", fn)
    stride = kernel if stride is None else _pair(stride, "stride", fn)
    pad = _pair(padding, "padding", fn, minimum=0)
    if any(2 * p > k for p, k in zip(pad, kernel)):
        raise GraphError(f"graph '{x.graph.name}': {fn}: padding {pad} must be at most half the "
                         f"kernel {kernel}")
    start, pad = len(x.graph.nodes), tuple((p, p) for p in pad)
    y = reduce(patches(x, kernel, stride, pad, (1, 1), fill), (2, 3))
    return _as_layer(start, x, y, _label(fn, kernel, stride, pad))


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """PyTorch's max_pool2d (padding counts as -inf): the max gate routes each window's
    gradient to its largest entry."""
    return _pool(x, kernel_size, stride, padding, "max_pool2d", "-inf", max)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """PyTorch's avg_pool2d (count_include_pad=True: padding counts as zeros in the mean)."""
    return _pool(x, kernel_size, stride, padding, "avg_pool2d", "0", mean)


def flatten(x, start_dim=1, end_dim=-1):
    """torch.flatten: the axes start_dim..end_dim as one."""
    x = _tensor(x, "flatten")
    nd = x.ndim
    start, end = start_dim % nd if nd else 0, end_dim % nd if nd else 0
    if start > end:
        raise GraphError(f"graph '{x.graph.name}': flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    size = 1
    for d in x.shape[start:end + 1]:
        size = size * d
    return reshape(x, x.shape[:start] + (size,) + x.shape[end + 1:])
