"""The VJP of gc.scan: a scan of the step's VJP, run the other way.

The backward loop's carries are the gradient flowing into each step's new carry and the
running sums of the gradients of the values the step reads from the model (its weights:
each step adds its share); it scans, last step first, over the carries that entered each
step (the forward loop keeps them: the `out` siblings after the ys), the slices of xs and
the gradients of the ys; each step gives the gradient of its incoming carry (the next
step's carry) and of its slice (stacked into the gradient of xs). The step's own forward
values are recomputed from its incoming carry inside the backward step: reverse mode keeps
one carry a step, never every value of every step.
"""
from __future__ import annotations

import functools

from ..graph import ops
from ..graph.ir import Graph, GraphError
from ..graph.names import Namer, user_names
from ..graph.scan import SCAN, loop
from ..graph.tensor import Tensor
from .reverse import backprop_seeds


def _differentiable(node):
    return node.dtype == "float"


def scan_vjp(gs, *inputs, body, carries, xs, length, reverse, needed):
    """The contributions to the initial carries, the xs and the values the step reads
    (those that `needed` flags: the others' gradients are not computed)."""
    c, n = carries, len(body.outputs) - carries
    init, slices, consts = inputs[:c], inputs[c:c + xs], inputs[c + xs:]
    ys = loop(body, init, slices, consts, length, reverse)   # the siblings (interned: those there are)
    gs = list(gs) + [None] * (len(ys) - len(gs))
    if any(not _differentiable(v.node) for v in init):
        raise GraphError(f"graph '{ys[0].graph.name}': gc.scan with step '{body.name}': an integer carry has "
                         "no gradient; keep integer state out of the carry (a scan's length is static)")
    want = tuple(_differentiable(v.node) and k for v, k in zip(inputs, needed))
    with_y = tuple(gs[c + k] is not None for k in range(n))
    backward = vjp_body(body, c, xs, with_y, want[c:c + xs], want[c + xs:])
    g_carry = [g if g is not None else ops.zeros_like(y) for g, y in zip(gs[:c], ys[:c])]
    sums = [ops.zeros_like(v) for v, k in zip(consts, want[c + xs:]) if k]
    history = ys[c + n:]
    g_ys = [g for g in gs[c:c + n] if g is not None]
    out = loop(backward, g_carry + sums, [*history, *slices, *g_ys], list(consts), length, not reverse)
    g_consts, g_xs = iter(out[c:c + len(sums)]), iter(out[c + len(sums):len(backward.outputs)])
    return (*out[:c], *[next(g_xs) if k else None for k in want[c:c + xs]],
            *[next(g_consts) if k else None for k in want[c + xs:]])


@functools.lru_cache(maxsize=None)
def vjp_body(body, c, m, with_y, want_x, want_const):
    """The backward loop's step: a graph of (gradients of the new carries, running sums
    of the wanted consts' gradients; incoming carries, slices, gradients of the ys that have
    one; consts) -> (gradients of the incoming carries, the sums with this step's share
    added; gradients of the wanted slices). One graph per step graph and set of flags, so
    that every function of a module calls the same backward step."""
    g = Graph(f"{body.name}_vjp", body.source)
    names = Namer(user_names(body))
    carry_in, slice_in, const_in = body.inputs[:c], body.inputs[c:c + m], body.inputs[c + m:]
    outs, ys = body.outputs[:c], [o for o, keep in zip(body.outputs[c:], with_y) if keep]
    seeds = [ops.add_input(g, names.fresh(f"grad_{name}"), node.shape) for name, node in outs]
    consts = [v for v, k in zip(const_in, want_const) if k]
    sums = [ops.add_input(g, names.fresh(f"grad_{v.name}_sum"), v.shape) for v in consts]
    mapped = {v: ops.add_input(g, v.name, v.shape, v.dtype) for v in carry_in + slice_in}
    seeds += [ops.add_input(g, names.fresh(f"grad_{name}"), node.shape) for name, node in ys]
    mapped.update({v: ops.add_input(g, v.name, v.shape, v.dtype) for v in const_in})
    for node in body.live_nodes([o for _, o in body.outputs]):
        if node not in mapped:
            mapped[node] = ops.readd(g, node, tuple(mapped[i] for i in node.inputs))
    slices = [v for v, k in zip(slice_in, want_x) if k]
    wrt = [mapped[v] for v in carry_in + slices + consts]
    grads = backprop_seeds(g, [(mapped[o], s) for (_, o), s in zip(outs + ys, seeds)], wrt)
    g.outputs = [(names.fresh(f"grad_{v.name}"), grads[mapped[v]]) for v in carry_in]
    g.outputs += [(names.fresh(f"grad_{v.name}_sum_next"), (Tensor(g, s) + Tensor(g, grads[mapped[v]])).node)
                  for v, s in zip(consts, sums)]
    g.outputs += [(names.fresh(f"grad_{v.name}"), grads[mapped[v]]) for v in slices]
    g.output_kind, g.ys_kind = "tuple", "tuple"
    return g


SCAN.vjp = scan_vjp
