"""Lowering: a graph becomes functions of flat statements `name = expression  # comment`.

Names are the lecture's (naming.py): inputs and named values keep their names, the
intermediates are s0, s1, ..., and the adjoint of x is grad_x. A name the user picked
always wins; generated names step around it (s0 taken: s1), and so does the NumPy
module alias (an input called np: the module is imported as np_1). This module decides
the names, the comments and which statements a function needs; the target decides how
each op is printed (its printer table) and, on a target that fuses, how a fused group
(fusion.py chooses the groups and their order) becomes a loop or a kernel.
"""
from __future__ import annotations

import functools
import re

from ..graph import ops, symbolic
from ..graph.names import Namer
from ..graph.structural import CUSTOM
from . import fusion
from .naming import is_hidden, through_aliases, user_names, value_names
from .program import Function, Statement

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def all_user_names(graph):
    """The names the user chose in `graph` and in the step graphs of its scans."""
    names = user_names(graph)
    for node in graph.nodes:
        if node.op.siblings and node.attr["out"] == 0:
            names += all_user_names(node.attr["body"])
    return names


def _drop_unused_aliases(body, returned):
    """Aliases no later line reads (a seed's name no gradient needs) are left out."""
    used, kept = set(returned), []
    for st in reversed(body):
        if st.alias and st.target not in used:
            continue
        kept.append(st)
        used.update(_IDENTIFIER.findall(st.expr))
        for line in st.extra:
            used.update(_IDENTIFIER.findall(line))
    return kept[::-1]


class Lowering:
    """Names for one graph's forward nodes, shared by every function of a module.

    `target` is the backend (graphc.backends): its printer table prints each op, and it
    reserves the names its code needs (`target.reserve`: a loop target's module alias,
    loop indices and range functions), which the values' names step around."""

    def __init__(self, graph, target, dtype="float64", reserved_extra=(), parent=None):
        self.graph = graph
        self.target = target
        self.dtype = dtype
        user = all_user_names(graph)
        if parent is None:
            self.namer = Namer(user + list(reserved_extra))
            self.np = self.namer.fresh(target.module_alias)   # numpy's np (math on the math target)
            self.definitions = []   # module-level code a target adds while printing (CUDA kernels)
            self.blas = target.blas()   # what matrix products call, where the target chooses
            more_aliases, self.loop = target.reserve(self.namer, user)
            self.aliases = {"np": self.np, **more_aliases}   # the names the module imports its libraries as
            self.helpers, self._helper_names = [], {}   # the scans' step functions, by step graph
            self.module_namer = self.namer   # module-level names (kernels), one set for all functions
        else:   # a scan's step, printed as a function of the same module: the module's names
            self.namer = parent.base_namer.copy()
            for name in user:
                self.namer.take(name)
            for key in ("np", "definitions", "blas", "loop", "aliases", "helpers", "_helper_names", "module_namer"):
                setattr(self, key, getattr(parent, key))
        self.base_namer = self.namer.copy()   # the module's names, before this graph's values took theirs
        outputs = dict(graph.outputs)   # an output the graph lets overwrite an input's array
        self.in_place = {through_aliases(outputs[out]): graph.input(inp) for out, inp in graph.in_place.items()}
        self.dims = {}
        for node in graph.inputs:
            for axis, d in enumerate(node.shape):
                for sym in getattr(d, "free_symbols", ()):
                    self.dims.setdefault(sym, f"{node.name}.shape[{axis}]")
        self.names = value_names(graph, self.namer)

    # -- one function
    def function(self, fname, params, graph, outputs, grads=None, returns=None, seed=None):
        """Statements computing `outputs` [(name, node)] and `grads` [(input, node)]
        from `graph`, which extends the forward graph this Lowering named."""
        roots = [n for _, n in outputs] + [n for _, n in (grads or [])]
        live = graph.live_nodes(roots)
        namer, names = self.namer.copy(), dict(self.names)
        alias_of, aliases = self._adjoint_names(graph, live, grads, namer, names)
        ctx = _Context(self, names, alias_of)
        ctx.returned = {through_aliases(n) for n in roots}
        ctx.live, ctx.local = set(live), namer
        for node in live:
            if node.op.siblings:
                ctx.siblings.setdefault(ops.sibling_key(node), []).append(node)
        ctx.readers = {p: [n for n in live if p in n.inputs] for p in self.in_place.values()}
        body = self._body(ctx, live, roots, aliases)
        out_refs = []
        for name, node in outputs:
            ref = ctx.ref(node)
            if ref != name:
                body.append(Statement(name, ref, "output"))
            out_refs.append(name)
        grad_refs = []
        for inp, node in grads or []:
            name = alias_of.get((inp, node))
            if name is None:
                name = namer.fresh("grad_" + inp.name)
                body.append(Statement(name, ctx.ref(node), f"d/d{inp.name}"))
            grad_refs.append(name)
        threads_when = self.target.threads_when(ctx, body)   # settles which loops threads share
        return Function(fname, list(params), _drop_unused_aliases(body, out_refs + grad_refs),
                        returns(out_refs, grad_refs), seed, ctx.parallel, threads_when)

    def helper(self, body):
        """The name of the module's function computing one step of a scan whose step graph
        is `body` (lowered once per module, however many loops call it)."""
        name = self._helper_names.get(body)
        if name is None:
            base, taken = f"__step_{body.name}", set(self._helper_names.values())
            name = self._helper_names[body] = next(f"{base}{k or ''}" for k in range(len(taken) + 1)
                                                   if f"{base}{k or ''}" not in taken)
            low = Lowering(body, self.target, self.dtype, parent=self)
            self.helpers.append(low.function(name, body.input_names, body, body.outputs,
                                             returns=lambda outs, grads: ", ".join(outs)))
        return name

    def _adjoint_names(self, graph, live, grads, namer, names):
        """Names for the adjoints (added to `names`): the first forward node to own an
        adjoint names it grad_<node>; the others become aliases (an add gate distributes
        the same gradient). Returns ({(forward, adjoint): name}, {adjoint: [(alias, record)]})."""
        for node in live:
            if node.op is ops.INPUT:
                names.setdefault(node, node.name)
        live_set = set(live)
        alias_of, aliases = {}, {}
        recorded = {(rec.forward, rec.adjoint) for rec in graph.adjoints}
        for inp, node in grads or []:   # zeros for inputs the output does not depend on
            if (inp, node) not in recorded and node not in names and not is_hidden(node):
                names[node] = alias_of[(inp, node)] = namer.fresh("grad_" + inp.name)
        for rec in graph.adjoints:
            if rec.adjoint not in live_set:
                continue
            forward = through_aliases(rec.forward)
            want = "grad_" + names.get(forward, forward.name or "s")
            if rec.adjoint not in names and not is_hidden(rec.adjoint):
                names[rec.adjoint] = namer.fresh(want)
                alias_of[(rec.forward, rec.adjoint)] = names[rec.adjoint]
            elif names.get(rec.adjoint) == want:
                alias_of[(rec.forward, rec.adjoint)] = want
            else:
                name = namer.fresh(want)
                alias_of[(rec.forward, rec.adjoint)] = name
                aliases.setdefault(rec.adjoint, []).append((name, rec))
        for node in live:
            if node not in names and not is_hidden(node):
                names[node] = namer.temp()
        return alias_of, aliases

    def _body(self, ctx, live, roots, aliases):
        """The statements in order, each alias of an adjoint right after it is computed."""
        body = []
        # aliases of values computed before the backward part (inputs, constants,
        # forward nodes that a folded gradient turned out to be) open that part
        pending = []
        for anchor, items in aliases.items():
            if anchor.origin is None or anchor.op is ops.CONST:   # a constant no gate computes
                pending.extend(items)
        for unit_nodes, statements in self._units(ctx, live, roots):
            if pending and any(n.origin is not None for n in unit_nodes):
                body.extend(self._alias_lines(ctx, pending))
                pending = []
            body.extend(statements)
            for node in unit_nodes:
                if node.origin is not None:
                    body.extend(self._alias_lines(ctx, aliases.get(node, [])))
        body.extend(self._alias_lines(ctx, pending))
        return body

    def _units(self, ctx, live, roots):
        """(nodes, statements) in order: a statement per node, or, on a target that
        fuses, a loop per group of same-shape elementwise nodes."""
        if not self.target.fuses:
            for node in live:
                if not is_hidden(node):
                    yield [node], [self._statement(ctx, node)]
            return
        # returned values are read after their loop; so is anything a statement outside the
        # loop reads, under its own name or an alias (fusion.schedule sees those readers)
        units, virtual = fusion.schedule(live, is_hidden, {through_aliases(n) for n in roots})
        for unit in units:
            if isinstance(unit, fusion.Group):
                yield unit.members + unit.reductions, self.target.group_statements(unit, virtual, ctx, Statement)
            else:
                yield [unit], [self._statement(ctx, unit)]

    def _alias_lines(self, ctx, items):
        out = []
        for name, rec in items:
            source = ctx.ref(rec.adjoint)
            if rec.via is not None and (rec.via, rec.adjoint) in ctx.alias_of:
                source = ctx.alias_of[(rec.via, rec.adjoint)]
            if rec.gate is not None:
                note = self._gate_note(rec.gate)
            elif rec.adjoint.op is ops.CONST:
                note = "seed: d/d itself is 1"
            elif rec.adjoint.op is ops.INPUT:
                note = "seed: the upstream gradient"
            else:
                note = "copy gate adds"
            out.append(Statement(name, source, note, alias=True))
        return out

    def _statement(self, ctx, node):
        name = ctx.names[node]
        printed = self.target.print_node(node, [ctx.arg(node, i) for i in node.inputs], ctx, name)
        expr, extra = printed if isinstance(printed, tuple) else (printed, [])
        if not expr:   # lines of their own (a scan's loop), or none (a sibling its loop computes)
            return Statement("", "", "", extra)
        return Statement(name, expr, self._comment(node), extra)

    def _comment(self, node):
        if node.origin is None:
            return node.op.name
        gate, note = node.origin
        return note or self._gate_note(gate)

    def _gate_note(self, gate):
        """The lecture's words for a gate's backward line."""
        if gate.op.gate or gate.op is CUSTOM:
            return gate.op.gate or gate.attr["label"]
        if gate.op.elementwise and gate.op is not ops.EXPR:
            return _local_gradient_note(self.target, gate.op, gate.attrs, len(gate.inputs))
        return f"{gate.op.name} gate"


@functools.lru_cache(maxsize=4096)
def _local_gradient_note(target, op, attrs, n_inputs):
    """`sigmoid gate: local gradient y*(1 - y)`, printed once per op and attributes."""
    rules = op.partials_for(attrs, n_inputs)
    letters = ["x"] if n_inputs == 1 else [chr(ord("a") + i) for i in range(n_inputs)]
    printer = symbolic.Printer(target.functions(target.module_alias), {**dict(zip(symbolic.ARGS, letters)), symbolic.Y: "y"})
    return f"{op.name} gate: local gradient {', '.join(printer(r) for r in rules)}"


class _Context:
    """What a target's printer may ask while printing one node."""

    def __init__(self, lowering, names, alias_of):
        self.np = lowering.np
        self.dtype = lowering.dtype
        self.dims = lowering.dims
        self.names = names
        self.alias_of = alias_of
        self.target = lowering.target
        self.loop = lowering.loop   # a loop target's index names and range functions (target.reserve)
        self.blas = lowering.blas
        self.parallel = False   # set by a loop that runs on several threads
        self.thread_sizes = []  # element counts of symbolic loops that threads may share
        self.in_place = lowering.in_place
        self.returned, self.readers = set(), {}   # of the function being lowered (in-place writes)
        self.namer = lowering.module_namer   # for module-level names a target adds (kernels)
        self.definitions = lowering.definitions
        self.lowering = lowering             # its helper(): a scan's step as a function of the module
        self.live, self.local = set(), None  # the function's live nodes and its Namer
        self.siblings = {}                   # ops.sibling_key -> the live siblings (a scan's outputs)

    def ref(self, node):
        node = through_aliases(node)
        if node.op is ops.CONST:
            return self.target.constant(ops.const_value(node), self)
        return self.names[node]

    def arg(self, user, node):
        """How `user` refers to its input `node`: inside gate m's VJP the upstream
        gradient is called grad_m, as the lecture writes it."""
        if user.origin is not None:
            name = self.alias_of.get((user.origin[0], node))
            if name is not None:
                return name
        return self.ref(node)
