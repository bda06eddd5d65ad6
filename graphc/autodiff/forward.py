"""Forward mode as a graph transform: each node's tangent from its inputs' tangents.

Walk the graph in topological order from the seeded inputs; ask each op's JVP rule
(beside its VJP, in graph/) for the tangent of its output. Elementwise ops share one
rule built from the same SymPy partials as their VJPs, so the code reads like the
forward-mode slide: tangent_s0 = tangent_w0*x0 + tangent_x0*w0. A tangent may carry a
leading batch axis, one tangent per vector of a basis (graph/structural.py: `batched`),
which is how a Jacobian or a Hessian is pushed through the graph in one pass.
"""
from __future__ import annotations

from ..graph import ops
from ..graph.ir import Graph, GraphError, located
from ..graph.names import Namer, user_names
from ..graph.structural import CUSTOM, batch_axis, batched, broadcast_like, broadcast_to, lift
from ..graph.tensor import Tensor
from .reverse import resolve_wrt


def push_forward(graph: Graph, seeds: dict) -> dict:
    """Add to `graph` the tangent of every node that depends on a seeded one.

    `seeds` maps nodes to their tangents (nodes of the same shape, or with one more
    axis in front: a batch of tangents). Returns {node: tangent node}; a node that
    is missing has no tangent (zero)."""
    tangents = dict(seeds)
    end = len(graph.nodes)   # the nodes added below are tangents, not to be visited
    for node in graph.nodes[min(n.index for n in seeds):end]:
        given = [tangents.get(i) for i in node.inputs]
        if node in seeds or not any(t is not None for t in given):
            continue
        # the comment: which op's tangent, or a line of a backward pass (forward over reverse)
        graph._origin = (node, f"{node.op.name} tangent" if node.origin is None else "tangent of a backward line")
        try:
            t = _tangent(graph, node, given, tangents)
        finally:
            graph._origin = None
        if t is not None:
            tangents[node] = t.node
            if t.node.index >= end and t.node.op.kind not in ("input", "const"):
                # named tangent_<node> in the code; a tangent that is a value the graph had
                # (sin(x), the tangent of x*sin(x) along a seed of 1) keeps its own name
                graph.tangents.setdefault(t.node, node)
    return tangents


def _tangent(graph, node, given, tangents):
    """The tangent of one node (a Tensor), or None."""
    op = node.op
    if op is CUSTOM:   # a custom VJP's value: its tangent is that of the value's own graph
        inner = tangents.get(node.inputs[0].inputs[0])
        return None if inner is None else Tensor(graph, inner)
    xs = [Tensor(graph, i) for i in node.inputs]
    ts = [None if t is None else Tensor(graph, t) for t in given]
    if op.jvp is None:
        if op.kind == "alias" or all(k in op.nondiff for k, t in enumerate(ts) if t is not None):
            return None   # stop_gradient, zeros, a basis: no tangent flows through
        raise GraphError(f"{located(graph, node.where)}: op '{op.name}' has no forward-mode (JVP) rule")
    if op.elementwise:   # batched tangents line up with the output's axes
        ts = [t if t is None or not batched(t, x) else lift(t, x, node.ndim) for t, x in zip(ts, xs)]
    y = Tensor(graph, node)
    out = op.jvp(tuple(ts), y, *xs, **dict(node.attrs))
    if out is None:
        return None
    lead = batch_axis(ts, xs)
    if out.shape != lead + node.shape:   # a tangent that lacks some of y's axes (t_b of x + b)
        out = broadcast_to(out, lead + node.shape) if lead else broadcast_like(out, y)
    return out


def tangent_or_zeros(graph, tangents, node, lead=()):
    """The tangent of `node`, or zeros of its shape (with the batch axis `lead`) where none flows."""
    t = tangents.get(node)
    if t is not None:
        return t
    zeros = ops.zeros_like(Tensor(graph, node))
    return broadcast_to(zeros, lead + node.shape).node if lead else zeros.node


def jvp(graph: Graph, wrt=None) -> Graph:
    """Forward mode: a graph with an input tangent_<name> per `wrt` input (default: the
    graph's wrt, else every input) that outputs the graph's outputs, then their tangents
    tangent_<output>, the directional derivatives along the given tangents."""
    nodes = resolve_wrt(graph, wrt)
    g = graph.copy(f"jvp_{graph.name}")
    namer = Namer(user_names(g))
    seeds = {w: ops.add_input(g, namer.fresh(f"tangent_{w.name}"), w.shape) for w in nodes}
    tangents = push_forward(g, seeds)
    g.outputs = list(graph.outputs) + [(namer.fresh(f"tangent_{name}"), tangent_or_zeros(g, tangents, node))
                                       for name, node in graph.outputs]
    g.output_kind, g.wrt = "tuple", None
    return g
