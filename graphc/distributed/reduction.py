"""How each output of a graph depends on the examples of its batch: the plan by which
DataParallel turns the shards' results into the whole batch's, exactly, or a clear refusal.

One pass over the forward graph in topological order gives each node a kind, from its
op and its inputs' kinds:

    None        independent of the batch (parameters, constants)
    Rows(axis)  one entry per example along `axis`, each computed from that example alone
                (or `inner` entries each: an axis of B*inner, the examples outermost, as a
                convolution lays the whole batch out for one matrix product)
    MEAN        a mean over the examples (plus any term independent of the batch): the
                shards' values, each weighted by its share of the examples, add up to it
    SUM         a sum over the examples (and nothing else): the shards' values add up
    Mixed       anything else, with the node that mixes the examples and why: an example
                read beside a statistic of the batch (batch norm), a max over the batch

Means and sums pass through what is affine in them (scaling, adding a batch-independent
regulariser, a matrix product with a parameter, a sum over other axes); SymPy decides it for
elementwise ops from the op's formula, as it derives their gradients. The gradient of a
MEAN loss is the shards' gradients weighted likewise, of a SUM loss their sum.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from ..graph import symbolic
from ..graph.ir import GraphError

MEAN, SUM = "mean", "sum"


@dataclass(frozen=True)
class Rows:
    axis: int
    inner: object = 1


@dataclass(frozen=True)
class Mixed:
    node: object
    why: str


def plan(graph, batch):
    """The kind of each output of `graph` whose batch dimension is the symbol `batch`; the
    differentiated output must be a mean or a sum over the batch (or independent of it)."""
    kinds = node_kinds(graph, batch)
    out = []
    for k, (name, node) in enumerate(graph.outputs):
        kind = kinds[node.index]
        if isinstance(kind, Mixed):
            raise GraphError(f"graph '{graph.name}': output {name!r} cannot be computed from shards of the "
                             f"batch: the {kind.node.op.name} at {kind.node.where} {kind.why}")
        if k == 0 and (isinstance(kind, Rows) or node.shape != ()):
            raise GraphError(f"graph '{graph.name}': the loss {name!r} must be a scalar mean or sum over the "
                             f"batch to be reduced over shards; it has shape {node.shape}")
        out.append(kind)
    return tuple(out)


def describe(graph, kinds):
    """How each output is reduced, in words: {"L": "weighted mean over the shards", ...}."""
    words = {MEAN: "weighted mean over the shards", SUM: "sum over the shards", None: "the same on every shard"}
    return {name: f"rows joined along axis {kind.axis}" if isinstance(kind, Rows) else words[kind]
            for (name, _), kind in zip(graph.outputs, kinds)}


def node_kinds(graph, batch):
    kinds = {}
    for node in graph.live_nodes():
        kinds[node.index] = _kind(node, [kinds[i.index] for i in node.inputs], batch)
    return kinds


def _batch_axis(shape, batch):
    """Where the batch is in `shape`: (axis, inner) for an axis of B*inner, None where no
    axis holds it, or a Mixed's reason."""
    axes = [k for k, d in enumerate(shape) if not isinstance(d, int) and batch in d.free_symbols]
    if not axes:
        return None
    inner = sp.cancel(shape[axes[0]] / batch)
    if len(axes) > 1 or batch in inner.free_symbols or not inner.is_positive:
        return f"holds the batch dimension {'twice' if len(axes) > 1 else 'in ' + str(shape[axes[0]])} in its shape"
    return axes[0], (int(inner) if inner.is_Integer else inner)


def _kind(node, ins, batch):
    mixed = next((k for k in ins if isinstance(k, Mixed)), None)
    if mixed is not None:
        return mixed
    where = _batch_axis(node.shape, batch)
    if isinstance(where, str):
        return Mixed(node, where)
    if node.op.kind == "input":
        return None if where is None else Rows(0) if where == (0, 1) else Mixed(node, "has the batch on an "
                                                                                     "axis other than the first")
    if node.op.kind == "alias":   # stop_gradient, custom_vjp: the value's own kind
        return ins[0]
    if node.op.elementwise:
        return _elementwise(node, ins, where)
    rule = STRUCTURAL.get(node.op.name)
    if all(k is None for k in ins):   # a value independent of the batch, perhaps broadcast over it
        return None if where is None else Rows(*where)
    if rule is None:
        return Mixed(node, "is an op whose treatment of the batch's examples is not known here")
    return rule(node, ins, where)


def _rows(node, where):
    return Rows(*where) if where is not None else Mixed(node, "loses the batch axis")


def _elementwise(node, ins, where):
    reduced = tuple(k for k, kind in enumerate(ins) if kind in (MEAN, SUM))
    if not reduced:
        if where is None:
            return None
        for kind, x in zip(ins, node.inputs):   # broadcasting lines the axes up from the right
            if isinstance(kind, Rows) and (kind.axis + node.ndim - x.ndim, kind.inner) != where:
                return Mixed(node, "lines the batch axis up with another axis")
        return Rows(*where)
    if any(isinstance(k, Rows) for k in ins):
        return Mixed(node, "combines each example with a statistic of the whole batch")
    kinds = {ins[k] for k in reduced}
    if len(kinds) > 1:
        return Mixed(node, "combines a mean over the batch with a sum over it")
    kind = kinds.pop()
    if _affine(node.op.formula_for(node.attrs), reduced, kind == SUM):
        return kind
    return Mixed(node, f"is not {'linear' if kind == SUM else 'affine'} in the batch's {kind}")


@functools.lru_cache(maxsize=1024)
def _affine(formula, reduced, linear):
    """Whether `formula` is affine in its arguments `reduced` (linear: and 0 where they are)."""
    args = [symbolic.ARGS[k] for k in reduced]
    for a in args:
        if sp.diff(formula, a).free_symbols & set(args):
            return False
    return not linear or sp.simplify(formula.subs({a: 0 for a in args})) == 0


# ---- structural ops: (node, input kinds, the output's batch axis) -> kind -------------------
# Reached only when some input depends on the batch.

def _linear(node, ins, where):
    """An op that moves or selects entries (within each example, for rows)."""
    if any(k in (MEAN, SUM) for k in ins):
        kinds = {k for k in ins if k is not None}
        return kinds.pop() if len(kinds) == 1 else Mixed(node, "joins a statistic of the batch with its examples")
    return _rows(node, where)


def _concatenate(node, ins, where):
    if all(k not in (MEAN, SUM) for k in ins):
        return _along("axis")(node, ins, where)
    kinds = set(ins) - {None}
    if kinds == {MEAN} or kinds == {SUM} and None not in ins:   # a weighted mean keeps a constant part
        return kinds.pop()
    return Mixed(node, "joins a statistic of the batch with values it cannot reduce with")


def _along(attr):
    """An op acting along the axis `attr` names: rows pass where that is not the batch axis."""
    def rule(node, ins, where):
        if any(k in (MEAN, SUM) for k in ins):
            return Mixed(node, "is not linear in a statistic of the batch")
        axis = node.attr[attr]
        if any(isinstance(k, Rows) and k.axis == axis % x.ndim for k, x in zip(ins, node.inputs)):
            return Mixed(node, "works along the batch axis, across examples")
        return _rows(node, where)
    return rule


def _reduce(node, ins, where):
    (kind,), axes = ins, node.attr["axis"]
    if kind in (MEAN, SUM):
        return kind if node.op.name != "max" else Mixed(node, "takes a max of a statistic of the batch")
    if kind.axis not in axes:
        return _rows(node, where)
    if node.op.name == "max":
        return Mixed(node, "takes the max over the batch")
    return SUM if node.op.name == "sum" else MEAN


def _matmul(node, ins, where):
    (a, b), (ka, kb) = node.inputs, ins
    if ka in (MEAN, SUM) or kb in (MEAN, SUM):
        if ka is not None and kb is not None:
            return Mixed(node, "multiplies a statistic of the batch with another batch-dependent value")
        return ka if ka is not None else kb
    on_a = isinstance(ka, Rows) and ka.axis == a.ndim - 1          # the contracted axes
    on_b = isinstance(kb, Rows) and kb.axis == max(b.ndim - 2, 0)
    if on_a and on_b:
        return SUM   # x.T @ y: a sum over the examples of their products
    return Mixed(node, "contracts the batch axis") if on_a or on_b else _rows(node, where)


def _leading(node, ins, where):
    """im2col, col2im: per example where the batch is the first axis, in and out."""
    if any(k in (MEAN, SUM) for k in ins):
        return _linear(node, ins, where)
    if all(not isinstance(k, Rows) or (k.axis, k.inner) == (0, 1) for k in ins) and where == (0, 1):
        return Rows(0)
    return Mixed(node, "moves entries across examples (the batch is not its first axis)")


def _reshape(node, ins, where):
    """Per example where as many entries come before the batch's in C order, in and out:
    each example's entries are then the same block of the flat array."""
    (kind,), x = ins, node.inputs[0]
    if kind in (MEAN, SUM):
        return kind
    if where is not None and sp.expand(_product(x.shape[:kind.axis]) - _product(node.shape[:where[0]])) == 0:
        return Rows(*where)
    return Mixed(node, "moves entries across examples")


def _product(dims):
    out = sp.Integer(1)
    for d in dims:
        out *= d
    return out


def _take(node, ins, where):
    kx, ki = ins
    if kx in (MEAN, SUM) and ki is None:
        return kx
    if isinstance(kx, Rows) and kx.axis == node.attr["axis"] % node.inputs[0].ndim:
        return Mixed(node, "gathers examples of the batch")
    return _rows(node, where) if kx not in (MEAN, SUM) else Mixed(node, "gathers a statistic by example")


def _zeros(node, ins, where):
    return None if where is None else Rows(where)


STRUCTURAL = {
    "transpose": _linear, "getitem": _linear, "broadcast_to": _linear, "broadcast_like": _linear,
    "concatenate": _concatenate,
    "sum": _reduce, "mean": _reduce, "max": _reduce, "matmul": _matmul,
    "reshape": _reshape, "patches": _leading, "unpatches": _leading,
    "take": _take, "one_hot": _linear, "zeros_like": _zeros,
    "argmax": _along("axis"), "argmin": _along("axis"), "sort_by": _along("axis"), "unsort_by": _along("axis"),
}
