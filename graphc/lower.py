"""Lowering: a graph becomes flat statements `name = expression  # comment`.

Names are the lecture's: inputs and named values keep their names, the
intermediates are s0, s1, ..., and the adjoint of x is grad_x. A name the user
picked always wins; generated names step around it (s0 taken: s1), and so does
the NumPy module alias (an input called np: the module is imported as np_1).
How an op is printed comes from the target's table (targets.py); this module
makes every decision about order, names and comments.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import sympy as sp

from . import blas, fusion, loops, ops, symbolic
from .fusion import through_aliases as _through_aliases
from .ir import format_shape, size_of
from .structural import CUSTOM, STOP


class Namer:
    """Hands out unique identifiers; reserved ones are never handed out."""

    def __init__(self, reserved=()):
        self.taken = set(reserved)
        self.counter = 0

    def copy(self):
        n = Namer(self.taken)
        n.counter = self.counter
        return n

    def take(self, name):
        self.taken.add(name)
        return name

    def fresh(self, base):
        if base not in self.taken:
            return self.take(base)
        k = 1
        while f"{base}_{k}" in self.taken:
            k += 1
        return self.take(f"{base}_{k}")

    def temp(self):
        while f"s{self.counter}" in self.taken:
            self.counter += 1
        return self.take(f"s{self.counter}")


@dataclass
class Statement:
    target: str
    expr: str
    comment: str = ""
    extra: list = field(default_factory=list)   # follow-up lines (a scatter's assignment, a loop;
                                                 # with no target, the lines are the statement)
    alias: bool = False                          # `grad_s2 = grad_s3`: only a second name


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


@dataclass
class Function:
    name: str
    params: list          # positional inputs, in order
    statements: list
    returns: str
    seed: str | None = None   # the keyword-only grad_out: None, "required" or its default "1.0"
    parallel: bool = False    # whether a loop is parallel (Numba's parallel=True)
    threads_when: str | None = None   # the test for taking the parallel twin at run time


def _threads_when(ctx):
    """`256*x.shape[0] >= 262144`: when a call is large enough for threads to share the loops
    of symbolic size (None where there are none, or threads share every loop anyway). A
    size that is a constant times another (10*N beside 256*N) needs no test of its own."""
    if ctx.parallel or not ctx.thread_sizes:
        return None
    sizes = list(dict.fromkeys(ctx.thread_sizes))
    largest = [s for s in sizes if not any((t / s).is_number and t / s > 1 for t in sizes)]
    return " or ".join(f"{ctx.table.dimension(s, ctx)} >= {loops.PARALLEL_MIN}" for s in largest)


def _is_hidden(node):
    """Nodes that need no statement: inputs, constants, pure aliases."""
    return node.op.kind in ("input", "const", "alias")


class Lowering:
    """Names for one graph's forward nodes, shared by every function of a module."""

    def __init__(self, graph, table, dtype="float64", reserved_extra=()):
        self.graph = graph
        self.table = table
        self.dtype = dtype
        user = [n.name for n in graph.nodes if n.name] + list(graph.output_names)
        self.namer = Namer(user + list(reserved_extra))
        self.np = self.namer.fresh("np")
        self.definitions = []   # module-level code a target adds while printing (CUDA kernels)
        self.blas = blas.choice() if table.chooses_blas else None   # what matrix products call
        if table.fuses:   # loops: the module's numba alias, index names, a range no input shadows
            self.numba = self.namer.fresh("numba")
            self.index_names = [self.namer.fresh(c) for c in "ijklmn"] + \
                [self.namer.fresh(f"i{k}") for k in range(6, 32)]
            self.prange = f"{self.numba}.prange"
            self.range = "range" if "range" not in self.namer.taken else self.prange
            self.threads = not (loops.PARFOR_NAMES & set(user))
        outputs = dict(graph.outputs)   # an output the graph lets overwrite an input's array
        self.in_place = {_through_aliases(outputs[out]): graph.input(inp) for out, inp in graph.in_place.items()}
        self.dims = {}
        for node in graph.inputs:
            for axis, d in enumerate(node.shape):
                for sym in getattr(d, "free_symbols", ()):
                    self.dims.setdefault(sym, f"{node.name}.shape[{axis}]")
        self.names = {}
        for name, node in graph.outputs:
            node = _through_aliases(node)
            if node.name is None and node.op.kind not in ("input", "const") and node not in self.names:
                self.names[node] = name
        for node in graph.live_nodes():
            if node.name:
                self.names[node] = node.name
            elif node not in self.names and not _is_hidden(node):
                self.names[node] = self.namer.temp()

    # -- one function
    def function(self, fname, params, graph, outputs, grads=None, returns=None, seed=None):
        """Statements computing `outputs` [(name, node)] and `grads` [(input, node)]
        from `graph`, which extends the forward graph this Lowering named."""
        namer, names = self.namer.copy(), dict(self.names)
        roots = [n for _, n in outputs] + [n for _, n in (grads or [])]
        live = graph.live_nodes(roots)
        live_set = set(live)
        for node in live:
            if node.op is ops.INPUT:
                names.setdefault(node, node.name)
        alias_of, aliases = {}, {}
        recorded = {(rec.forward, rec.adjoint) for rec in graph.adjoints}
        for inp, node in grads or []:   # zeros for inputs the output does not depend on
            if (inp, node) not in recorded and node not in names and not _is_hidden(node):
                names[node] = alias_of[(inp, node)] = namer.fresh("grad_" + inp.name)
        # adjoints: the first forward node to own an adjoint names it grad_<node>;
        # the others become aliases (an add gate distributes the same gradient)
        for rec in graph.adjoints:
            if rec.adjoint not in live_set:
                continue
            forward = _through_aliases(rec.forward)
            want = "grad_" + names.get(forward, forward.name or "s")
            if rec.adjoint not in names and not _is_hidden(rec.adjoint):
                names[rec.adjoint] = namer.fresh(want)
                alias_of[(rec.forward, rec.adjoint)] = names[rec.adjoint]
            elif names.get(rec.adjoint) == want:
                alias_of[(rec.forward, rec.adjoint)] = want
            else:
                name = namer.fresh(want)
                alias_of[(rec.forward, rec.adjoint)] = name
                aliases.setdefault(rec.adjoint, []).append((name, rec))
        for node in live:
            if node not in names and not _is_hidden(node):
                names[node] = namer.temp()

        ctx = _Context(self, names, alias_of)
        ctx.returned = {_through_aliases(n) for n in roots}
        ctx.readers = {p: [n for n in live if p in n.inputs] for p in self.in_place.values()}
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
        return Function(fname, list(params), _drop_unused_aliases(body, out_refs + grad_refs),
                        returns(out_refs, grad_refs), seed, ctx.parallel, _threads_when(ctx))

    def _units(self, ctx, live, roots):
        """(nodes, statements) in order: a statement per node, or, on a target that
        fuses, a loop per group of same-shape elementwise nodes."""
        if not self.table.fuses:
            for node in live:
                if not _is_hidden(node):
                    yield [node], [self._statement(ctx, node)]
            return
        # returned values are read after their loop; so is anything a statement outside the
        # loop reads, under its own name or an alias (fusion.schedule sees those readers)
        units, virtual = fusion.schedule(live, _is_hidden, {_through_aliases(n) for n in roots})
        for unit in units:
            if isinstance(unit, fusion.Group):
                yield unit.members + unit.reductions, self.table.group_statements(unit, virtual, ctx, Statement)
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
        printed = self.table.print_node(node, [ctx.arg(node, i) for i in node.inputs], ctx, name)
        expr, extra = printed if isinstance(printed, tuple) else (printed, [])
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
            return _local_gradient_note(self.table, gate.op, gate.attrs, len(gate.inputs))
        return f"{gate.op.name} gate"


@functools.lru_cache(maxsize=4096)
def _local_gradient_note(table, op, attrs, n_inputs):
    """`sigmoid gate: local gradient y*(1 - y)`, printed once per op and attributes."""
    rules = op.partials_for(attrs, n_inputs)
    letters = ["x"] if n_inputs == 1 else [chr(ord("a") + i) for i in range(n_inputs)]
    printer = symbolic.Printer(table.functions("np"), {**dict(zip(symbolic.ARGS, letters)), symbolic.Y: "y"})
    return f"{op.name} gate: local gradient {', '.join(printer(r) for r in rules)}"


class _Context:
    """What a target's printer may ask while printing one node."""

    def __init__(self, lowering, names, alias_of):
        self.np = lowering.np
        self.dtype = lowering.dtype
        self.dims = lowering.dims
        self.names = names
        self.alias_of = alias_of
        self.table = lowering.table
        self.index_names = getattr(lowering, "index_names", None)
        self.range = getattr(lowering, "range", None)
        self.prange = getattr(lowering, "prange", None)
        self.threads = getattr(lowering, "threads", False)
        self.blas = lowering.blas
        self.parallel = False   # set by a loop that runs on several threads
        self.thread_sizes = []  # element counts of symbolic loops that threads may share
        self.in_place = getattr(lowering, "in_place", {})
        self.returned, self.readers = set(), {}   # of the function being lowered (in-place writes)
        self.namer = lowering.namer          # for module-level names a target adds (kernels)
        self.definitions = lowering.definitions

    def ref(self, node):
        node = _through_aliases(node)
        if node.op is ops.CONST:
            return self.table.constant(ops.const_value(node), self)
        return self.names[node]

    def arg(self, user, node):
        """How `user` refers to its input `node`: inside gate m's VJP the upstream
        gradient is called grad_m, as the lecture writes it."""
        if user.origin is not None:
            name = self.alias_of.get((user.origin[0], node))
            if name is not None:
                return name
        return self.ref(node)


def dump(graph, title=None):
    """The graph as text, one node a line, with shapes and sizes (like a jaxpr)."""
    names = _dump_names(graph)
    notes = {}

    def ref(n):
        if n.op is STOP:
            return f"stop_gradient({ref(n.inputs[0])})"
        if n.op is CUSTOM:
            notes[_through_aliases(n)] = f"  # gradient by rule: {n.attr['label']}"
        n = _through_aliases(n)
        return str(ops.const_value(n)) if n.op is ops.CONST else names[n]

    ins = ", ".join(f"{n.name}: {format_shape(n.shape)}" for n in graph.inputs)
    head = title or f"graph {graph.name}({ins}) -> {', '.join(graph.output_names)}"
    lines = [head + (f"    # {graph.source}" if graph.source else "")]
    outs = [(name, ref(node)) for name, node in graph.outputs]
    rows = []
    for node in graph.live_nodes():
        if _is_hidden(node):
            continue
        attrs = ", ".join(f"{k}={_attr_text(v)}" for k, v in node.attrs if k != "rule")
        call = f"{node.op.name}({', '.join(ref(i) for i in node.inputs)}" + (f"; {attrs}" if attrs else "") + ")"
        if node.op is ops.EXPR:   # a fused formula reads best with its arguments' names in it
            call = str(node.attr["expr"].subs({symbolic.ARGS[k]: sp.Symbol(ref(i)) for k, i in
                                               enumerate(node.inputs)}, simultaneous=True))
        rows.append((node, names[node], format_shape(node.shape), str(size_of(node.shape)), call))
    w0 = max((len(r[1]) for r in rows), default=1)
    w1 = max((len(r[2]) for r in rows), default=1)
    w2 = max((len(r[3]) for r in rows), default=1)
    backward = next((r[0] for r in rows if r[0].origin is not None), None)
    for node, name, shape, size, call in rows:
        if node is backward:
            lines.append("  # backward: the adjoints, from the output back to the inputs")
        lines.append(f"  {name:<{w0}} : {shape:<{w1}} {size:>{w2}} = {call}{notes.get(node, '')}")
    for name, text in outs:
        if text != name:
            lines.append(f"  {name} = {text}")
    return "\n".join(lines)


def _dump_names(graph):
    """The lowering's names, but an adjoint is grad_<value> as in the generated code,
    named after the first value it is the gradient of (grad_s3, then grad_w2 = grad_s3)."""
    from .targets import NUMPY
    names = Lowering(graph, NUMPY).names
    first = {}
    for rec in graph.adjoints:
        first.setdefault(rec.adjoint, _through_aliases(rec.forward))
    namer = Namer([n.name for n in graph.nodes if n.name] +
                  [name for name, n in graph.outputs if _through_aliases(n).origin is None])
    for node in graph.live_nodes():
        if node not in names:
            continue
        if node.origin is None or node.name:
            namer.take(names[node])
        else:
            forward = first.get(node)
            names[node] = namer.temp() if forward is None else \
                namer.fresh("grad_" + (names.get(forward) or forward.name or "s"))
    return names


def _attr_text(v):
    if hasattr(v, "free_symbols") and getattr(v, "is_Atom", False) is False and v.free_symbols:
        return str(v).replace("_a", "a")
    return str(v)
