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
    """The helpers of one module, shared by its functions (forward's step is also
    value_and_grad's, where both return the same values)."""

    def __init__(self, np):
        self.np = np
        self.helpers, self.by_key, self.calls = [], {}, {}

    def function(self, fn):
        """`fn` with its repeated stretches replaced by calls."""
        statements = list(fn.statements)
        facts = [_facts(st) for st in statements]
        params = fn.params + (["grad_out"] if fn.seed else [])   # the kernel's own, seed included
        own = (set(params) | set().union(*(f.defs for f in facts))) - _NOT_VALUES
        live = _Liveness(facts, {n for n in _ANY_NAME.findall(fn.returns) if n in own})
        tokens = _intern([_shape(f, own) for f in facts])
        covered = [False] * len(statements)
        replaced = {}   # start -> (end, the call)
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
                    progress |= self._outline(fn, statements, facts, own, live, starts, k * p,
                                              covered, replaced)
        if not replaced:
            return fn
        body, i = [], 0
        while i < len(statements):
            end, call = replaced.get(i, (i + 1, statements[i]))
            body.append(call)
            i = end
        return Function(fn.name, fn.params, body, fn.returns, fn.seed, fn.parallel, fn.threads_when)

    def _outline(self, fn, statements, facts, own, live, starts, size, covered, replaced):
        """Replaces the stretches of `size` statements at `starts` that have a twin among
        them; whether any was."""
        groups = {}
        for s in starts:
            text, names, numbers = _key(facts[s:s + size], own)
            groups.setdefault(text, []).append((s, names, numbers))
        done = False
        for text, sites in groups.items():
            if len(sites) < 2:
                continue
            first, names = sites[0][0], sites[0][1]
            live_in = _live_in(facts[first:first + size], own)
            ins = [k for k, name in enumerate(names) if name in live_in]
            outs = sorted({k for s, site_names, _ in sites for k, name in enumerate(site_names)
                           if live.after(name, s + size - 1) and any(name in f.defs for f in facts[s:s + size])})
            varying = [j for j in range(len(sites[0][2])) if len({numbers[j] for _, _, numbers in sites}) > 1]
            key = (text, tuple(outs), tuple(varying), fn.parallel)
            helper = self.by_key.get(key)
            if helper is None:
                helper = self.by_key[key] = self._helper(fn, statements[first:first + size], names, ins, outs, varying)
            if fn.threads_when and any("prange" in line for f in facts[first:first + size] for line, _ in f.lines):
                helper.threads_when = fn.threads_when   # the parent's parallel twin calls the helper's
            self.calls.setdefault(helper.name, Counter())[fn.name] += len(sites)
            for m, (s, site_names, numbers) in enumerate(sites):
                # np.int64(3), not 3: Numba would compile the helper again for each constant
                args = [site_names[k] for k in ins] + [f"{self.np}.int64({numbers[j]})" for j in varying]
                call = f"{helper.name}({', '.join(args)})"
                targets = ", ".join(site_names[k] for k in outs)
                note = f"the statements of {helper.name}, {m + 1} of {len(sites)}"
                replaced[s] = (s + size, Statement(targets, call, note) if targets
                               else Statement("", "", "", [f"{call}  # {note}"]))
                covered[s:s + size] = [True] * size
            done = True
        return done

    def _helper(self, fn, statements, names, ins, outs, varying):
        name = f"__repeat{len(self.helpers)}"
        numbers = {j: f"__k{n}" for n, j in enumerate(varying)}
        body = _with_numbers(statements, numbers) if numbers else list(statements)
        helper = Function(name, [names[k] for k in ins] + list(numbers.values()), body,
                          ", ".join(names[k] for k in outs), None, fn.parallel, None)
        self.helpers.append(helper)
        return helper


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
    done = [outliner.function(fn) for fn in functions]
    for helper in outliner.helpers:
        calls = ", ".join(f"{n} times in {name}" for name, n in outliner.calls[helper.name].items())
        helper.note = f"{len(helper.statements)} statements that recur, compiled once: called {calls}"
    return done, outliner.helpers
