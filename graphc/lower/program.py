"""What lowering produces: functions of flat statements `name = expression  # comment`,
and their text (comments aligned, follow-up lines after their statement)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Statement:
    target: str
    expr: str
    comment: str = ""
    extra: list = field(default_factory=list)   # follow-up lines (a scatter's assignment, a loop;
                                                 # with no target, the lines are the statement)
    alias: bool = False                          # `grad_s2 = grad_s3`: only a second name


@dataclass
class Function:
    name: str
    params: list          # positional inputs, in order
    statements: list
    returns: str
    seed: str | None = None   # the keyword-only grad_out: None, "required" or its default "1.0"
    parallel: bool = False    # whether a loop is parallel (Numba's parallel=True)
    threads_when: str | None = None   # the test for taking the parallel twin at run time
                                      # (a helper: whether it has a parallel twin)
    note: str = ""            # a comment above the function (what a helper is)


COMMENT_COLUMN = 40   # comments line up here, unless the code is longer


def commented(code, comment):
    """`code  # comment`, the comment at COMMENT_COLUMN (of the function body) if it fits."""
    if not comment:
        return code
    return f"{code:<{COMMENT_COLUMN - 4}}  # {comment}" if len(code) < COMMENT_COLUMN - 4 else f"{code}  # {comment}"


def code_lines(statements):
    """`name = expr  # comment`, comments aligned, follow-up lines after their statement."""
    lines = []
    for st in statements:
        if not st.target:
            lines.extend(st.extra)
            continue
        lines.append(commented(f"{st.target} = {st.expr}", st.comment))
        lines.extend(st.extra)
    return lines


def signature(function):
    """`x, W, *, grad_out=1.0`: the inputs, then the seed as a keyword-only argument."""
    params = ", ".join(function.params)
    if function.seed is None:
        return params
    return params + (", *, grad_out" if function.seed == "required" else f", *, grad_out={function.seed}")
