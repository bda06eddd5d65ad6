"""`gc.render`: the lecture's circuit diagram of a graph, with its numbers.

This module decides what is drawn: a box per input, operation and output, a wire
per edge carrying the value flowing forward and the gradient flowing back, the
scopes as clusters (or, collapsed, as one box each), and for the backward view
the adjoint nodes that reverse mode added (`groups.py` draws each conv or pool layer,
and each collapsed scope, as one box). `dot.py` turns that picture into
Graphviz's DOT text and files. Only the graph and the values are read; the
compiler never imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from ..autodiff import differentiate, resolve_wrt
from ..backends.numpy import TARGET as NUMPY
from ..graph import ops, symbolic
from ..graph.indexing import GETITEM, index_to_python
from ..graph.ir import Graph, GraphError
from ..graph.names import Namer
from ..graph.structural import CUSTOM, MAX, MEAN, SUM, TRANSPOSE
from ..lower.naming import value_names
from . import dot, groups
from .evaluate import Evaluation

VIEWS = ("forward", "backward", "both")


def render(graph, values=None, path=None, *, grad_out=None, show="forward", collapse=False,
           precision=2, wrt=None):
    """Draw `graph` and return a `graphviz.Digraph` (Jupyter shows it inline).

    values:    {input name: number or array}: the graph and its gradients are evaluated
               there and every wire shows its value (green, above) and gradient (red,
               below); without values the structure is drawn, with shapes.
    path:      also write the picture there; the suffix picks the format
               (.svg, .png, .pdf, or .dot for the DOT text, which needs no Graphviz).
               With values, a wire carrying a 4-D value (N, C, H, W) shows its first
               example's first 4 channels as grey-scale thumbnails: inline in an .svg,
               embedded in a .png or .pdf, PNG files beside a .dot (in GRAPH_maps/,
               named by their digests, so the DOT text is the same bytes each time; run
               dot in that folder). See thumbnails.py.
    grad_out:  the gradient flowing into a non-scalar first output (default: ones).
    show:      "forward" (the circuit), "backward" (the adjoint nodes reverse mode
               adds, as in the generated code) or "both".
    collapse:  draw each gc.scope as one box with its input and output wires. A conv or
               pool layer (gc.conv2d, ...) is always one box, labelled with its shapes.
    precision: decimals of the numbers shown (a tensor's mean and norm: that many
               significant digits, at least 2).
    wrt:       the inputs whose gradients the backward view ends in (default: the graph's).
    """
    if not isinstance(graph, Graph):
        raise GraphError(f"gc.render needs a graph (a function decorated with @gc.graph), "
                         f"got {type(graph).__name__}")
    if show not in VIEWS:
        raise GraphError(f"gc.render: show must be one of {', '.join(VIEWS)}; got {show!r}")
    if isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= 12:
        raise GraphError(f"gc.render: precision must be a whole number of decimals from 0 to 12, got {precision!r}")
    evaluation = None if values is None else Evaluation(graph, values, grad_out=grad_out, wrt=wrt)
    picture = build(graph, evaluation, show=show, collapse=collapse, wrt=wrt)
    digraph = dot.digraph(picture, precision)
    if path is not None:
        dot.write(digraph, path)
    return digraph


# ---- the picture: boxes and wires ----------------------------------------------------

@dataclass
class Box:
    key: str               # the DOT node name: stable, from node indices
    kind: str              # input | op | backward | output | const | ref | group
    label: str
    where: tuple = ()      # the scope path of the cluster it is drawn in
    note: str = ""         # small print: the copy gate's sum, the ops inside a collapsed scope


@dataclass
class Wire:
    tail: str
    head: str
    shape: tuple = ()      # the declared (symbolic) shape of the value
    value: object = None   # array, or None without values
    grad: object = None    # the gradient flowing back along this wire, or None
    name: str = ""         # a named value's name
    backward: bool = False  # the value is a gradient, computed by the backward pass
    source: object = None  # the node whose value the wire carries
    where: tuple = ()
    forward: bool = False  # a forward-view wire: the gradient belongs on it


@dataclass
class Picture:
    title: str
    view: str
    has_values: bool
    boxes: list = field(default_factory=list)
    wires: list = field(default_factory=list)
    keys: dict = field(default_factory=dict, repr=False)
    scopes: dict = field(default_factory=dict, repr=False)   # node: its path, each layer call its own

    def where(self, node):
        """The scope path `node` is drawn in (groups.layer_scopes tells a layer's calls apart)."""
        return self.scopes.get(node, node.scope)

    def box(self, key, kind, label, where=(), note=""):
        """The box named `key`, added the first time."""
        b = self.keys.get(key)
        if b is None:
            b = self.keys[key] = Box(key, kind, label, tuple(where), note)
            self.boxes.append(b)
        return b


def build(graph, ev=None, show="forward", collapse=False, wrt=None):
    """The picture of `graph` (and its Evaluation `ev`, if any) in the view `show`."""
    picture = Picture(graph.name, show, ev is not None, scopes=groups.layer_scopes(graph.nodes))
    if show == "forward":
        _forward(picture, graph, graph.nodes, ev, roots=[n for _, n in graph.outputs])
    else:
        if ev is not None:
            bgraph, count, records, grads = ev.backward, ev.forward_count, ev.records, ev.input_grads
        else:
            bgraph, count, records, grads = _backward_structure(graph, wrt)
        names = _names(bgraph, count, records)
        adjoints = [n for n in bgraph.live_nodes(list(grads.values())) if n.index >= count]
        reads = [i for n in adjoints for i in n.inputs if i.index < count and i.op is not ops.CONST]
        reads += [n for n in grads.values() if n.index < count and n.op is not ops.CONST]
        if show == "both":
            _forward(picture, graph, bgraph.nodes[:count], ev,
                     roots=[n for _, n in graph.outputs] + reads)
        gradients = {r.adjoint for r in records if r.adjoint.index >= count}
        _backward(picture, adjoints, grads, count, gradients, names, ev, refs=(show == "backward"))
    picture = groups.group(picture, collapse)   # each layer one box; collapsed, each scope
    _place_wires(picture)
    return picture


def _visible(nodes, roots):
    """The nodes the roots need; a custom_vjp gate is drawn from its primals alone
    (its value's primitive subgraph is an implementation detail)."""
    keep = bytearray(len(nodes))
    for r in roots:
        keep[r.index] = 1
    for node in reversed(nodes):
        if keep[node.index]:
            for k, i in enumerate(node.inputs):
                if not (node.op is CUSTOM and k == 0):
                    keep[i.index] = 1
    return [n for n in nodes if keep[n.index]]


def _forward(picture, graph, nodes, ev, roots):
    edges = []   # (source, consumer, slot)
    for node in _visible(nodes, roots):
        if node.op is ops.INPUT:
            picture.box(_key(node), "input", node.name)
        elif node.op is not ops.CONST:
            picture.box(_key(node), "op", op_label(node), picture.where(node))
            folded = _folded_const(node) is not None
            for slot, source in enumerate(node.inputs):
                if node.op is CUSTOM and slot == 0:
                    continue
                if source.op is ops.CONST:
                    if not folded:
                        _const_wire(picture, picture.keys[_key(node)], source, ev)
                    continue
                edges.append((source, node, slot))
    fanout = {}
    for source, _, _ in edges:
        fanout[source] = fanout.get(source, 0) + 1
    for _, out in graph.outputs:
        fanout[out] = fanout.get(out, 0) + 1
    for source, node, slot in edges:
        grad = None
        if ev is not None:
            grad = ev.grad(source) if fanout[source] == 1 else ev.edge(node, slot)
        picture.wires.append(_wire(source, _key(node), ev, grad, forward=True))
    for k, (name, out) in enumerate(graph.outputs):
        sink = picture.box(f"out{k}", "output", name)
        grad = None
        if ev is not None and k == 0:
            grad = ev.values[ev.seed]
        if out.op is ops.CONST:
            _const_wire(picture, sink, out, ev)
        else:
            wire = _wire(out, sink.key, ev, grad, forward=k == 0)
            if wire.name == name:
                wire.name = ""
            picture.wires.append(wire)


def _backward(picture, adjoints, grads, count, gradients, names, ev, refs):
    """The adjoint nodes; the forward values they read are the forward boxes
    (`both`) or, in the backward view alone, leaves named as in the generated code."""
    def wire(source, head):
        if source.op is ops.CONST:
            _const_wire(picture, head, source, ev)
            return
        w = _wire(source, head.key, ev, None, names, count, gradients)
        if source.index < count and refs:   # the leaf shows the name
            w.tail = picture.box(f"r{source.index}", "ref", names.get(source, source.name or "?"),
                                 picture.where(source)).key
            w.name = ""
        picture.wires.append(w)
        return w

    for node in adjoints:
        if node.op is ops.INPUT:
            picture.box(_key(node), "input", node.name)
            continue
        note = node.origin[1] if node.origin and node.origin[1] else ""
        label = "+" if note == "copy gate adds" else op_label(node, names)
        box = picture.box(_key(node), "backward", label, picture.where(node.origin[0]) if node.origin else (),
                          note)
        folded = _folded_const(node) is not None
        for source in node.inputs:
            if not (source.op is ops.CONST and folded):
                wire(source, box)
    for w, node in grads.items():
        sink = picture.box(f"grad{w.index}", "output", f"grad_{w.name}")
        made = wire(node, sink)
        if made is not None and made.name == sink.label:
            made.name = ""


def _key(node):
    return f"n{node.index}"


def _wire(source, head, ev, grad, names=None, count=None, gradients=(), forward=False):
    """A wire carrying `source`'s value; the values the backward pass computes (nodes from
    `count` on) are named as in the generated code, and `gradients` are drawn as such."""
    backward = source in gradients
    if count is not None and source.index >= count:
        name = names.get(source, "")
    else:
        name = source.name if source.op is not ops.INPUT and source.name else ""
    return Wire(_key(source), head, source.shape, None if ev is None else ev.values[source], grad,
                name, backward, source, forward=forward)


def _const_wire(picture, head, const, ev):
    """A constant drawn where it is used (one box per use, so no long wires)."""
    key, k = f"c{head.key}_0", 0
    while key in picture.keys:
        k += 1
        key = f"c{head.key}_{k}"
    box = picture.box(key, "const", _const_text(ops.const_value(const)), head.where)
    value = None if ev is None else ev.values.get(const)
    picture.wires.append(Wire(box.key, head.key, (), value, None, "", False, const))


def _backward_structure(graph, wrt):
    """Reverse mode on a copy, as Evaluation does, when there are no values."""
    count, first = len(graph.nodes), len(graph.adjoints)
    g, _, adjoints = differentiate(graph, list(graph.inputs))
    return g, count, g.adjoints[first:], {w: adjoints[w] for w in resolve_wrt(graph, wrt)}


def _names(bgraph, count, records):
    """Names as in the generated code: the lowering's for forward values, and
    grad_<value> for an adjoint, after the first value it is the gradient of
    (t0, t1, ... for the few adjoint nodes that are not one)."""
    names = value_names(bgraph)
    for node in bgraph.nodes:
        if node.op is ops.INPUT:
            names[node] = node.name
    namer = Namer(set(names.values()) | {n.name for n in bgraph.nodes if n.name}, prefix="t")
    first = {}
    for rec in records:
        first.setdefault(rec.adjoint, rec.forward)
    for node in bgraph.nodes[count:]:
        if node in names or node.op is ops.CONST:
            continue
        forward = first.get(node)
        names[node] = namer.temp() if forward is None else \
            namer.fresh("grad_" + names.get(forward, forward.name or "s"))
    return names


# ---- labels --------------------------------------------------------------------------

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_INFIX = {"+": True, "*": True, "-": False, "/": False, "**": False,   # symbol: commutative
          ">": False, "<": False, ">=": False, "<=": False, "==": True}


def op_label(node, names=None):
    """The gate's symbol, as on the slides: +, *, exp, 1/x, σ, max, @, Σ."""
    op = node.op
    if op is CUSTOM:
        return node.attr["label"].split(" gate")[0] or "f"
    if op is ops.EXPR:
        return _formula_text(node, names or {})
    if op in (SUM, MEAN, MAX):
        axes = node.attr["axis"]
        if len(axes) == node.inputs[0].ndim:
            return op.symbol
        return op.symbol + ",".join(str(a).translate(_SUBSCRIPTS) for a in axes)
    if op is GETITEM:
        return f"[{index_to_python(node.attr['index'])}]"
    if op is TRANSPOSE:
        axes = node.attr["axes"]
        return "T" if axes == tuple(reversed(range(len(axes)))) else f"T{axes}"
    folded = _folded_const(node)
    return folded if folded is not None else (op.symbol or op.name)


def _formula_text(node, names):
    """A fused formula as the generated code prints it, over its inputs' names:
    `grad_s3*x1`, `where(s2 > 0, grad_h, 0)`."""
    formula = node.attr["expr"]
    args = {symbolic.ARGS[k]: names.get(i, i.name or chr(ord("a") + k)) for k, i in enumerate(node.inputs)}
    args.update({s: str(s) for s in formula.free_symbols if s not in args})   # dimensions: B
    functions = {k: v.removeprefix("np.") for k, v in NUMPY.functions("np").items()}
    try:
        return symbolic.Printer(functions, args)(formula)
    except NotImplementedError:
        return str(formula)


def _folded_const(node):
    """`+1`, `*-1`, `1/x`, `max(0, x)`: a binary gate with one constant input is
    labelled with it, as the lecture draws the sigmoid circuit."""
    op = node.op
    if not op.elementwise or op is ops.EXPR or len(node.inputs) != 2:
        return None
    consts = [k for k, i in enumerate(node.inputs) if i.op is ops.CONST]
    if len(consts) != 1:
        return None
    k = consts[0]
    c = _const_text(ops.const_value(node.inputs[k]))
    sym = op.symbol or op.name
    if sym in _INFIX:
        if k == 1 or _INFIX[sym]:
            return f"{sym}{c}"
        return f"{c}{sym}x"
    return f"{sym}({c}, x)" if k == 0 else f"{sym}(x, {c})"


def _const_text(value):
    value = sp.sympify(value)
    if value.is_Integer or value.is_Rational:
        return str(value)
    if value.is_number:
        return f"{float(value):g}"
    return str(value)


# ---- where each wire's label sits --------------------------------------------------

def _place_wires(picture):
    """A wire's label sits in the innermost cluster holding both of its ends."""
    where = {b.key: b.where for b in picture.boxes}
    for w in picture.wires:
        a, b = where.get(w.tail, ()), where.get(w.head, ())
        common = []
        for x, y in zip(a, b):
            if x != y:
                break
            common.append(x)
        w.where = tuple(common)
