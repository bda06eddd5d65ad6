"""Elementwise fusion for the compiled targets: which nodes share one loop.

The NumPy target prints one statement per node. The Numba and CUDA targets
group elementwise nodes of the same shape into one loop (one kernel on the
GPU), so that a chain like `tanh(sigmoid(x*a + b) * x) ** 2` reads and writes
memory once instead of once per op. This module only decides the grouping and
the order; the targets print it.

The schedule is one pass over the nodes in topological order. Elementwise
nodes join the open group of their shape; anything that reads a group's value
from outside (a matmul, a node of another shape, a reduction result read by
the same loop) closes the group first, so every group is emitted after all of
its inputs and before all of its consumers. A sum or mean of a whole group
member to a scalar folds into the loop as an accumulator, and a broadcast that
only fused loops read is never materialised: the loops index its source.
"""
from __future__ import annotations

from ..autodiff.reverse import RUNNING_SUM
from ..graph import ops
from ..graph.lazy import sp
from .naming import through_aliases


def is_loop_member(node):
    """Elementwise nodes that are arrays go into loops; scalars stay plain statements."""
    return node.op.elementwise and node.shape != ()


def is_folded_reduction(node):
    """A sum or mean over every axis to a scalar: an accumulator inside a loop."""
    return (node.op.name in ("sum", "mean") and node.shape == ()
            and len(node.attr["axis"]) == node.inputs[0].ndim)


class Group:
    """Same-shape elementwise nodes computed by one loop, and the scalars it accumulates."""

    def __init__(self, shape):
        self.shape = shape
        self.members = []      # loop nodes, in order
        self.reductions = []   # folded sums and means, each of one member
        self.stored = set()    # members read after the loop: written to an array
        self.closed = False

    def __repr__(self):
        return f"Group({self.shape}, {[n.op.name for n in self.members]})"


def schedule(live, hidden, needed_after):
    """The order in which to emit `live` (a topological order): a list of nodes and Groups.

    `hidden` tells the nodes that need no statement (inputs, constants, aliases);
    `needed_after` holds the values a function returns. A group member is stored
    to an array if it is returned or read by anything outside its loop.
    """
    users = _users(live, hidden)
    virtual = {n for n in live if n.op.name in ("broadcast_like", "broadcast_to") and n not in needed_after
               and users.get(n) and all(is_loop_member(u) and u.shape == n.shape for u in users[n])}

    units, open_groups, group_of = [], {}, {}

    def close(group):
        if not group.closed:
            group.closed = True
            del open_groups[group.shape]
            units.append(group)

    def sources(node):
        """What a node reads, seen through aliases and virtual broadcasts."""
        for inp in node.inputs:
            inp = through_aliases(inp)
            if inp in virtual:
                inp = through_aliases(inp.inputs[0])
            yield inp

    for node in live:
        if hidden(node) or node in virtual:
            continue
        if is_loop_member(node):
            for src in sources(node):
                g = group_of.get(src)
                if g is not None and not g.closed and (g.shape != node.shape or src in g.reductions
                                                       or _adds_to_running_sum(node, src)):
                    close(g)
            group = open_groups.get(node.shape)
            if group is None:
                group = open_groups[node.shape] = Group(node.shape)
            group.members.append(node)
            group_of[node] = group
            continue
        src = through_aliases(node.inputs[0]) if node.inputs else None
        group = group_of.get(src)
        if is_folded_reduction(node) and group is not None and not group.closed and src in group.members:
            group.reductions.append(node)
            group_of[node] = group
            continue
        for src in sources(node):
            g = group_of.get(src)
            if g is not None and not g.closed:
                close(g)
        units.append(node)
    for group in list(open_groups.values()):
        close(group)
    _mark_stored(units, users, virtual, needed_after)
    return units, virtual


def _adds_to_running_sum(node, src):
    """Whether `node` adds a contribution to `src`, the running sum before it: each such
    add is a loop of its own, beside its contribution, so that the step it belongs to is
    the same from step to step (autodiff/reverse.py)."""
    return node.origin is not None and node.origin[1] == RUNNING_SUM and src is through_aliases(node.inputs[0])


def _users(live, hidden):
    """{node: the nodes with a statement that read it}, seen through aliases. An input read
    for its shape alone (the `like` of broadcast_like) is not read: a loop member that only
    gives a shape need not be stored to an array."""
    users = {}
    for node in live:
        if hidden(node):
            continue
        for k, inp in enumerate(node.inputs):
            if k not in node.op.shape_only:
                users.setdefault(through_aliases(inp), []).append(node)
    return users


def _mark_stored(units, users, virtual, needed_after):
    """A member is stored to an array if it is returned or read outside its loop."""
    for unit in units:
        if isinstance(unit, Group):
            members = set(unit.members)
            for m in unit.members:
                if m in needed_after or any(u not in members and u not in unit.reductions
                                            for u in _readers(m, users, virtual)):
                    unit.stored.add(m)


def _readers(node, users, virtual):
    """The nodes that read `node`, looking through the virtual broadcasts in between."""
    for u in users.get(node, ()):
        if u in virtual:
            yield from users.get(u, ())
        else:
            yield u


# ---- reading values inside a fused loop (a loop nest on the CPU, a kernel on the GPU) ----

def broadcast_index(shape, loop_shape, index):
    """How an array of `shape` is read at `index` of a loop over `loop_shape`."""
    offset = len(loop_shape) - len(shape)
    return ", ".join(index[offset + a] if sp.sympify(d) == sp.sympify(loop_shape[offset + a]) else "0"
                     for a, d in enumerate(shape))


def read(node, group, local, virtual, ctx, index=None):
    """How a loop body reads `node`: a local, an array element, a scalar or a constant."""
    node = through_aliases(node)
    if node in local:
        return local[node]
    if node in virtual:   # a broadcast nobody materialised: index its source
        node = through_aliases(node.inputs[0])
    if node.op is ops.CONST or node.shape == ():
        return ctx.ref(node)
    index = index or ctx.loop.index[:len(group.shape)]
    return f"{ctx.ref(node)}[{broadcast_index(node.shape, group.shape, index)}]"
