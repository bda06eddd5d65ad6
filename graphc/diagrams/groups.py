"""Boxes drawn as one: each conv or pool layer always, each gc.scope when collapsed.

A layer (`gc.conv2d`, `gc.conv1d`, `gc.max_pool2d`, `gc.avg_pool2d`) is built from several
nodes (im2col, reshapes, a matrix product, the bias); the functions stamp them with a
`Layer` scope entry, the last of their scope path, and a user reads a layer as one
operation, so it is one box labelled with what it is and its shapes (its forward nodes
one box, its adjoint nodes another). `collapse=True` draws each gc.scope as one box, a
layer inside it included. The wires into a box carry what enters it (a value once,
with the gradient the box sends back to it), the wires out of it what leaves it.
"""
from __future__ import annotations

from dataclasses import replace

from ..graph.conv import Layer
from ..graph.ir import format_shape
from ..graph.ops import sibling_key

_GROUPED = ("op", "backward", "const", "ref")
_BACKWARD = ("backward", "ref")   # a ref is a forward value the backward pass reads


def group(picture, collapse=False):
    """The picture with each layer (and, collapsed, each scope) as one box."""
    kinds = {b.key: b.kind for b in picture.boxes}
    readers = {}
    for w in picture.wires:
        readers.setdefault(w.tail, []).append(w.head)
    made = {b.key: _group_of(b, collapse, kinds.get(readers.get(b.key, [None])[0]) if b.kind == "const" else b.kind)
            for b in picture.boxes}
    groups, group_of, shown = {}, {}, {}
    for b in picture.boxes:
        if made[b.key] is None:
            continue
        key, box, name = made[b.key]
        # a forward value the backward pass reads outside its layer stays a leaf of its own
        if b.kind == "ref" and box[0] == "backward_layer" and \
                any((made[h] or (None,))[0] != key for h in readers.get(b.key, ())):
            continue
        group_of[b.key] = groups.setdefault(key, (f"s{len(groups)}",) + box)
        shown[b.key] = name
    if not group_of:
        return picture
    out = replace(picture, boxes=[], wires=[], keys={})
    inside = {}   # a collapsed scope's key: what is in it, for its small print
    for b in picture.boxes:
        joins = group_of.get(b.key)
        where = b.where[:-1] if b.where and isinstance(b.where[-1], Layer) else b.where   # a leaf: no cluster
        box = out.box(*joins) if joins else out.box(b.key, b.kind, b.label, where, b.note)
        if joins and box.kind == "group" and b.kind in ("op", "backward"):
            labels = inside.setdefault(box.key, [])
            if shown[b.key] not in labels:
                labels.append(shown[b.key])
    for key, labels in inside.items():
        out.keys[key].note = " ".join(labels[:6]) + (" …" if len(labels) > 6 else "")
    _merge_wires(picture, out, group_of)
    return out


def _group_of(box, collapse, side):
    """(key, (kind, label, where, note) of the box it joins, what it is called in a
    collapsed scope's small print), or None where the box stays itself."""
    path = box.where
    if box.kind not in _GROUPED or not path:
        return None
    layer = path[-1] if isinstance(path[-1], Layer) else None
    scopes = path[:-1] if layer is not None else path
    if collapse and scopes:   # the scope's note lists its ops (filled in by group)
        return scopes, ("group", scopes[-1], scopes[:-1], ""), layer or box.label
    if layer is None:
        return None
    shapes = [format_shape(s) for s in layer.shapes]
    key = (scopes, id(layer), side in _BACKWARD)   # each call has an entry of its own (layer_scopes)
    if side in _BACKWARD:
        return key, ("backward_layer", layer, scopes, "backward " + " → ".join(shapes[::-1])), layer
    return key, ("layer", layer, scopes, " → ".join(shapes)), layer


def layer_scopes(nodes):
    """{node: the scope path it is drawn in} for the nodes stamped with a Layer entry. Each call
    of a layer is the node it returns (its entry marked `output`) and the stamped nodes that
    node reads, back to another call's output: one fresh entry per call, since an inlined
    graph's calls share their entries. A node two calls share (interning: the same weights'
    reshape) is drawn between them, in no layer."""
    calls = {}   # node: the outputs of the calls that read it
    for node in reversed(nodes):
        layer = _entry(node)
        if layer is None:
            continue
        if layer.output:
            calls.setdefault(node, []).append(node)
            for other in _siblings(node, nodes):   # a scan's other outputs are the same call
                calls.setdefault(other, []).append(node)
        for i in node.inputs:
            entry = _entry(i)
            if entry is not None and not entry.output:
                mine = calls.setdefault(i, [])
                mine += [c for c in calls.get(node, ()) if c not in mine]
    own, scopes = {}, {}
    for node in nodes:
        layer = _entry(node)
        if layer is None:
            continue
        outs = calls.get(node, ())
        if len(outs) == 1:
            out = outs[0]
            if out not in own:
                own[out] = Layer(str(out.scope[-1]), out.scope[-1].shapes)
            scopes[node] = node.scope[:-1] + (own[out],)
        else:
            scopes[node] = node.scope[:-1]
    return scopes


def _siblings(node, nodes):
    """The other outputs of the computation `node` is one of (a scan's)."""
    if not node.op.siblings:
        return []
    key = sibling_key(node)
    return [n for n in nodes if n is not node and n.op.siblings and sibling_key(n) == key]


def _entry(node):
    return node.scope[-1] if node.scope and isinstance(node.scope[-1], Layer) else None


def _merge_wires(picture, out, group_of):
    """Wires inside a box vanish; wires from one value into the same box become one,
    carrying the sum of the gradients the box sends back along them."""
    merged, group_keys = {}, {g[0] for g in group_of.values()}
    for w in picture.wires:
        tail = group_of[w.tail][0] if w.tail in group_of else w.tail
        head = group_of[w.head][0] if w.head in group_of else w.head
        if tail == head:
            continue
        key = (w.tail, head)
        if key in merged and head in group_keys:
            first = merged[key]
            if first.grad is None or w.grad is None:
                first.grad = first.grad if w.grad is None else w.grad
            else:
                first.grad = first.grad + w.grad
            continue
        new = replace(w, tail=tail, head=head)
        merged.setdefault(key, new)
        out.wires.append(new)
