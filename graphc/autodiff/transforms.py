"""Derivatives built from the two modes, each a graph transform that returns a graph
(which compiles on every target, renders and differentiates again), as gc.grad does:
Jacobians (reverse mode over the output's entries, or forward mode over a basis of the
input's, whichever needs fewer passes), Hessians (forward over reverse: the Jacobian of
the gradient, one batched forward pass per input) and Hessian-vector products (forward
over reverse with one tangent: two passes, never the whole Hessian)."""
from __future__ import annotations

from ..graph import ops
from ..graph.ir import Graph, GraphError, format_shape, size_of
from ..graph.names import Namer, user_names
from ..graph.structural import basis, reshape, transpose
from ..graph.indexing import stack
from ..graph.tensor import Tensor
from .forward import push_forward, tangent_or_zeros
from .reverse import backprop, grad, resolve_wrt

MODES = ("auto", "rev", "fwd")


def jacobian(graph: Graph, wrt=None, mode="auto") -> Graph:
    """The Jacobian of `graph`'s first output with respect to each `wrt` input (default:
    the graph's wrt, else every input): outputs jacobian_<name> of shape
    output.shape + input.shape. `mode`: "rev" (a backward pass per output entry), "fwd"
    (one forward pass over a basis of the input) or "auto" (the fewer passes)."""
    if mode not in MODES:
        raise GraphError(f"graph '{graph.name}': gc.jacobian mode must be one of {', '.join(MODES)}, got {mode!r}")
    out_name, out = graph.outputs[0]
    nodes = resolve_wrt(graph, wrt)
    g = graph.copy(f"jacobian_{graph.name}")
    modes = {w: _mode(graph, out_name, out, w, mode) for w in nodes}
    found = _reverse(g, out, [w for w in nodes if modes[w] == "rev"])
    for w in nodes:
        if modes[w] == "fwd":
            found[w] = _push_basis(g, w, [out])[0]
    namer = Namer(user_names(g))
    g.outputs = [(namer.fresh(f"jacobian_{w.name}"), found[w]) for w in nodes]
    g.output_kind, g.wrt = ("single" if len(nodes) == 1 else "tuple"), None
    return g


def _mode(graph, out_name, out, w, mode):
    """The mode for one input: the one that needs fewer passes, where the sizes allow it."""
    n_out, n_in = size_of(out.shape), size_of(w.shape)
    static = {"rev": isinstance(n_out, int), "fwd": isinstance(n_in, int)}
    if mode == "auto" and any(static.values()):
        mode = "fwd" if static["fwd"] and (not static["rev"] or n_in < n_out) else "rev"
    if mode == "auto" or not static[mode]:
        sides = {"rev": f"the output '{out_name}' {format_shape(out.shape)} (reverse mode)",
                 "fwd": f"the input '{w.name}' {format_shape(w.shape)} (forward mode)"}
        which = " or ".join(sides.values()) if mode == "auto" else sides[mode]
        raise GraphError(f"graph '{graph.name}': gc.jacobian needs a static shape for {which}: "
                         "a pass per entry needs their number")
    return mode


def _reverse(g, out, nodes):
    """{input: its Jacobian block}: a backward pass per entry of `out`, stacked."""
    if not nodes:
        return {}
    if out.shape == ():
        return backprop(g, out, ops.const(g, 1), nodes)
    flat = reshape(Tensor(g, out), (size_of(out.shape),))
    rows = {w: [] for w in nodes}
    for k in range(size_of(out.shape)):
        entry = flat[k]
        for w, row in backprop(g, entry.node, ops.const(g, 1), nodes).items():
            rows[w].append(Tensor(g, row))
    return {w: reshape(stack(rows[w]), out.shape + w.shape).node for w in nodes}


def _push_basis(g, w, targets):
    """The Jacobian blocks of `targets` with respect to input `w`, by one forward pass that
    pushes the whole basis of w's space (for a scalar w, the number 1, which folds away)."""
    scalar = w.shape == ()
    seed = ops.const(g, 1) if scalar else basis(Tensor(g, w)).node
    tangents = push_forward(g, {w: seed})
    lead = () if scalar else (size_of(w.shape),)
    return [_basis_last(g, tangent_or_zeros(g, tangents, t, lead), w) for t in targets]


def _basis_last(g, t, w):
    """A batch of tangents (n,) + y.shape as the Jacobian block y.shape + w.shape."""
    t = Tensor(g, t)
    if w.shape == ():   # one tangent, no batch axis
        return t.node
    nd = t.ndim
    moved = transpose(t, tuple(range(1, nd)) + (0,))
    return reshape(moved, moved.shape[:-1] + w.shape).node


def hessian(graph: Graph, wrt=None) -> Graph:
    """The Hessian of `graph`'s first output (a scalar) by forward over reverse. For one
    input x of shape s: an output hessian_x of shape s + s; for several, one output per
    ordered pair, hessian_<a>_<b> of shape a.shape + b.shape (row-major: d/db of d/da)."""
    nodes = resolve_wrt(graph, wrt)
    gradients = grad(_scalar(graph, "gc.hessian"), [w.name for w in nodes])
    g = gradients.copy(f"hessian_{graph.name}")
    blocks = {}
    for j, wj in enumerate(nodes):   # one batched forward pass per input
        column = _push_basis(g, wj, [gi for _, gi in gradients.outputs])
        for i, block in enumerate(column):
            blocks[i, j] = block
    namer = Namer(user_names(g))
    if len(nodes) == 1:
        g.outputs = [(namer.fresh(f"hessian_{nodes[0].name}"), blocks[0, 0])]
    else:
        g.outputs = [(namer.fresh(f"hessian_{a.name}_{b.name}"), blocks[i, j])
                     for i, a in enumerate(nodes) for j, b in enumerate(nodes)]
    g.output_kind, g.wrt = ("single" if len(nodes) == 1 else "tuple"), None
    return g


def _scalar(graph, what):
    out_name, out = graph.outputs[0]
    if out.shape != ():
        raise GraphError(f"graph '{graph.name}': {what} needs a scalar first output, '{out_name}' has shape "
                         f"{format_shape(out.shape)}; take the Hessian of a sum or mean, or gc.jacobian "
                         "of gc.jacobian")
    return graph


def hvp(graph: Graph, wrt=None) -> Graph:
    """The Hessian of `graph`'s first output (a scalar) times a vector, never the Hessian
    itself: inputs v_<name> per `wrt` input, outputs hvp_<name> = sum over b of
    H[name, b] . v_b, by one forward pass (tangents v) over the gradient's graph."""
    nodes = resolve_wrt(graph, wrt)
    gradients = grad(_scalar(graph, "gc.hvp"), [w.name for w in nodes])
    g = gradients.copy(f"hvp_{graph.name}")
    namer = Namer(user_names(g))
    seeds = {w: ops.add_input(g, namer.fresh(f"v_{w.name}"), w.shape) for w in nodes}
    tangents = push_forward(g, seeds)
    g.outputs = [(namer.fresh(f"hvp_{w.name}"), tangent_or_zeros(g, tangents, gi))
                 for w, (_, gi) in zip(nodes, gradients.outputs)]
    g.output_kind, g.wrt = ("single" if len(nodes) == 1 else "tuple"), None
    return g
