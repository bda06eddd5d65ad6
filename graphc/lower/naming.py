"""The lecture's names for a graph's values, shared by the generated code, `graphc show`
and the diagrams: inputs and named values keep their names, an output its own, the
other intermediates are s0, s1, ... (a Namer steps around every name the user chose)."""
from __future__ import annotations

from ..graph.names import Namer, user_names


def through_aliases(node):
    """The node that computes `node`'s value: aliases (stop_gradient, a custom VJP's
    value) only give it a second name."""
    while node.op.kind == "alias":
        node = node.inputs[0]
    return node


def is_hidden(node):
    """Nodes that need no statement: inputs, constants, pure aliases."""
    return node.op.kind in ("input", "const", "alias")


def value_names(graph, namer=None):
    """{node: name} for the live forward values of `graph` that need a name."""
    namer = namer or Namer(user_names(graph))
    names = {}
    for name, node in graph.outputs:
        node = through_aliases(node)
        if node.name is None and node.op.kind not in ("input", "const") and node not in names:
            names[node] = name
    primal_names = {}   # a tangent's primal that is not live still lends it its name
    adjoint_of = {rec.adjoint: rec.forward for rec in graph.adjoints}
    for node in graph.live_nodes():
        if node.name:
            names[node] = node.name
        elif node not in names and not is_hidden(node):
            primal = graph.tangents.get(node)
            if primal is None:
                names[node] = namer.temp()
            else:   # forward mode: the tangent of s3 is tangent_s3
                primal = through_aliases(primal)
                if primal not in names and primal not in primal_names:
                    forward = adjoint_of.get(primal)   # a backward line's tangent: tangent_grad_s2
                    primal_names[primal] = primal.name or (namer.temp() if forward is None else
                                                           "grad_" + names.get(forward, forward.name or "s"))
                names[node] = namer.fresh("tangent_" + names.get(primal, primal_names.get(primal)))
    return names
