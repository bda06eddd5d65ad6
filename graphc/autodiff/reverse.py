"""Reverse mode as a graph transform (not a tape).

Walk the nodes that lie between the inputs we differentiate with respect to
and the output, in reverse topological order; ask each op's VJP rule for one
contribution per input; sum contributions where a value fans out (the copy
gate adds) and sum over broadcast axes where an input was broadcast. The
adjoints are ordinary nodes, so the result can be differentiated again.

A value read in more than WIDE places (a weight shared by every step of an unrolled
RNN) sums its contributions as they arrive, a running sum whose each add sits beside
the contribution it takes: the backward code then repeats step by step, and the numba
target compiles a step once (lower/outline.py) where one sum of every step's
contribution at the end would be a loop reading a hundred arrays.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..graph import ops, symbolic
from ..graph.ir import Graph, GraphError, Node
from ..graph.lazy import sp
from ..graph.ops import zeros_like
from ..graph.structural import unbroadcast
from ..graph.tensor import Tensor


WIDE = 8   # contributions beyond which they are summed as they arrive
RUNNING_SUM = "copy gate adds, as each contribution arrives"   # the comment on such an add


@dataclass(frozen=True)
class Adjoint:
    """`adjoint` is d output / d `forward`. `gate` is the consumer whose VJP gave
    the only contribution (None for the seed and for sums); `via` is that gate
    when the contribution is the very gradient that flowed into it (an add gate
    distributing), so the generated code can say grad_<forward> = grad_<via>."""
    forward: Node
    adjoint: Node
    via: Node | None
    gate: Node | None


def backprop(graph: Graph, output: Node, seed: Node, wrt: list[Node]) -> dict:
    """Add the adjoint nodes of d output / d wrt to `graph`; returns {wrt node: adjoint}.
    Inputs that the output does not depend on get zeros of their own shape."""
    return backprop_seeds(graph, [(output, seed)], wrt)


def backprop_seeds(graph: Graph, seeds, wrt: list[Node]) -> dict:
    """backprop from several outputs at once, each with its seed [(output, seed)]: the
    adjoints of the sum of their vector-Jacobian products (a scan's step, whose new carry
    and y both receive a gradient)."""
    for output, seed in seeds:
        if seed.shape != output.shape:
            raise GraphError(f"graph '{graph.name}': the seed has shape {seed.shape}, "
                             f"the output {output.shape}")
    last = max(output.index for output, _ in seeds)
    on_path = _between(graph, wrt, [output for output, _ in seeds])
    contributions: dict[Node, list] = {}
    for output, seed in seeds:
        contributions.setdefault(output, []).append((seed, None))
    found, siblings = {}, _siblings(graph, last)
    readers = Counter(i for n in graph.nodes[: last + 1] if on_path[n.index] for i in n.inputs)
    running = {n for n, count in readers.items() if count > WIDE}
    for node in [n for n in graph.nodes[: last + 1] if on_path[n.index]][::-1]:
        if node.op.siblings:   # the outputs of one computation: their adjoints, then one VJP
            group = siblings.pop(ops.sibling_key(node), None)
            if group is not None:
                gs = [None] * (group[-1].attr["out"] + 1)   # by "out": None where a sibling is absent
                for s in group:
                    gs[s.attr["out"]] = _adjoint(graph, s, contributions.pop(s, None), found)
                if any(g is not None for g in gs) and any(on_path[i.index] for i in node.inputs):
                    _contribute(graph, node, on_path, contributions, gs, running)
            continue
        g = _adjoint(graph, node, contributions.pop(node, None), found)
        if g is not None and node.op.vjp is not None and any(on_path[i.index] for i in node.inputs):
            _contribute(graph, node, on_path, contributions, Tensor(graph, g), running)
    return {w: found.get(w) or zeros_like(Tensor(graph, w)).node for w in wrt}


def _adjoint(graph, node, parts, found):
    """The adjoint of `node` from its contributions (recorded), or None where none came."""
    if not parts:
        return None
    g = _sum(graph, node, parts)
    gate = parts[0][1] if len(parts) == 1 else None
    via = gate if gate is not None and parts[0][0] is found[gate] else None
    graph.adjoints.append(Adjoint(node, g, via, gate))
    found[node] = g
    return g


def _contribute(graph, node, on_path, contributions, g, running):
    """Ask `node`'s VJP rule for its inputs' contributions. Siblings share one rule, given
    their adjoints by "out" (Tensors, None where none came) and the attributes they share,
    not their values (the rule makes the siblings it reads: a scan's kept carries). An
    input in `running` adds each contribution to the sum of those before it at once."""
    attrs, args = dict(node.attrs), [Tensor(graph, i) for i in node.inputs]
    if node.op.siblings:   # which inputs need a gradient: a scan computes only those
        g = [None if a is None else Tensor(graph, a) for a in g]
        del attrs["out"]
        attrs["needed"] = tuple(bool(on_path[i.index]) for i in node.inputs)
    else:
        args.insert(0, Tensor(graph, node))
    graph._origin = (node, None)
    try:
        rules = node.op.vjp(g, *args, **attrs)
        for inp, c in zip(node.inputs, rules):
            if c is None or not on_path[inp.index]:
                continue
            c = unbroadcast(c, inp.shape)
            parts = contributions.setdefault(inp, [])
            if parts and inp in running:
                graph._origin = (inp, RUNNING_SUM)
                parts[:] = [((Tensor(graph, parts[0][0]) + c).node, None)]
                graph._origin = (node, None)
            else:
                parts.append((c.node, node))
    finally:
        graph._origin = None


def _siblings(graph, last):
    """{key: [nodes]}: the sibling outputs of each computation (ops.Op.siblings), by "out"."""
    groups = {}
    for node in graph.nodes[: last + 1]:
        if node.op.siblings:
            groups.setdefault(ops.sibling_key(node), []).append(node)
    return {k: sorted(v, key=lambda n: n.attr["out"]) for k, v in groups.items()}


def _between(graph, wrt, outputs):
    """Flags for the nodes that depend on some wrt input and feed one of the outputs."""
    last = max(o.index for o in outputs)
    n = len(graph.nodes)
    depends = bytearray(n)
    for w in wrt:
        depends[w.index] = 1
    for node in graph.nodes[: last + 1]:
        if not depends[node.index] and any(depends[i.index] for i in node.inputs):
            depends[node.index] = 1
    feeds = bytearray(n)
    for o in outputs:
        feeds[o.index] = 1
    for node in reversed(graph.nodes[: last + 1]):
        if feeds[node.index]:
            for i in node.inputs:
                feeds[i.index] = 1
    return bytearray(a & b for a, b in zip(depends, feeds))


def _sum(graph, node, parts):
    """The copy gate adds: one node summing every contribution to `node`."""
    if len(parts) == 1:
        return parts[0][0]
    graph._origin = (node, "copy gate adds")
    try:
        formula = sp.Add(*symbolic.ARGS[: len(parts)])
        if len(parts) > len(symbolic.ARGS):   # very wide fan-out: a chain of sums
            total = Tensor(graph, parts[0][0])
            for p, _ in parts[1:]:
                total = total + Tensor(graph, p)
            return total.node
        return ops.expr(formula, *[Tensor(graph, p) for p, _ in parts]).node
    finally:
        graph._origin = None


def resolve_wrt(graph, wrt):
    """Validate names to differentiate with respect to; returns input nodes."""
    names = graph.default_wrt() if wrt is None else ((wrt,) if isinstance(wrt, str) else tuple(wrt))
    unknown = [w for w in names if w not in graph.input_names]
    if unknown:
        raise GraphError(f"graph '{graph.name}': cannot differentiate with respect to "
                         f"{', '.join(repr(u) for u in unknown)}: not an input "
                         f"(inputs: {', '.join(graph.input_names)})")
    if len(set(names)) != len(names):
        raise GraphError(f"graph '{graph.name}': wrt names an input twice: {names}")
    ints = [w for w in names if graph.input(w).dtype == "int"]
    if ints:
        raise GraphError(f"graph '{graph.name}': cannot differentiate with respect to "
                         f"{', '.join(repr(w) for w in ints)}: an integer input (gc.IntTensor) has no gradient")
    return [graph.input(w) for w in names]


def differentiate(graph: Graph, wrt: list[Node], seed="auto"):
    """A copy of `graph` with the adjoints of its first output added.

    `seed` is "one" (d out / d out = 1, for a scalar output), "input" (an input
    named grad_out, the gradient flowing into the output) or "auto" (one for a
    scalar, else input). Returns (the copy, the seed node, {wrt node: adjoint})."""
    g = graph.copy()
    out = graph.outputs[0][1]
    if seed == "auto":
        seed = "one" if out.shape == () else "input"
    node = ops.const(g, 1) if seed == "one" else ops.add_input(g, "grad_out", out.shape)
    return g, node, backprop(g, out, node, wrt)


def grad(graph: Graph, wrt=None) -> Graph:
    """The graph of the gradients of `graph`'s first output (which must be a
    scalar) with respect to `wrt`: its outputs are grad_<name>, one per input."""
    out_name, output = graph.outputs[0]
    if output.shape != ():
        raise GraphError(f"graph '{graph.name}': gc.grad needs a scalar first output, "
                         f"'{out_name}' has shape {output.shape}; differentiate a sum, "
                         "or compile and pass grad_out to backward")
    nodes = resolve_wrt(graph, wrt)
    g, _, adjoints = differentiate(graph, nodes, "one")
    g.name = f"grad_{graph.name}"
    g.outputs = [(f"grad_{w.name}", adjoints[w]) for w in nodes]
    g.output_kind = "single" if len(nodes) == 1 else "tuple"
    g.wrt = None
    return g
