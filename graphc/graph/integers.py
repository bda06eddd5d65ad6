"""Integer values and the ops on them: gathers (gc.take, x[idx]) and their scatter-add,
one_hot, argmax and argmin, and sort, whose gradient is routed through the permutation.

An integer value (a node of dtype "int", int64 in the code) is a gc.IntTensor input or
the result of argmax; no gradient flows into it. The ops that only move elements
(reshape, transpose, indexing, broadcasting, concatenation: ops.MOVES) keep it an
integer; an elementwise op takes one only where no gradient flows, so `idx == 3` is a
float mask and `idx + 1` a clear error. Each op has its shape rule, dtype rule, VJP, JVP
and NumPy reference side by side, as in structural.py.
"""
from __future__ import annotations

import numpy as np

from .ir import GraphError, format_shape, located, size_of
from .ops import FIRST, INPUT, MOVES, apply, structural
from .structural import _tensor, batched, broadcast_to, reshape
from .tensor import OPERATORS, Tensor

# ---- helpers ------------------------------------------------------------------------------

def _axis(x, axis, what):
    """`axis` of x normalised to 0..ndim-1, or a clear error."""
    nd = x.ndim
    if isinstance(axis, bool) or not isinstance(axis, int) or not -nd <= axis < nd:
        raise GraphError(f"{located(x.graph)}: {what}: axis {axis!r} is out of range for shape "
                         f"{format_shape(x.shape)}")
    return axis % nd


def _indices(idx, what):
    """`idx` as an integer graph value, or a clear error."""
    if not isinstance(idx, Tensor):
        raise GraphError(f"{what}: the indices must be an integer graph value (a gc.IntTensor input, "
                         f"gc.argmax, ...), got {type(idx).__name__} {idx!r}")
    if idx.dtype != "int":
        raise GraphError(f"{located(idx.graph)}: {what}: the indices {format_shape(idx.shape)} are floats; "
                         "declare them gc.IntTensor[...] (or compute them with gc.argmax)")
    return idx


def note_index(idx, n, kind="index"):
    """An integer input (seen through reshapes and other moves) used as an index into an
    axis of size n (kind "index": a call checks it lies in [-n, n)) or as a class label of
    n classes ("label": one_hot, where another value masks a row out): its domain, in
    which `graphc check` samples it, [0, n). Used both ways, it is an index; the smaller n wins."""
    node = idx.node
    while node.op.dtype_rule is MOVES and len(node.inputs) == 1:
        node = node.inputs[0]
    if node.op is not INPUT:
        return
    old = idx.graph.domains.get(node.name)
    if isinstance(old, tuple):
        kind = "index" if "index" in (kind, old[0]) else kind
        smaller = isinstance(n, int) and (not isinstance(old[1], int) or n < old[1])
        n = n if smaller else old[1]
    idx.graph.domains[node.name] = (kind, n)


def _needs_int(position, what):
    def rule(attrs, *dtypes):
        if dtypes[position] != "int":
            raise GraphError(f"the {what} must be integers, got floats")
        return dtypes[0]
    return rule


def _int_result(attrs, *dtypes):
    return "int"


def _floats_from_ints(attrs, idx):
    if idx != "int":
        raise GraphError("the labels must be integers, got floats")
    return "float"


# ---- gathers: take and its scatter-add --------------------------------------------------------

def _take_shape(attrs, x, idx):
    a = attrs["axis"]
    if a >= len(x):
        raise GraphError(f"axis {a} is out of range")
    return x[:a] + idx + x[a + 1:]


def _take_jvp(ts, y, x, idx, axis):
    t = ts[0]
    if t is None:
        return None
    return apply(TAKE, (t, idx), axis=axis + 1 if batched(t, x) else axis)


TAKE = structural("take", 2, _take_shape, lambda g, y, x, idx, axis: (scatter_add(g, idx, x, axis), None),
                  params=(("axis", 0),), ref=lambda x, idx, axis: np.take(x, idx, axis=axis), symbol="take",
                  nondiff=(1,), gate="take gate adds g back at the indices", jvp=_take_jvp,
                  dtype=_needs_int(1, "indices"))


def _scatter_add_shape(attrs, v, idx, like):
    a = attrs["axis"]
    if a >= len(like) or tuple(v) != like[:a] + idx + like[a + 1:]:
        raise GraphError(f"the values do not fit the indices along axis {a}")
    return like


def _scatter_add_jvp(ts, y, v, idx, like, axis):
    t = ts[0]
    if t is None:
        return None
    if not batched(t, v):
        return scatter_add(t, idx, like, axis)
    return scatter_add(t, idx, broadcast_to(like, t.shape[:1] + like.shape), axis + 1)


def _scatter_add_ref(v, idx, like, axis):
    out = np.zeros(np.shape(like), dtype=np.result_type(v, 1.0))
    np.add.at(out, (slice(None),) * axis + (idx,), v)
    return out


SCATTER_ADD = structural("scatter_add", 3, _scatter_add_shape,
                         lambda g, y, v, idx, like, axis: (apply(TAKE, (g, idx), axis=axis), None, None),
                         params=(("axis", 0),), ref=_scatter_add_ref, symbol="scatter+", nondiff=(1, 2),
                         jvp=_scatter_add_jvp, dtype=_needs_int(1, "indices"))


def scatter_add(v, idx, like, axis=0):
    """Zeros shaped like `like`, with v's slices added at the indices `idx` along `axis`
    (repeated indices accumulate): the VJP of take."""
    return apply(SCATTER_ADD, (v, idx, like), axis=axis)


def take(x, idx, axis=0):
    """The entries of x at the integer indices `idx` along `axis`, as np.take(x, idx, axis):
    the result's shape is x.shape[:axis] + idx.shape + x.shape[axis + 1:]. Indices lie in
    [-n, n) for an axis of size n (negative ones count from the end). Its gradient adds g
    back at the indices (a repeated index accumulates)."""
    x = _tensor(x, "take")
    axis = _axis(x, axis, "take")
    if isinstance(idx, int) and not isinstance(idx, bool):   # a static index
        return x[(slice(None),) * axis + (idx,)]
    idx = _indices(idx, "take")
    note_index(idx, x.shape[axis])
    return apply(TAKE, (x, idx), axis=axis)


def gather(x, index):
    """x[idx] and x[:, idx]: an integer graph value as the index of one axis, every other
    axis taken whole (what Tensor's indexing calls for such an index)."""
    items = index if isinstance(index, tuple) else (index,)
    tensors = [k for k, item in enumerate(items) if isinstance(item, Tensor)]
    if len(tensors) != 1 or any(item != slice(None) for k, item in enumerate(items) if k != tensors[0]):
        raise GraphError(f"{located(x.graph)}: indexing {format_shape(x.shape)} with a graph value: "
                         "index one axis with it and take the others whole (x[idx], x[:, idx]), or use gc.take")
    return take(x, items[tensors[0]], tensors[0])


# ---- one_hot --------------------------------------------------------------------------------

def _one_hot_ref(idx, n):
    return (np.asarray(idx)[..., None] == np.arange(n)).astype(np.float64)


ONE_HOT = structural("one_hot", 1, lambda attrs, idx: tuple(idx) + (attrs["n"],), lambda g, y, idx, n: (None,),
                     params=(("n", None),), ref=_one_hot_ref, symbol="one_hot", nondiff=(0,),
                     dtype=_floats_from_ints)


def one_hot(idx, n):
    """A float array of idx.shape + (n,): 1 where the last index equals idx, 0 elsewhere. An
    index outside [0, n) gives a row of zeros (as jax.nn.one_hot), which a cross-entropy
    treats as a masked example. No gradient."""
    idx = _indices(idx, "one_hot")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise GraphError(f"{located(idx.graph)}: one_hot: n is the number of classes, a positive int; got {n!r}")
    note_index(idx, n, "label")
    return apply(ONE_HOT, (idx,), n=n)


def one_hot_labels(logits, labels):
    """Integer class labels shaped logits.shape[:-1], one-hot encoded over the last axis
    of the logits (what a cross-entropy takes them as)."""
    if labels.shape != logits.shape[:-1]:
        raise GraphError(f"{located(labels.graph)}: softmax_cross_entropy: integer labels have shape "
                         f"{format_shape(labels.shape)}; logits of shape {format_shape(logits.shape)} "
                         f"need one per row, shape {format_shape(logits.shape[:-1])}")
    n = logits.shape[-1]
    if not isinstance(n, int):
        raise GraphError(f"{located(labels.graph)}: softmax_cross_entropy: integer labels need a static "
                         f"number of classes, the logits' last axis is {n}")
    return one_hot(labels, n)


# ---- argmax, argmin -------------------------------------------------------------------------

def _arg_shape(attrs, x):
    a = attrs["axis"]
    if a >= len(x):
        raise GraphError(f"axis {a} is out of range")
    if x[a] == 0:
        raise GraphError("an axis of size 0 has no largest or smallest entry")
    return x[:a] + x[a + 1:]


ARGMAX = structural("argmax", 1, _arg_shape, lambda g, y, x, axis: (None,), params=(("axis", 0),),
                    ref=lambda x, axis: np.argmax(x, axis=axis), symbol="argmax", nondiff=(0,),
                    dtype=_int_result)
ARGMIN = structural("argmin", 1, _arg_shape, lambda g, y, x, axis: (None,), params=(("axis", 0),),
                    ref=lambda x, axis: np.argmin(x, axis=axis), symbol="argmin", nondiff=(0,),
                    dtype=_int_result)


def _arg(op, x, axis):
    x = _tensor(x, op.name)
    if x.ndim == 0:
        raise GraphError(f"{located(x.graph)}: {op.name} of a scalar: give it an array")
    if axis is None:   # NumPy's flat index: the entry's position in x.reshape(-1)
        x, axis = reshape(x, (size_of(x.shape),)), 0
    return apply(op, (x,), axis=_axis(x, axis, op.name))


def argmax(x, axis=None):
    """The index of the largest entry along `axis` (the first of ties), as int64; axis=None:
    the flat index over all of x. No gradient (forward mode: no tangent)."""
    return _arg(ARGMAX, x, axis)


def argmin(x, axis=None):
    """The index of the smallest entry along `axis` (the first of ties), as int64."""
    return _arg(ARGMIN, x, axis)


# ---- sort: a permutation by a key, and its inverse -----------------------------------------
# sort_by(t, key, axis) is t permuted along `axis` as a stable argsort of `key` orders it;
# unsort_by(g, key, axis) puts g back where sort_by took it from. Both are linear in their
# first input and each other's VJP; the key gets no gradient. sort(x) = sort_by(x, x).

def _sort_shape(attrs, t, key):
    if tuple(t) != tuple(key):
        raise GraphError("the values and the key differ in shape")
    if attrs["axis"] >= len(t):
        raise GraphError(f"axis {attrs['axis']} is out of range")
    return t


def _permute(op, tangent, t, key, axis):
    """The tangent permuted as t is (both ops are linear in t)."""
    if tangent is None:
        return None
    if batched(tangent, t):   # a batch of tangents: each line permuted by its key's order
        return apply(op, (tangent, broadcast_to(key, tangent.shape)), axis=axis + 1)
    return apply(op, (tangent, key), axis=axis)


def _order(key, axis):
    return np.argsort(key, axis=axis, kind="stable")


def _unsort_ref(g, key, axis):
    out = np.empty_like(g)
    np.put_along_axis(out, _order(key, axis), g, axis=axis)
    return out


def _sort_by_vjp(g, y, t, key, axis):
    return _permute(UNSORT_BY, g, t, key, axis), None


def _unsort_by_vjp(g, y, t, key, axis):
    return _permute(SORT_BY, g, t, key, axis), None


SORT_BY = structural("sort_by", 2, _sort_shape, _sort_by_vjp, params=(("axis", 0),),
                     ref=lambda t, key, axis: np.take_along_axis(t, _order(key, axis), axis), symbol="sort",
                     nondiff=(1,), gate="sort gate puts g back where each entry came from", dtype=FIRST,
                     jvp=lambda ts, y, t, key, axis: _permute(SORT_BY, ts[0], t, key, axis))
UNSORT_BY = structural("unsort_by", 2, _sort_shape, _unsort_by_vjp, params=(("axis", 0),), ref=_unsort_ref,
                       symbol="unsort", nondiff=(1,), gate="unsort gate sorts g", dtype=FIRST,
                       jvp=lambda ts, y, t, key, axis: _permute(UNSORT_BY, ts[0], t, key, axis))


def sort(x, axis=-1):
    """x sorted along `axis` (stable: ties keep their order), with its gradient routed back
    through the permutation, as torch.sort's values."""
    x = _tensor(x, "sort")
    if x.ndim == 0:
        raise GraphError(f"{located(x.graph)}: sort of a scalar: give it an array")
    return apply(SORT_BY, (x, x), axis=_axis(x, axis, "sort"))


OPERATORS["gather"] = gather   # x[idx] with an integer graph value (indexing.getitem asks for it)
