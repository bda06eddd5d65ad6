"""The graph as text (`print(graph)`, `graphc show`): a node a line with its shape and
size, named as the generated code names it (naming.py), like a jaxpr."""
from __future__ import annotations

from ..graph import ops, symbolic
from ..graph.ir import BEHAVIOUR, format_shape, size_of
from ..graph.lazy import sp
from ..graph.names import Namer
from ..graph.structural import CUSTOM, STOP
from .naming import is_hidden, through_aliases, value_names


def dump(graph, title=None):
    """The graph as text, one node a line, with shapes and sizes (like a jaxpr)."""
    names = _dump_names(graph)
    notes = {}

    def ref(n):
        if n.op is STOP:
            return f"stop_gradient({ref(n.inputs[0])})"
        if n.op is CUSTOM:
            notes[through_aliases(n)] = f"  # gradient by rule: {n.attr['label']}"
        n = through_aliases(n)
        return str(ops.const_value(n)) if n.op is ops.CONST else names[n]

    ins = ", ".join(f"{n.name}: {_shape(n)}" for n in graph.inputs)
    head = title or f"graph {graph.name}({ins}) -> {', '.join(graph.output_names)}"
    lines = [head + (f"    # {graph.source}" if graph.source else "")]
    outs = [(name, ref(node)) for name, node in graph.outputs]
    rows = []
    for node in graph.live_nodes():
        if is_hidden(node):
            continue
        attrs = ", ".join(f"{k}={_attr_text(v)}" for k, v in node.attrs if k != "rule")
        call = f"{node.op.name}({', '.join(ref(i) for i in node.inputs)}" + (f"; {attrs}" if attrs else "") + ")"
        if node.op is ops.EXPR:   # a fused formula reads best with its arguments' names in it
            call = str(node.attr["expr"].subs({symbolic.ARGS[k]: sp.Symbol(ref(i)) for k, i in
                                               enumerate(node.inputs)}, simultaneous=True))
        rows.append((node, names[node], _shape(node), str(size_of(node.shape)), call))
    w0 = max((len(r[1]) for r in rows), default=1)
    w1 = max((len(r[2]) for r in rows), default=1)
    w2 = max((len(r[3]) for r in rows), default=1)
    headers = {}   # the first adjoint and the first tangent open their parts
    for node in (r[0] for r in rows if r[0].origin is not None):
        kind = "tangent" if node in graph.tangents else "adjoint"
        headers.setdefault(kind, node)
    titles = {headers.get("adjoint"): "  # backward: the adjoints, from the output back to the inputs",
              headers.get("tangent"): "  # forward mode: the tangents, from the inputs to the outputs"}
    for node, name, shape, size, call in rows:
        if node in titles:
            lines.append(titles[node])
        lines.append(f"  {name:<{w0}} : {shape:<{w1}} {size:>{w2}} = {call}{notes.get(node, '')}")
    for name, text in outs:
        if text != name:
            lines.append(f"  {name} = {text}")
    steps = {}   # each scan's step graph once, after the graph that loops over it
    for node, *_ in rows:
        if node.op.siblings:
            steps.setdefault(node.attr["body"], None)
    for body in steps:
        lines.append("\n".join("  " + line for line in dump(body, title=f"step {_step_head(body)}").split("\n")))
    return "\n".join(lines)


def _step_head(body):
    ins = ", ".join(f"{n.name}: {_shape(n)}" for n in body.inputs)
    return f"{body.name}({ins}) -> {', '.join(body.output_names)}"


def _dump_names(graph):
    """The generated code's names, and an adjoint is grad_<value> as there, named after
    the first value it is the gradient of (grad_s3, then grad_w2 = grad_s3)."""
    names = value_names(graph)
    first = {}
    for rec in graph.adjoints:
        first.setdefault(rec.adjoint, through_aliases(rec.forward))
    namer = Namer([n.name for n in graph.nodes if n.name] +
                  [name for name, n in graph.outputs if through_aliases(n).origin is None])
    for node in graph.live_nodes():
        if node not in names:
            continue
        if node.origin is None or node.name or node in graph.tangents:   # tangent_<value> as in the code
            namer.take(names[node])
        else:
            forward = first.get(node)
            names[node] = namer.temp() if forward is None else \
                namer.fresh("grad_" + (names.get(forward) or forward.name or "s"))
    return names


def _shape(node):
    """Its shape, and `int` for an integer value (int64 in the code)."""
    return format_shape(node.shape) + (" int" if node.dtype == "int" else "")


def _attr_text(v):
    if hasattr(v, "nodes") and hasattr(v, "outputs"):   # a scan's step graph: printed after
        return f"step {v.name}"
    if hasattr(v, "free_symbols") and getattr(v, "is_Atom", False) is False and v.free_symbols:
        return str(v).replace("_a", "a")
    return str(v)


BEHAVIOUR["text"] = dump   # str(graph)
