"""Loops for the Numba target: a fused group or a reduction as explicit nested
loops over array elements.

Inside a loop every value is a scalar: a member that only the loop reads is a
local (`s3 = s2[i, j] + b1[j]`), a member read after the loop is written to
its array (`s4[i, j] = ...`), an input of a smaller shape is indexed the
broadcasting way (`b1[j]`), and a folded sum is an accumulator (`s9 += ...`).
The outer loop is parallel (`prange`) where the work is large enough to share
out between threads.
"""
from __future__ import annotations

import re

import sympy as sp

from ...graph.ir import size_of
from ...lower.fusion import read
from ...lower.naming import through_aliases
from ...lower.program import commented
from ..base import atom, empty_max_check

# Elements from which a loop runs on threads (a loop of symbolic size: when a call brings
# that many, taking its function's parallel twin, module.py.j2). Below it they save little:
# a loop of simple arithmetic over 200,000 float32 (an MLP's weight update) takes tens of
# microseconds, and threads that then wait for work take the cores that the next matrix
# product's BLAS threads need (a training step went from 1.2 to 8 ms on 2 cores).
PARALLEL_MIN = 1 << 18
# In a function's parallel twin, a loop of symbolic size shares out only if no other such loop
# is SHARE_RATIO or more times as large: when a call is large enough for the largest loop to
# take the twin, a loop that much smaller reaches PARALLEL_MIN only with a batch that many
# times larger. On one thread it costs Numba a plain loop's compile, not a parallel one's
# (LeNet-5's twin: 26 parallel loops, 14 of them over 120 elements an example or fewer; its
# first result 39.5 s -> 34.3 s, its step as fast).
SHARE_RATIO = 16
# Numba's parallel lowering writes code of its own that uses these names; a value of the
# user's called so would shadow them, so such a graph's loops run on one thread
PARFOR_NAMES = frozenset({"np", "numba", "range", "sched"})


def is_large(shape):
    """Whether a loop over `shape` is worth threads whatever its symbolic dimensions are
    (they count as 1 here: a batch may be small; the call decides, see _loop_head)."""
    static = 1
    for d in shape:
        static *= d if isinstance(d, int) else 1
    return static >= PARALLEL_MIN


def threads_when(ctx, statements):
    """`256*x.shape[0] >= 262144`: when a call is large enough for threads to share the loops
    of symbolic size (None where there are none, or threads share every loop anyway). A
    size that is a constant times another (10*N beside 256*N) needs no test of its own.
    Settles, in `statements`, which of those loops the parallel twin shares (SHARE_RATIO)."""
    sizes = ctx.thread_sizes
    shared = [not any((t / s).is_number and t / s >= SHARE_RATIO for t in sizes) for s in sizes]
    if sizes:
        _settle_loops(statements, [ctx.loop.prange if keep else ctx.loop.range for keep in shared])
    if ctx.parallel or not sizes:
        return None
    sizes = list(dict.fromkeys(sizes))
    largest = [s for s in sizes if not any((t / s).is_number and t / s > 1 for t in sizes)]
    return " or ".join(f"{ctx.target.dimension(s, ctx)} >= {PARALLEL_MIN}" for s in largest)


_PENDING = re.compile(r"__share(\d+)\(")   # a loop of symbolic size, before threads_when settles it


def _settle_loops(statements, ranges):
    """Each pending loop's `__share<k>(` becomes `ranges[k](`, its comment aligned again."""
    def settle(line):
        if "__share" not in line:
            return line
        code, _, comment = _PENDING.sub(lambda m: ranges[int(m.group(1))] + "(", line).partition("  # ")
        return commented(code.rstrip(), comment)
    for st in statements:
        st.expr = settle(st.expr)
        st.extra[:] = [settle(line) for line in st.extra]


def _is_symbolic(shape):
    return any(not isinstance(d, int) for d in shape)


def _loop_head(shape, shared, ctx):
    """The `for` lines over `shape` (an axis of size 1 needs none: its index is 0), the
    body's indentation and the index of each axis. `shared`: whether threads may share
    the outer loop; they do if it is large (the function gets parallel=True), and may if
    its size is symbolic: its `prange` is a plain range unless the call is large enough
    to take the function's parallel twin (`ctx.thread_sizes` says when)."""
    lines, index = [], []
    shared = shared and ctx.loop.threads and (is_large(shape) or _is_symbolic(shape))
    for axis, d in enumerate(shape):
        if d == 1:
            index.append("0")
            continue
        rng = ctx.loop.range
        if shared and not lines:   # a loop of symbolic size: threads_when settles it
            rng = ctx.loop.prange if is_large(shape) else f"__share{len(ctx.thread_sizes)}"
        lines.append("    " * len(lines) + f"for {ctx.loop.index[axis]} in {rng}({ctx.target.dimension(d, ctx)}):")
        index.append(ctx.loop.index[axis])
    if shared and lines:
        if is_large(shape):
            ctx.parallel = True
        else:
            ctx.thread_sizes.append(sp.sympify(size_of(shape)))   # its __share<k>
    return lines, "    " * len(lines), index


def loop_nest(shape, ctx):
    """The `for` lines of a loop nest over `shape` on one thread (an axis of size 1 needs
    none: its index is 0), the body's indentation and the index of each axis."""
    return _loop_head(shape, False, ctx)


def _alloc(shape, ctx, fill="empty"):
    return f"{ctx.np}.{fill}({ctx.target.shape(shape, ctx)}, dtype={ctx.np}.{ctx.dtype})"


def group_statements(group, virtual, ctx, statement):
    """Statements for a fused group: its arrays, its accumulators, then one loop nest."""
    out, overwritten = [], set()
    for m in group.members:
        source = _overwritable(m, group, ctx, overwritten)
        if source is not None:
            overwritten.add(source)
            out.append(statement(ctx.names[m], ctx.names[source], f"{m.op.name}: written into {source.name}'s array"))
        elif m in group.stored:
            out.append(statement(ctx.names[m], _alloc(m.shape, ctx), f"{m.op.name}: filled by the loop"))
    for r in group.reductions:   # float32 too accumulates in float64: 0.0 is a float64
        out.append(statement(ctx.names[r], "0.0", f"{r.op.name}: accumulated by the loop"))
    head, pad, index = _loop_head(group.shape, True, ctx)
    at = f"[{', '.join(index)}]"
    local, body = {}, []
    for m in group.members:
        args = [read(i, group, local, virtual, ctx, index) for i in m.inputs]
        expr = ctx.target.print_node(m, args, ctx, ctx.names[m])
        target = ctx.names[m] + at if m in group.stored else ctx.names[m]
        local[m] = target
        body.append(commented(pad + f"{target} = {expr}", m.op.name))
    for r in group.reductions:
        body.append(commented(pad + f"{ctx.names[r]} += {local[through_aliases(r.inputs[0])]}", r.op.name))
    names = ", ".join(dict.fromkeys(m.op.name for m in group.members))
    label = f"fused: {names}"   # every axis of size 1: no loop, the body runs once
    lines = [commented(head[0], label)] + head[1:] if head else [f"# {label}"]
    out.append(statement("", "", "", lines + body))
    for r in group.reductions:
        name = ctx.names[r]
        if r.op.name == "mean":
            count = ctx.target.dimension(size_of(r.inputs[0].shape), ctx)
            out.append(statement(name, f"{name} / {atom(count)}", "mean: divide once"))
        if ctx.dtype != "float64":
            out.append(statement(name, f"{ctx.np}.{ctx.dtype}({name})", f"back to {ctx.dtype}"))
    return out


def _overwritable(member, group, ctx, taken):
    """The input whose array `member` may be written into (graph.in_place), if that is safe:
    the loop reads the input at its own element only, and not after the member's write."""
    source = ctx.in_place.get(member)
    if source is None or source in taken or source in ctx.returned or member not in group.stored:
        return None
    if source.shape != member.shape or source.shape != group.shape:
        return None
    position = group.members.index(member)
    readers = ctx.readers.get(source, [])
    if all(r in group.members and group.members.index(r) <= position for r in readers):
        return source
    return None


def reduction(node, args, ctx, name):
    """sum/mean/max over some axes (a table entry): an array of the kept axes, then a loop nest."""
    src = node.inputs[0]
    axes, keep = node.attr["axis"], node.attr["keepdims"]
    if len(axes) == src.ndim and not keep:   # to a scalar: NumPy's own (pairwise) reduction
        return f"{ctx.np}.{node.op.name}({args[0]})"
    # threads may share the outer loop only if it is not reduced over (each writes its own rows)
    outer = next((k for k, d in enumerate(src.shape) if d != 1), None)
    head, pad, index = _loop_head(src.shape, outer not in axes, ctx)
    kept = [("0" if keep else None) if k in axes else index[k] for k in range(src.ndim)]
    at = f"[{', '.join(i for i in kept if i is not None)}]"
    value = f"{args[0]}[{', '.join(index)}]"
    if node.op.name == "max":
        start = _each_element(name, node.shape, " = ", f"-{ctx.np}.inf", ctx)
        body = [pad + f"if {value} > {name}{at}:", pad + f"    {name}{at} = {value}"]
        head = empty_max_check(sp.Mul(*[src.shape[a] for a in axes]), ctx) + head
    else:
        start = _each_element(name, node.shape, " = ", "0.0", ctx)
        body = [pad + f"{name}{at} += {value}"]
    lines = start + head + body
    if node.op.name == "mean":
        count = ctx.target.dimension(sp.Mul(*[src.shape[a] for a in axes]), ctx)
        divide = _each_element(name, node.shape, " /= ", atom(count), ctx)
        lines += [commented(divide[0], "mean: divide once")] + divide[1:]
    return _alloc(node.shape, ctx), lines


def _each_element(name, shape, op, value, ctx):
    """`name[i, j] = value` (or another assignment) for every element, as a loop nest: Numba
    compiles np.zeros, np.full and an array's `/=` as functions of their own (0.15-0.3 s each
    at a module's first call), a loop as part of the function it is in."""
    head, pad, index = loop_nest(shape, ctx)
    return head + [pad + f"{name}[{', '.join(index)}]{op}{value}"]
