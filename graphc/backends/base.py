"""What a backend is: a Target, the data lowering and code generation ask of it.

A backend is a folder of graphc/backends/ holding its Target (in its __init__.py), the
code that prints what its table does not (Numba's loop nests, CUDA's kernels) and its
Jinja2 templates. Lowering, code generation, CompiledGraph and the training toolkit
read a target's data and its capability flags; none of them asks for a backend by name.

An op prints through the target's table `ops`: a format string over the (already
named) arguments, or a function for ops whose text depends on attributes. Elementwise
ops without an entry are printed from their SymPy formula (or its stable form) by
symbolic.Printer, with the target's `functions` (exp -> np.exp, math.exp, __exp).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import sympy as sp

from ..graph import ops, symbolic

_ATOM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(\.shape\[\d+\]|\[[A-Za-z0-9_, ]*\])?|\d+(\.\d*)?(e[+-]?\d+)?"
                   r"|[A-Za-z_]\w*\.float(32|64)\(\d+(\.\d*)?(e[+-]?\d+)?\))$")   # or a typed literal


def atom(text):
    """Parenthesise an argument unless it is a name, a name's element or dimension
    (`x[i, j]`, `x.shape[0]`) or a non-negative number (`2`, `np.float32(0.5)`)."""
    return text if _ATOM.match(text) else f"({text})"


def element(text, ndim):
    """The one element of a value with `ndim` axes of size 1, as a number (`s3[0, 0]`; a
    number already for ndim 0): a reshape to (), the gradient of x[None]."""
    return f"{atom(text)}[{', '.join(['0'] * ndim)}]" if ndim else text


def dtype_of(node, ctx):
    """The NumPy dtype name of a value's elements: int64 for an integer value, else the module's."""
    return "int64" if node.dtype == "int" else ctx.dtype


# The gates every target prints the same way: Python's operators, on arrays or on scalars
OPERATORS = {
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}",
    "pow": "{0} ** {1}", "neg": "-{0}",
    "greater": "{np}.{dtype}({0} > {1})", "less": "{np}.{dtype}({0} < {1})",
    "greater_equal": "{np}.{dtype}({0} >= {1})", "less_equal": "{np}.{dtype}({0} <= {1})",
    "equal": "{np}.{dtype}({0} == {1})",
}


def empty_max_check(count, ctx):
    """NumPy's error for a max over no elements, for code whose loops would give -inf: lines
    that raise it where the count of elements (a SymPy expression) is 0 at run time."""
    if sp.sympify(count).is_Integer:
        return []
    return [f"if {ctx.target.dimension(count, ctx)} == 0:",
            '    raise ValueError("zero-size array to reduction operation maximum which has no identity")']


@dataclass(frozen=True)
class LoopNames:
    """The names a loop target's code uses (target.reserve): loop indices, the range
    functions, and whether loops may run on threads (a user's value named like a
    name Numba's parallel code uses forbids it)."""
    index: list
    range: str
    prange: str
    threads: bool


def reserve_loop_names(namer, user, parallel_names=frozenset()):
    """({"numba": alias}, LoopNames) for a target whose fused groups are loops: the
    module's numba alias, index names, and a `range` that no input shadows."""
    numba = namer.fresh("numba")
    index = [namer.fresh(c) for c in "ijklmn"] + [namer.fresh(f"i{k}") for k in range(6, 32)]
    prange = f"{numba}.prange"
    loop = LoopNames(index, "range" if "range" not in namer.taken else prange, prange,
                     not (parallel_names & set(user)))
    return {"numba": numba}, loop


def _no_names(namer, user):
    return {}, None


def check_called(target, called, user):
    """A clear error where a value of the graph has the name of a module or function that
    the target's code calls: inside the generated functions it would hide it."""
    clash = sorted(set(called) & set(user))
    if clash:
        raise NotImplementedError(f"the {target} target's code calls {', '.join(clash)}, which a value "
                                  "of this graph is named; rename that value")


class Target:
    """One backend: how it prints, what its module needs, what it can do.

    `summary`: one line for `graphc compile --help`.

    Printing: `template` (a Jinja2 template under graphc/backends/), `functions` (the
    printer's function table, `{np}` for the alias of the module they come from:
    `module_alias`, numpy's np, or math), `ops` (the op table),
    `typed_literals` (numbers printed as `np.float32(0.5)` in float32 code, where a bare
    0.5 would make Numba compute in float64), `reserve` ((namer, user names) -> (module
    aliases, LoopNames or None): the names its code needs), `template_globals`.

    Capabilities:
      fuses           elementwise ops of one shape share a loop (lower/fusion.py), printed by
                      `group_statements` (a loop nest on the CPU, a kernel on the GPU)
      blas            () -> which BLAS matrix products call, where the target chooses (else None)
      threads_when    (ctx, statements) -> the run-time test for a function's threaded twin, or
                      None; it may settle in the statements which loops the twin shares
      per_example     a graph of scalars also gets compiled `*_each` functions over arrays
      vectorised      the flat code itself runs on arrays (per-example calls pass them whole)
      native_scalars  a graph of scalars called with floats may go straight to the machine code
      device_arrays   results may stay in device memory, and so does training state
      scalars_only    every value of a graph must be a scalar
      outlines        a stretch of statements that recurs becomes one function called at each
                      place (lower/outline.py), for a compiler whose time on a function grows
                      faster than the function's length
      interim         the target whose module answers calls while this one's compiles
                      (gc.compile(..., tiered=True)), or None: nothing to wait for
      dtypes          the dtypes it computes in
      runtime         (modules the generated code imports, how to install them)
    """

    def __init__(self, name, template, functions, ops, *, fuses=False, typed_literals=False,
                 group_statements=None, blas=None, threads_when=None, reserve=_no_names,
                 per_example=False, vectorised=False, native_scalars=False, device_arrays=False,
                 scalars_only=False, dtypes=("float64", "float32"), runtime=((), ""), module_alias="np",
                 template_globals=None, summary="", interim=None, outlines=False):
        self.name = name
        self.summary = summary
        self.template = template
        self._functions = functions
        self._by_alias = {}
        self.ops = ops
        self.fuses = fuses
        self.typed_literals = typed_literals
        self.group_statements = group_statements   # (group, virtual, ctx, Statement) -> statements
        self._blas = blas
        self._threads_when = threads_when
        self.reserve = reserve
        self.per_example = per_example
        self.vectorised = vectorised
        self.native_scalars = native_scalars
        self.device_arrays = device_arrays
        self.scalars_only = scalars_only
        self.interim = interim
        self.outlines = outlines
        self.dtypes = dtypes
        self.runtime = runtime
        self.module_alias = module_alias
        self.template_globals = dict(template_globals or {})

    def __repr__(self):
        return f"<graphc target {self.name}>"

    def blas(self):
        return self._blas() if self._blas else None

    def threads_when(self, ctx, statements):
        return self._threads_when(ctx, statements) if self._threads_when else None

    def functions(self, np_alias):
        """The function table with the module alias filled in (made once per alias)."""
        table = self._by_alias.get(np_alias)
        if table is None:
            table = self._by_alias[np_alias] = {k: v.format(np=np_alias) for k, v in self._functions.items()}
        return table

    def _literal(self, np_alias, dtype):
        if self.typed_literals and dtype != "float64":
            return lambda text: f"{np_alias}.{dtype}({text})"
        return None

    def printer(self, ctx, names):
        return symbolic.Printer(self.functions(ctx.np), {**{s: atom(t) for s, t in ctx.dims.items()}, **names},
                                literal=self._literal(ctx.np, ctx.dtype))

    def constant(self, value, ctx):
        value = sp.sympify(value)
        literal = self._literal(ctx.np, ctx.dtype)
        if value.is_number:
            return literal(repr(float(value))) if literal else repr(float(value))
        numerator, denominator = sp.fraction(value)
        if literal is None and denominator != 1:
            # a number over dimensions (a mean's 1/(2*B)) in NumPy's arithmetic, not Python's:
            # an empty batch then gives inf and nan, as NumPy and PyTorch do, not ZeroDivisionError
            printer = self.printer(ctx, {})
            return f"{ctx.np}.{ctx.dtype}({printer(numerator)})/{atom(printer(denominator))}"
        return self.printer(ctx, {})(value)

    def dimension(self, d, ctx):
        return str(d) if isinstance(d, int) else symbolic.Printer(
            self.functions(ctx.np), {s: atom(t) for s, t in ctx.dims.items()})(d)

    def shape(self, shape, ctx):
        inner = ", ".join(self.dimension(d, ctx) for d in shape)
        return f"({inner},)" if len(shape) == 1 else f"({inner})"

    def print_node(self, node, args, ctx, name):
        entry = self.ops.get(node.op.name)
        if isinstance(entry, str):
            return entry.format(*[atom(a) for a in args], np=ctx.np, dtype=ctx.dtype)
        if entry is not None:
            return entry(node, args, ctx, name)
        if node.op.elementwise:
            consts = tuple((i, ops.const_value(n)) for i, n in enumerate(node.inputs) if n.op is ops.CONST)
            template = self._template(node.op.printed_formula(node.attrs), consts, ctx.np,
                                      tuple(ctx.dims.items()), ctx.dtype)
            return template.format(*[atom(a) for a in args])
        raise NotImplementedError(f"target {self.name} cannot print op {node.op.name}")

    @functools.lru_cache(maxsize=4096)
    def _template(self, formula, consts, np_alias, dims, dtype):
        """The printed formula with {0}, {1}... for its arguments (printing is the slow part)."""
        formula = formula.subs({symbolic.ARGS[i]: v for i, v in consts}) if consts else formula
        names = {**{s: atom(t) for s, t in dims}, **{a: "{%d}" % i for i, a in enumerate(symbolic.ARGS)}}
        return symbolic.Printer(self.functions(np_alias), names, literal=self._literal(np_alias, dtype))(formula)
