"""Repeated structure compiled once: a stretch of statements that recurs with the same shape
(the cell at every step of an unrolled RNN, a block stacked N times, a chain's links) becomes
one function of the module, called at each place it occurs.

    s10, s11, s14 = __repeat0(s7, s9, s13, b)   # the statements of __repeat0, 2 of 19

Numba then types and optimises those statements once, not once per step: LLVM's time on a
function grows faster than its length, so one flat function per graph is what made an
unrolled RNN of 100 steps take minutes. The helper keeps the statements, names and
comments of its first occurrence; a call passes the values the stretch reads (its live-in
values) and takes back those that later statements read (its live-out values).

Two stretches are the same when their text is, once the function's own names are numbered
in order of first appearance (so the same data flow between them), constants and comments
included. Stretches are found as periodic runs of statement shapes (a statement's text with
its own names blanked), the periods tried most frequent first."""
from __future__ import annotations

import bisect
import keyword
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from .program import Function, Statement

MIN_LINES = 12      # lines a helper takes at least (whole periods): LLVM copies a shorter
                    # function into each caller, and a call costs about as much as a line
MAX_CALLS = 64      # calls of one helper in a run at most: a function's every call site
                    # costs compile time too (a longer run takes more periods a call)
MAX_PERIOD = 400    # longest period looked for
PERIODS_TRIED = 8   # most frequent distances between equal statements tried as periods

_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?!\s*=(?!=))")        # a name read (not a keyword argument)
_ANY_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
_FOR = re.compile(r"for\s+(?P<targets>.+?)\s+in\s+(?P<source>.+):$")
_ASSIGN = re.compile(r"(?P<targets>[\w\s,\[\]:.]+?)\s*(?P<op>\*\*|//|[-+*/%@])?=(?!=)(?P<source>.*)$")
_INT = re.compile(r"(?<![\w.])\d+(?![\w.])")
_NOT_VALUES = set(keyword.kwlist)


def _subscript_ints(code):
    """(start, end) of each integer written inside brackets (`x[:, 3, :]`): where two
    stretches differ only there, the helper takes the number as an argument. Elsewhere
    a number may have to be a constant for Numba (a shape that types an array)."""
    if "[" not in code:
        return []
    depth, depths = 0, []
    for ch in code:
        depth += ch == "["
        depth -= ch == "]"
        depths.append(depth)
    return [m.span() for m in _INT.finditer(code) if depths[m.start()] > 0]


def _numbered(code, own, order, numbers):
    """`code` with the function's own names numbered in order of first appearance (`order`:
    name -> number, filled as it goes) and each integer in brackets blanked, its value
    appended to `numbers`."""
    spans = _subscript_ints(code)
    out, last = [], 0
    for start, end in spans:
        out.append(code[last:start])
        out.append("#")
        numbers.append(code[start:end])
        last = end
    out.append(code[last:])

    def number(m):
        name = m[0]
        if name not in own:
            return name
        return f"${order.setdefault(name, len(order))}" if order is not None else "$"
    return _ANY_NAME.sub(number, "".join(out))


@dataclass
class _Facts:
    """What one statement reads before writing it (uses), every name it assigns (defs),
    and the names it surely assigns, outside any loop (kills)."""
    lines: list
    uses: set = field(default_factory=set)
    defs: set = field(default_factory=set)
    kills: set = field(default_factory=set)


def _lines(st):
    """(code, comment) of each line of a statement."""
    out = []
    for k, line in enumerate(([f"{st.target} = {st.expr}"] if st.target else []) + list(st.extra)):
        code, _, comment = line.partition("#")
        out.append((code.rstrip(), (st.comment if k == 0 and st.target else comment.strip())))
    return out


def _facts(st):
    facts = _Facts(_lines(st))
    defined = set()

    def read(text):
        facts.uses.update(n for n in _NAME.findall(text) if n not in defined)
    for code, _ in facts.lines:
        body = code.lstrip()
        top = body == code
        loop, assign = _FOR.match(body), _ASSIGN.match(body)
        if loop:
            read(loop["source"])
            targets = [t.strip() for t in loop["targets"].split(",")]
        elif assign:
            read(assign["source"])
            targets = [t.strip() for t in assign["targets"].split(",")]
            if assign["op"]:   # x += y reads x
                read(assign["targets"])
        else:
            read(body)
            continue
        for target in targets:
            if re.fullmatch(r"[A-Za-z_]\w*", target):
                defined.add(target)
                facts.defs.add(target)
                if top:
                    facts.kills.add(target)
            else:   # a subscript: the array is read, and written in place
                read(target)
    return facts


def _shape(facts, own):
    """The statement's text with the function's own names and the integers in brackets
    blanked: equal shapes may be the same statement at another step."""
    return "\n".join(_numbered(code, own, None, []) + "#" + comment for code, comment in facts.lines)


def _key(facts_list, own):
    """(the stretch's text with its own names numbered in order of first appearance and
    its integers in brackets blanked, those names in that order, those integers)."""
    order, numbers = {}, []
    text = "\n".join(_numbered(code, own, order, numbers) + "#" + comment
                     for facts in facts_list for code, comment in facts.lines)
    return text, list(order), numbers


class _Outliner:
    """The helpers of one module, shared by its functions: forward's step is also
    value_and_grad's, which returns more of its values (a helper returns what any of its
    callers reads after it)."""

    def __init__(self, np):
        self.np = np
        self.groups = {}   # key -> _Group, in the order found

    def plan(self, fn):
        """{start: (end, _Group, the site's names, its integers)} for `fn`'s repeated stretches."""
        statements = list(fn.statements)
        facts = [_facts(st) for st in statements]
        params = fn.params + (["grad_out"] if fn.seed else [])   # the kernel's own, seed included
        own = (set(params) | set().union(*(f.defs for f in facts))) - _NOT_VALUES
        live = _Liveness(facts, {n for n in _ANY_NAME.findall(fn.returns) if n in own})
        tokens = _intern([_shape(f, own) for f in facts])
        covered, replaced = [False] * len(statements), {}
        for p in _periods(tokens):
            progress = True
            while progress:   # what a run's last whole block left over may repeat too
                progress = False
                for start, reps in list(_runs(tokens, covered, p)):
                    lines = sum(len(f.lines) for f in facts[start:start + p])
                    if not lines:   # statements printed by another (a scan's siblings)
                        continue
                    k = min(max(math.ceil(MIN_LINES / lines), math.ceil(reps / MAX_CALLS)), reps // 2)
                    if k * lines < MIN_LINES:
                        continue
                    starts = [start + m * k * p for m in range(reps // k)]
                    progress |= self._group(fn, statements, facts, own, live, starts, k * p, covered, replaced)
        return replaced

    def _group(self, fn, statements, facts, own, live, starts, size, covered, replaced):
        """Plans a call for each stretch of `size` statements at `starts` that has a twin
        among them; whether any has."""
        found = {}
        for s in starts:
            text, names, numbers = _key(facts[s:s + size], own)
            found.setdefault(text, []).append((s, names, numbers))
        done = False
        for text, sites in found.items():
            if len(sites) < 2:
                continue
            first, names = sites[0][0], sites[0][1]
            varying = tuple(j for j in range(len(sites[0][2])) if len({numbers[j] for _, _, numbers in sites}) > 1)
            fixed = tuple(n for j, n in enumerate(sites[0][2]) if j not in varying)   # written into the helper
            key = (text, varying, fixed, fn.parallel)
            group = self.groups.get(key)
            if group is None:
                live_in = _live_in(facts[first:first + size], own)
                group = self.groups[key] = _Group(
                    statements[first:first + size], names, [k for k, name in enumerate(names) if name in live_in],
                    varying, fn.parallel)
            group.outs |= {k for s, site_names, _ in sites for k, name in enumerate(site_names)
                           if live.after(name, s + size - 1) and any(name in f.defs for f in facts[s:s + size])}
            if fn.threads_when and any("prange" in line for f in facts[first:first + size] for line, _ in f.lines):
                group.twin = fn.threads_when   # the parent's parallel twin calls the helper's
            group.calls[fn.name] += len(sites)
            for s, site_names, numbers in sites:
                replaced[s] = (s + size, group, site_names, numbers)
                covered[s:s + size] = [True] * size
            done = True
        return done

    def helpers(self):
        """The helpers, named __repeat0, __repeat1, ... in the order found."""
        out = []
        for n, group in enumerate(self.groups.values()):
            group.name = f"__repeat{n}"
            arguments = {j: f"__k{m}" for m, j in enumerate(group.varying)}
            body = _with_numbers(group.statements, arguments) if arguments else list(group.statements)
            calls = ", ".join(f"{count} times in {name}" for name, count in group.calls.items())
            out.append(Function(group.name, [group.names[k] for k in group.ins] + list(arguments.values()), body,
                                ", ".join(group.names[k] for k in sorted(group.outs)), None, group.parallel,
                                group.twin, f"{len(body)} statements that recur, compiled once: called {calls}"))
        return out

    def rewrite(self, fn, replaced):
        """`fn` with each planned stretch replaced by its call."""
        body, i, seen = [], 0, Counter()
        while i < len(fn.statements):
            if i not in replaced:
                body.append(fn.statements[i])
                i += 1
                continue
            end, group, names, numbers = replaced[i]
            seen[group.name] += 1
            # np.int64(3), not 3: Numba would compile the helper again for each constant
            args = [names[k] for k in group.ins] + [f"{self.np}.int64({numbers[j]})" for j in group.varying]
            call = f"{group.name}({', '.join(args)})"
            targets = ", ".join(names[k] for k in sorted(group.outs))
            note = f"the statements of {group.name}, {seen[group.name]} of {group.calls[fn.name]}"
            body.append(Statement(targets, call, note) if targets else Statement("", "", "", [f"{call}  # {note}"]))
            i = end
        return Function(fn.name, fn.params, body, fn.returns, fn.seed, fn.parallel, fn.threads_when)


class _Group:
    """Stretches with one text, one helper: the first one's statements and names, which
    of its names it reads before assigning (ins) and which some caller reads after it
    (outs), the integers in brackets that differ between them (varying), and the number
    of calls in each function."""

    def __init__(self, statements, names, ins, varying, parallel):
        self.statements, self.names, self.ins, self.varying = statements, names, ins, varying
        self.parallel = parallel   # compiled with parallel=True, as its callers are
        self.outs, self.calls, self.twin, self.name = set(), Counter(), None, None


def _with_numbers(statements, numbers):
    """The statements with the integers in brackets at the positions in `numbers`
    (counted over the stretch, in order) replaced by those names."""
    count = 0

    def rewrite(code):
        nonlocal count
        out, last = [], 0
        for start, end in _subscript_ints(code):
            if count in numbers:
                out += [code[last:start], numbers[count]]
                last = end
            count += 1
        return "".join(out) + code[last:]
    done = []
    for st in statements:
        expr = rewrite(f"{st.target} = {st.expr}")[len(st.target) + 3:] if st.target else st.expr
        extra = []
        for line in st.extra:
            code, hash_, comment = line.partition("#")
            extra.append(rewrite(code) + hash_ + comment)
        done.append(Statement(st.target, expr, st.comment, extra, st.alias))
    return done


def _intern(shapes):
    ids = {}
    return [ids.setdefault(s, len(ids)) for s in shapes]


class _Liveness:
    """Whether a name is read after a statement before something assigns it again (the
    return reads its names after the last statement)."""

    def __init__(self, facts, returned):
        self.reads, self.kills = {}, {}
        for i, f in enumerate(facts):
            for name in f.uses:
                self.reads.setdefault(name, []).append(i)
            for name in f.kills:
                self.kills.setdefault(name, []).append(i)
        for name in returned:
            self.reads.setdefault(name, []).append(len(facts))

    def after(self, name, i):
        """Whether `name` is read after statement i before being assigned again (a
        statement that reads and assigns it reads it first)."""
        reads = self.reads.get(name, ())
        r = bisect.bisect_right(reads, i)
        if r == len(reads):
            return False
        kills = self.kills.get(name, ())
        k = bisect.bisect_right(kills, i)
        return k == len(kills) or reads[r] <= kills[k]


def _live_in(facts_list, own):
    """The function's own names a stretch reads before assigning them."""
    defined, live_in = set(), set()
    for f in facts_list:
        live_in |= {n for n in f.uses if n in own and n not in defined}
        defined |= f.defs
    return live_in


def _periods(tokens):
    """Distances between equal statement shapes, the most frequent first."""
    last, distances = {}, Counter()
    for i, t in enumerate(tokens):
        if t in last and i - last[t] <= MAX_PERIOD:
            distances[i - last[t]] += 1
        last[t] = i
    return [p for p, count in sorted(distances.items(), key=lambda pc: (-pc[1], pc[0]))[:PERIODS_TRIED] if count >= 2]


def _runs(tokens, covered, p):
    """(start, repetitions) of each stretch, not yet outlined, whose statement shapes repeat
    with period p at least twice."""
    n, i = len(tokens), 0
    while i + p < n:
        j = i
        while j + p < n and tokens[j] == tokens[j + p] and not covered[j] and not covered[j + p]:
            j += 1
        reps = (j - i + p) // p
        if reps >= 2:
            yield i, reps
            i += reps * p
        else:
            i = j + 1


def outline(functions, np="np"):
    """(the functions with their repeated stretches replaced by calls, the helpers);
    `np`: the name the module imports NumPy as."""
    outliner = _Outliner(np)
    plans = [outliner.plan(fn) for fn in functions]
    helpers = outliner.helpers()
    return [outliner.rewrite(fn, plan) if plan else fn for fn, plan in zip(functions, plans)], helpers
