"""Indexing, its scatter (the VJP of indexing), concatenation and stacking.

Indices are static (ints, slices, None, ...), normalised to a hashable key so
equal indexings intern as one node; shapes follow NumPy's rules.
"""
from __future__ import annotations

import builtins

import numpy as np

from .ir import GraphError, dim, format_shape
from .lazy import sp
from .ops import FIRST, MOVES, apply, structural, zeros_like
from .structural import _tensor, batch_axis, batched, broadcast_to, reshape
from .tensor import OPERATORS, Tensor

# ---- indexing ----------------------------------------------------------------------------

def _index_key(x, index):
    """Static index -> hashable tuple of ("i", k) / ("s", start, stop, step) / ("n",)."""
    items = index if isinstance(index, tuple) else (index,)
    if builtins.sum(1 for i in items if i is Ellipsis) > 1:
        raise GraphError("an index may hold one ... only")
    n_real = builtins.sum(1 for i in items if i is not None and i is not Ellipsis)
    if n_real > x.ndim:
        raise GraphError(f"too many indices ({n_real}) for shape {format_shape(x.shape)}")
    out = []
    for i in items:
        if i is Ellipsis:
            out.extend([("s", None, None, None)] * (x.ndim - n_real))
        elif i is None:
            out.append(("n",))
        elif isinstance(i, int) and not isinstance(i, bool):
            out.append(("i", i))
        elif isinstance(i, slice) and all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                                          for v in (i.start, i.stop, i.step)):
            out.append(("s", i.start, i.stop, i.step))
        else:
            raise GraphError(f"indices must be ints, slices, None, ... or an integer graph value; got {i!r} "
                             "(graphs have static shapes: index with a gc.IntTensor input or gc.take)")
    return tuple(out)


def _getitem_shape(attrs, x):
    out, axis = [], 0
    for item in attrs["index"]:
        if item[0] == "n":
            out.append(1)
            continue
        d = x[axis]
        axis += 1
        if item[0] == "i":
            if isinstance(d, int) and not -d <= item[1] < d:
                raise GraphError(f"index {item[1]} is out of range for an axis of size {d}")
        elif item[1:] == (None, None, None):
            out.append(d)
        elif isinstance(d, int):
            out.append(len(range(*slice(*item[1:]).indices(d))))
        else:
            raise GraphError(f"cannot slice the symbolic dimension {d} except with ':'")
    return tuple(out) + tuple(x[axis:])


_ALL = ("s", None, None, None)   # the key of ':'


def _getitem_jvp(ts, y, x, index):
    t = ts[0]
    return getitem_key(t, ((_ALL,) if batched(t, x) else ()) + index)


GETITEM = structural("getitem", 1, _getitem_shape,
                     lambda g, y, x, index: (scatter(g, x, index),), params=(("index", None),),
                     ref=None, symbol="[]", gate="index gate scatters g back", jvp=_getitem_jvp, dtype=MOVES)


def getitem(x, index):
    x = _tensor(x, "indexing")
    if any(isinstance(i, Tensor) for i in (index if isinstance(index, tuple) else (index,))):
        return OPERATORS["gather"](x, index)   # an integer graph value as an index (integers.py)
    try:
        key = _index_key(x, index)
    except GraphError as e:
        raise GraphError(f"graph '{x.graph.name}': getitem {format_shape(x.shape)}: {e}") from None
    if all(k == ("s", None, None, None) for k in key):
        return x
    return apply(GETITEM, (x,), index=key)


OPERATORS["getitem"] = getitem   # x[...]


def _scatter_jvp(ts, y, v, like, index):
    t = ts[0]
    if t is None:
        return None
    if not batched(t, v):
        return scatter(t, like, index)
    return scatter(t, broadcast_to(like, t.shape[:1] + like.shape), (_ALL,) + index)


SCATTER = structural("scatter", 2, lambda attrs, g, like: like,
                     lambda g, y, v, like, index: (getitem_key(g, index), None),
                     params=(("index", None),), ref=None, symbol="scatter", nondiff=(1,), jvp=_scatter_jvp,
                     dtype=FIRST)


def scatter(v, like, index):
    """Zeros shaped like `like`, with v written at `index` (the VJP of indexing)."""
    return apply(SCATTER, (v, like), index=index)


def getitem_key(x, key):
    return apply(GETITEM, (x,), index=key)


def index_to_python(key):
    """The normalised index as the text of a Python subscript."""
    parts = []
    for item in key:
        if item[0] == "i":
            parts.append(str(item[1]))
        elif item[0] == "n":
            parts.append("None")
        else:
            start, stop, step = ("" if v is None else str(v) for v in item[1:])
            parts.append(f"{start}:{stop}" + (f":{step}" if step else ""))
    return ", ".join(parts) if parts else "()"


def index_from_key(key):
    """The normalised index as a Python index tuple (for the NumPy references)."""
    return tuple(k[1] if k[0] == "i" else None if k[0] == "n" else slice(*k[1:]) for k in key)


def _getitem_ref(x, index):
    return x[index_from_key(index)]


def _scatter_ref(v, like, index):
    z = np.zeros_like(like)
    z[index_from_key(index)] = v
    return z


GETITEM.ref, SCATTER.ref = _getitem_ref, _scatter_ref


# ---- concatenation --------------------------------------------------------------------------

def _concat_shape(attrs, *xs):
    axis = attrs["axis"]
    first = xs[0]
    for x in xs[1:]:
        if len(x) != len(first) or any(a != b for k, (a, b) in enumerate(zip(x, first)) if k != axis):
            raise GraphError(f"all inputs must have the same shape except along axis {axis}")
    total = builtins.sum((sp.sympify(x[axis]) for x in xs), sp.Integer(0))
    return first[:axis] + (dim(total),) + first[axis + 1:]


def _concat_vjp(g, y, *xs, axis):
    out, start = [], sp.Integer(0)
    for x in xs:
        stop = start + sp.sympify(x.shape[axis])
        if not (start.is_Integer and stop.is_Integer):
            raise GraphError("concatenate: the gradient along a symbolic axis is not supported")
        key = (("s", None, None, None),) * axis + (("s", int(start), int(stop), None),)
        out.append(getitem_key(g, key))
        start = stop
    return tuple(out)


def _concat_jvp(ts, y, *xs, axis):
    """The tangents concatenated; zeros stand in for the parts without one."""
    lead = batch_axis(ts, xs)
    parts = []
    for t, x in zip(ts, xs):
        t = zeros_like(x) if t is None else t
        parts.append(broadcast_to(t, lead + x.shape) if lead and not batched(t, x) else t)
    return concatenate(parts, axis + len(lead))


CONCAT = structural("concatenate", None, _concat_shape, _concat_vjp, params=(("axis", 0),),
                    ref=lambda *xs, axis: np.concatenate(xs, axis=axis), symbol="concat",
                    gate="concatenate gate slices g", jvp=_concat_jvp, dtype=MOVES)


def concatenate(xs, axis=0):
    xs = list(xs)
    if not xs:
        raise GraphError("concatenate needs at least one value")
    x0 = _tensor(xs[0], "concatenate")
    if not -x0.ndim <= axis < x0.ndim:
        raise GraphError(f"graph '{x0.graph.name}': concatenate axis {axis} is out of range "
                         f"for shape {format_shape(x0.shape)}")
    return apply(CONCAT, tuple(xs), axis=axis % x0.ndim)


def stack(xs, axis=0):
    xs = [_tensor(x, "stack") for x in xs]
    if not xs:
        raise GraphError("stack needs at least one value")
    nd = xs[0].ndim + 1
    if not -nd <= axis < nd:
        raise GraphError(f"graph '{xs[0].graph.name}': stack axis {axis} is out of range")
    axis %= nd
    return concatenate([reshape(x, x.shape[:axis] + (1,) + x.shape[axis:]) for x in xs], axis)
