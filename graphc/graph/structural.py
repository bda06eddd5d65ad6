"""The structural primitives: matmul, transpose, reductions, reshape and
broadcasting, and the few internal ops that autodiff writes (indexing and
concatenation are in indexing.py). Each has its
shape rule and its VJP side by side; the public function normalises arguments
(negative axes, index expressions) so that equal nodes intern as one.
"""
from __future__ import annotations

import builtins

import numpy as np

from .ir import GraphError, broadcast_shapes, dim, format_shape, size_of
from .lazy import sp
from .ops import FIRST, MOVES, Op, apply, register, structural
from .primitives import equal
from .tensor import OPERATORS, Tensor

# ---- helpers ----------------------------------------------------------------------

def _axes(x, axis):
    """Normalised, sorted axes of `x` (None: all of them)."""
    nd = len(x.shape)
    if axis is None:
        return tuple(range(nd))
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, int) or not -nd <= a < nd:
            raise GraphError(f"graph '{x.graph.name}': axis {a!r} is out of range for shape {format_shape(x.shape)}")
        out.append(a % nd)
    if len(set(out)) != len(out):
        raise GraphError(f"graph '{x.graph.name}': repeated axis in {axis!r}")
    return tuple(sorted(out))


def _reduced(shape, axes, keepdims):
    return tuple((1 if keepdims else None) if k in axes else d for k, d in enumerate(shape)
                 if keepdims or k not in axes)


def _tensor(x, what):
    if not isinstance(x, Tensor):
        raise GraphError(f"{what} needs a graph value, got {x!r}")
    return x


# Forward mode may push a batch of tangents at once (one per vector of a basis: a whole
# Jacobian in one pass): such a tangent of x has a leading batch axis before x's shape.
def batched(t, x):
    return t.ndim > x.ndim


def batch_axis(ts, xs):
    """The batch axis (n,) of the batched tangents among `ts` (of `xs`), or () if none is."""
    return next((t.shape[:1] for t, x in zip(ts, xs) if t is not None and batched(t, x)), ())


def lift(t, x, rank):
    """A batched tangent of `x` with unit axes after the batch axis, lined up with `rank` axes."""
    pad = rank - x.ndim
    return t if pad <= 0 else reshape(t, t.shape[:1] + (1,) * pad + t.shape[1:])


def swap_last(x):
    """Transpose of the last two axes (x.T for a matrix)."""
    nd = x.ndim
    return transpose(x, tuple(range(nd - 2)) + (nd - 1, nd - 2))


# ---- matmul -------------------------------------------------------------------------

def _matmul_shape(attrs, a, b):
    if not a or not b:
        raise GraphError("both operands need at least one dimension")
    a2 = a if len(a) >= 2 else (1,) + a
    b2 = b if len(b) >= 2 else b + (1,)
    if a2[-1] != b2[-2]:
        raise GraphError(f"the contracted dimensions differ: {a2[-1]} (last of the left) "
                         f"vs {b2[-2]} ({'first' if len(b) <= 2 else 'second to last'} of the right)")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    if batch is None:
        raise GraphError("the batch dimensions do not broadcast")
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _matmul_vjp(g, y, a, b):
    a2 = a if a.ndim >= 2 else reshape(a, (1,) + a.shape)
    b2 = b if b.ndim >= 2 else reshape(b, b.shape + (1,))
    promoted = _matmul_shape({}, a2.shape, b2.shape)
    g2 = g if g.shape == promoted else reshape(g, promoted)
    ga = g2 @ swap_last(b2)
    gb = swap_last(a2) @ g2
    if a.ndim < 2:
        ga = reshape(ga, ga.shape[:-2] + ga.shape[-1:])
    if b.ndim < 2:
        gb = reshape(gb, gb.shape[:-1])
    return ga, gb


def _matmul_jvp(ts, y, a, b):
    """The product rule: t_a @ b + a @ t_b."""
    ta, tb = ts
    parts = [_product(p, q, (p is ta, q is tb), a, b, y) for p, q in ((ta, b), (a, tb))
             if p is not None and q is not None]
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


def _product(p, q, is_tangent, a, b, y):
    """p @ q, where a batched tangent among them keeps its batch axis in front: operands
    promoted to matrices, batch axes lined up, the result shaped (n,) + y.shape."""
    batch = [flag and batched(t, x) for t, flag, x in ((p, is_tangent[0], a), (q, is_tangent[1], b))]
    if not any(batch):
        return p @ q
    # one matrix product rather than a product per tangent, where the batch folds into rows
    if batch[0] and not batch[1] and b.ndim == 2:   # (n, ..., k) @ (k, m): every row at once
        out = reshape(p, (size_of(p.shape[:-1]), a.shape[-1])) @ q
        return reshape(out, p.shape[:1] + y.shape)
    if batch[1] and not batch[0] and b.ndim == 1 and a.ndim <= 2:   # a @ (n, k): (n, k) @ a.T
        return q @ (transpose(p) if a.ndim == 2 else p)
    a2 = a.shape if a.ndim >= 2 else (1,) + a.shape
    b2 = b.shape if b.ndim >= 2 else b.shape + (1,)
    stack = len(broadcast_shapes(a2[:-2], b2[:-2]))
    operands = []
    for value, shape2, is_batched in ((p, a2, batch[0]), (q, b2, batch[1])):
        if is_batched:   # (n, 1..., rows, cols): its batch axes as many as the product's
            value = reshape(value, value.shape[:1] + (1,) * (stack - len(shape2) + 2) + shape2)
        elif value.shape != shape2:
            value = reshape(value, shape2)
        operands.append(value)
    out = operands[0] @ operands[1]
    return reshape(out, out.shape[:1] + y.shape)


MATMUL = structural("matmul", 2, _matmul_shape, _matmul_vjp, ref=np.matmul, symbol="@",
                    gate="matmul gate: g @ b.T and a.T @ g", jvp=_matmul_jvp)


def matmul(a, b):
    return apply(MATMUL, (a, b))


# ---- transpose -----------------------------------------------------------------------

def _transpose_shape(attrs, x):
    return tuple(x[k] for k in attrs["axes"])


def _transpose_vjp(g, y, x, axes):
    inverse = tuple(int(k) for k in np.argsort(axes))
    if g.node.op is MATMUL and g.ndim == 2 and all(i.ndim == 2 for i in g.node.inputs):
        # the weight gradient of x @ W.T is (x.T @ g).T: written as g.T @ x it comes out
        # row-major, like W, and updating W with it reads both in order
        a, b = (Tensor(g.graph, i) for i in g.node.inputs)
        return (matmul(transpose(b), transpose(a)),)
    return (transpose(g, inverse),)


def _transpose_jvp(ts, y, x, axes):
    t = ts[0]
    return transpose(t, (0,) + tuple(k + 1 for k in axes)) if batched(t, x) else transpose(t, axes)


TRANSPOSE = structural("transpose", 1, _transpose_shape, _transpose_vjp, params=(("axes", None),),
                       ref=lambda x, axes: np.transpose(x, axes), symbol="T", jvp=_transpose_jvp, dtype=MOVES)


def transpose(x, axes=None):
    x = _tensor(x, "transpose")
    nd = x.ndim
    axes = tuple(reversed(range(nd))) if axes is None else tuple(a % nd if isinstance(a, int) and -nd <= a < nd
                                                                  else a for a in axes)
    if sorted(axes) != list(range(nd)):
        raise GraphError(f"graph '{x.graph.name}': transpose axes {axes} are not a permutation "
                         f"of the {nd} axes of {format_shape(x.shape)}")
    if x.node.op is TRANSPOSE:   # (W.T).T is W: compose the permutations
        inner = x.node.attr["axes"]
        x, axes = Tensor(x.graph, x.node.inputs[0]), tuple(inner[k] for k in axes)
    if axes == tuple(range(nd)):
        return x
    return apply(TRANSPOSE, (x,), axes=axes)


# ---- reductions ------------------------------------------------------------------------

def _reduce_shape(attrs, x):
    return _reduced(x, attrs["axis"], attrs["keepdims"])


def _restore(g, x, axis, keepdims):
    """g reshaped to keep the reduced axes, then broadcast back to x's shape."""
    # leading axes come back by broadcasting alone; others need their 1s restored
    if not keepdims and axis != tuple(range(len(axis))):
        g = reshape(g, _reduced(x.shape, axis, True))
    return broadcast_like(g, x)


def _sum_vjp(g, y, x, axis, keepdims):
    return (_restore(g, x, axis, keepdims),)


def _mean_vjp(g, y, x, axis, keepdims):
    count = size_of(tuple(x.shape[k] for k in axis))
    return (_restore(g / count, x, axis, keepdims),)


def _max_vjp(g, y, x, axis, keepdims):
    # the max gate routes to the largest entries; ties share the gradient
    mask = equal(x, _restore(y, x, axis, keepdims))
    count = _restore(sum(mask, axis, keepdims), x, axis, keepdims)
    return (_restore(g, x, axis, keepdims) * mask / count,)


def _shifted(t, x, axis):
    """The reduced axes of x, counted in its tangent t (one more in front where batched)."""
    k = 1 if batched(t, x) else 0
    return tuple(a + k for a in axis)


def _max_jvp(ts, y, x, axis, keepdims):
    # the tangent of the largest entries (the mean of the tied ones), as the VJP routes
    mask = equal(x, _restore(y, x, axis, keepdims))
    count = sum(mask, axis, keepdims)
    return sum(ts[0] * mask, _shifted(ts[0], x, axis), keepdims) / count


_REDUCE_PARAMS = (("axis", None), ("keepdims", False))
SUM = structural("sum", 1, _reduce_shape, _sum_vjp, _REDUCE_PARAMS,
                 ref=lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims), symbol="Σ",
                 gate="sum gate copies g back to every element",
                 jvp=lambda ts, y, x, axis, keepdims: sum(ts[0], _shifted(ts[0], x, axis), keepdims))
MEAN = structural("mean", 1, _reduce_shape, _mean_vjp, _REDUCE_PARAMS,
                  ref=lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims), symbol="mean",
                  gate="mean gate spreads g evenly",
                  jvp=lambda ts, y, x, axis, keepdims: mean(ts[0], _shifted(ts[0], x, axis), keepdims))
MAX = structural("max", 1, _reduce_shape, _max_vjp, _REDUCE_PARAMS,
                 ref=lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims), symbol="max",
                 gate="max gate routes to the largest", jvp=_max_jvp)


def _reduce(op, x, axis, keepdims):
    x = _tensor(x, op.name)
    axes = _axes(x, axis)
    if not axes:
        return x
    return apply(op, (x,), axis=axes, keepdims=bool(keepdims))


def sum(x, axis=None, keepdims=False):
    return _reduce(SUM, x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    return _reduce(MEAN, x, axis, keepdims)


def max(x, axis=None, keepdims=False):
    return _reduce(MAX, x, axis, keepdims)


# ---- reshape and broadcasting -------------------------------------------------------------

def _reshape_shape(attrs, x):
    shape = attrs["shape"]
    if size_of(shape) != size_of(x):
        raise GraphError(f"cannot reshape {size_of(x)} elements into {format_shape(shape)}")
    return shape


RESHAPE = structural("reshape", 1, _reshape_shape, lambda g, y, x, shape: (reshape(g, x.shape),),
                     params=(("shape", None),), ref=lambda x, shape: np.reshape(x, shape), symbol="reshape", dtype=MOVES,
                     jvp=lambda ts, y, x, shape: reshape(ts[0], ts[0].shape[:ts[0].ndim - x.ndim] + shape))


def reshape(x, shape):
    x = _tensor(x, "reshape")
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if builtins.sum(1 for d in shape if isinstance(d, int) and d == -1) > 1:
        raise GraphError(f"graph '{x.graph.name}': reshape takes at most one -1")
    known = [dim(d) for d in shape if not (isinstance(d, int) and d == -1)]
    if len(known) < len(shape):
        rest = sp.simplify(sp.sympify(size_of(x.shape)) / sp.sympify(size_of(tuple(known))))
        if not (rest.is_integer or rest.is_Integer):
            raise GraphError(f"graph '{x.graph.name}': cannot reshape {format_shape(x.shape)} "
                             f"into {shape}: {size_of(x.shape)} does not divide")
        known.insert([k for k, d in enumerate(shape) if isinstance(d, int) and d == -1][0], dim(rest))
    shape = tuple(known)
    if shape == x.shape:
        return x
    return apply(RESHAPE, (x,), shape=shape)


def _broadcast_shape(attrs, x, like):
    if broadcast_shapes(x, like) != tuple(like):
        raise GraphError(f"{format_shape(x)} does not broadcast to {format_shape(like)}")
    return like


def _broadcast_jvp(ts, y, x, *like, shape=None):
    t = ts[0]
    if t is None:
        return None
    if batched(t, x):
        return broadcast_to(lift(t, x, y.ndim), t.shape[:1] + y.shape)
    return broadcast_like(t, like[0]) if like else broadcast_to(t, y.shape)


BROADCAST = structural("broadcast_like", 2, _broadcast_shape,
                       lambda g, y, x, like: (g, None), ref=lambda x, like: np.broadcast_to(x, np.shape(like)),
                       symbol="broadcast", nondiff=(1,), gate="broadcast: summed back to the input's shape",
                       jvp=_broadcast_jvp, dtype=FIRST, shape_only=(1,))


def broadcast_like(x, like):
    """x broadcast to the shape of `like` (whose value is not used)."""
    if x.shape == like.shape:
        return x
    return apply(BROADCAST, (x, like))


BROADCAST_TO = structural("broadcast_to", 1, lambda attrs, x: _broadcast_shape(attrs, x, attrs["shape"]),
                          lambda g, y, x, shape: (g,), params=(("shape", None),),
                          ref=lambda x, shape: np.broadcast_to(x, shape), symbol="broadcast",
                          gate="broadcast: summed back to the input's shape", jvp=_broadcast_jvp, dtype=MOVES)


def broadcast_to(x, shape):
    """x broadcast to `shape` by NumPy's rules (a new axis in front, a 1 stretched)."""
    x = _tensor(x, "broadcast_to")
    shape = tuple(dim(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    if x.shape == shape:
        return x
    return apply(BROADCAST_TO, (x,), shape=shape)


# ---- the standard basis: what forward mode pushes to build a Jacobian -----------------------

def _basis_shape(attrs, x):
    n = size_of(x)
    if not isinstance(n, int):
        raise GraphError(f"a basis needs a static shape, not {format_shape(x)}")
    return (n,) + tuple(x)


BASIS = structural("basis", 1, _basis_shape, lambda g, y, x: (None,), nondiff=(0,), symbol="I",
                   ref=lambda x: np.eye(np.size(x), dtype=np.result_type(x, 1.0)).reshape((-1,) + np.shape(x)))


def basis(x):
    """The standard basis of x's space: row k is x's shape with a 1 at its k-th entry
    (np.eye(x.size), each row shaped like x)."""
    return apply(BASIS, (_tensor(x, "basis"),))


# ---- gradient plumbing ------------------------------------------------------------------------

_first_shape = lambda attrs, x, *rest: x  # noqa: E731
STOP = register(Op("stop_gradient", "alias", 1, symbol="stop", ref=lambda x: x,
                   shape_rule=_first_shape, vjp=lambda g, y, x: (None,), dtype_rule=MOVES))


def stop_gradient(x):
    """x, through which no gradient flows (the shift inside a stable softmax)."""
    return apply(STOP, (x,))


def _custom_vjp(g, y, value, *primals, rule, label):
    return (None,) + tuple(rule(g, *primals))


CUSTOM = register(Op("custom_vjp", "alias", None, params=(("rule", None), ("label", "")),
                     symbol="f", ref=lambda value, *primals, rule, label: value,
                     shape_rule=_first_shape, vjp=_custom_vjp, dtype_rule=FIRST))


def with_vjp(value, primals, rule, label):
    """`value`, whose gradient to `primals` is `rule(g, *primals)` instead of the
    one autodiff would derive through value's own graph (which is not used)."""
    return apply(CUSTOM, (stop_gradient(value), *primals), rule=rule, label=label)


def unbroadcast(g, shape):
    """Sum g down to `shape`, undoing NumPy broadcasting (the one place that does)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + k for k, d in enumerate(shape)
                                      if d == 1 and g.shape[lead + k] != 1)
    g = sum(g, axes, keepdims=False)
    return reshape(g, shape) if g.shape != tuple(shape) else g


# what Tensor's operators and methods call (x @ W, x.T, x.reshape, x.sum, ...)
OPERATORS.update(matmul=matmul, transpose=transpose, reshape=reshape, sum=sum, mean=mean, max=max)
