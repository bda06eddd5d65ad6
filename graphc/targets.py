"""How each target prints an op: a table per target, no branches elsewhere.

An entry is a format string over the (already named) arguments, or a function
for ops whose text depends on attributes. Elementwise ops without an entry are
printed from their SymPy formula (or its stable form) by symbolic.Printer.
"""
from __future__ import annotations

import functools
import re

import sympy as sp

from . import ops, symbolic
from .indexing import index_to_python
from . import kernels, loops
from .loops import reduction

_ATOM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(\.shape\[\d+\]|\[[A-Za-z0-9_, ]*\])?|\d+(\.\d*)?(e[+-]?\d+)?"
                   r"|[A-Za-z_]\w*\.float(32|64)\(\d+(\.\d*)?(e[+-]?\d+)?\))$")   # or a typed literal


def atom(text):
    """Parenthesise an argument unless it is a name or a non-negative number."""
    return text if _ATOM.match(text) else f"({text})"


def _axis_text(axes):
    return str(axes[0]) if len(axes) == 1 else str(tuple(axes))


class Target:
    """One target's printing data: a template, a function table and an op table.

    `fuses`: elementwise ops of one shape share a loop (fusion.py, loops.py)
    rather than a statement each. `typed_literals`: numbers are printed as
    `np.float32(0.5)` in float32 code, where a bare 0.5 would make Numba
    compute in float64. `group_statements` prints a fused group (a loop nest on
    the CPU, a kernel and its launch on the GPU). `chooses_blas`: matrix products
    call the BLAS that blas.choice() names (MKL's, or Numba's `@`).
    """

    def __init__(self, name, template, functions, table, fuses=False, typed_literals=False,
                 group_statements=None, chooses_blas=False):
        self.name = name
        self.template = template
        self._functions = functions
        self._by_alias = {}
        self.table = table
        self.fuses = fuses
        self.typed_literals = typed_literals
        self.group_statements = group_statements   # (group, virtual, ctx, Statement) -> statements
        self.chooses_blas = chooses_blas

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
        if value.is_number:
            literal = self._literal(ctx.np, ctx.dtype)
            return literal(repr(float(value))) if literal else repr(float(value))
        return self.printer(ctx, {})(value)

    def dimension(self, d, ctx):
        return str(d) if isinstance(d, int) else symbolic.Printer(
            self.functions(ctx.np), {s: atom(t) for s, t in ctx.dims.items()})(d)

    def shape(self, shape, ctx):
        inner = ", ".join(self.dimension(d, ctx) for d in shape)
        return f"({inner},)" if len(shape) == 1 else f"({inner})"

    def print_node(self, node, args, ctx, name):
        entry = self.table.get(node.op.name)
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


def _reduce(fn):
    def print_(node, args, ctx, name):
        axes, keep = node.attr["axis"], node.attr["keepdims"]
        if len(axes) == node.inputs[0].ndim and not keep:
            return f"{ctx.np}.{fn}({args[0]})"
        return f"{ctx.np}.{fn}({args[0]}, axis={_axis_text(axes)}" + (", keepdims=True)" if keep else ")")
    return print_


def _transpose(node, args, ctx, name):
    axes = node.attr["axes"]
    if axes == tuple(reversed(range(len(axes)))):
        return f"{atom(args[0])}.T"
    return f"{ctx.np}.transpose({args[0]}, {axes})"


def _broadcast(node, args, ctx, name):
    if node.inputs[0].op is ops.CONST:   # full_like keeps the dtype; a Python float would not
        return f"{ctx.np}.full_like({args[1]}, {args[0]})"
    return f"{ctx.np}.broadcast_to({args[0]}, {ctx.np}.shape({args[1]}))"


def _scatter(node, args, ctx, name):
    return (f"{ctx.np}.zeros_like({args[1]})",
            [f"{name}[{index_to_python(node.attr['index'])}] = {args[0]}"])


NUMPY = Target("numpy", "numpy.py.j2", symbolic.NUMPY_FUNCTIONS, {
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}",
    "pow": "{0} ** {1}", "neg": "-{0}",
    "greater": "{np}.{dtype}({0} > {1})", "less": "{np}.{dtype}({0} < {1})",
    "greater_equal": "{np}.{dtype}({0} >= {1})", "less_equal": "{np}.{dtype}({0} <= {1})",
    "equal": "{np}.{dtype}({0} == {1})", "where": "{np}.where({0}, {1}, {2})",
    "matmul": "{0} @ {1}",
    "transpose": _transpose,
    "sum": _reduce("sum"), "mean": _reduce("mean"), "max": _reduce("max"),
    "reshape": lambda node, args, ctx, name: f"{ctx.np}.reshape({args[0]}, {ctx.table.shape(node.shape, ctx)})",
    "broadcast_like": _broadcast,
    "zeros_like": "{np}.zeros_like({0})",
    "getitem": lambda node, args, ctx, name: f"{atom(args[0])}[{index_to_python(node.attr['index'])}]",
    "scatter": _scatter,
    "concatenate": lambda node, args, ctx, name: (f"{ctx.np}.concatenate(({', '.join(args)},), "
                                                  f"axis={node.attr['axis']})"),
})



# ---- Numba (CPU) -------------------------------------------------------------------
# Elementwise ops are printed inside loops (loops.py), where every value is a scalar;
# the rest are whole-array statements that Numba compiles (matrix products go to BLAS).

def _numba_matmul(node, args, ctx, name):
    a, b = node.inputs

    def product(left, right):   # MKL takes two matrices (templates/numba_blas.py.j2)
        if ctx.blas == "mkl" and min(a.ndim, b.ndim) >= 2:
            return f"__matmul({left}, {right})"
        return f"{atom(left)} @ {atom(right)}"
    if a.ndim <= 2 and b.ndim <= 2:
        return product(args[0], args[1])
    # stacks of matrices: Numba's @ takes two dimensions at most, so loop over the stack
    batch = node.shape[:len(node.shape) - (a.ndim > 1) - (b.ndim > 1)]
    index = ctx.index_names[:len(batch)]
    lines = []
    for axis, d in enumerate(batch):
        lines.append("    " * axis + f"for {index[axis]} in {ctx.range}({ctx.table.dimension(d, ctx)}):")

    def operand(x, text):
        stack = x.shape[:-2] if x.ndim > 1 else ()
        if not stack:
            return text
        return f"{text}[{loops.broadcast_index(stack, batch, index)}]"
    lines.append("    " * len(batch) + f"{name}[{', '.join(index)}] = "
                 f"{product(operand(a, args[0]), operand(b, args[1]))}")
    return f"{ctx.np}.empty({ctx.table.shape(node.shape, ctx)}, dtype={ctx.np}.{ctx.dtype})", lines


def _numba_broadcast(node, args, ctx, name):
    shape = ctx.table.shape(node.shape, ctx)
    if node.inputs[0].shape == ():   # a constant or a scalar fills the array
        return f"{ctx.np}.full({shape}, {args[0]}, dtype={ctx.np}.{ctx.dtype})"
    return f"{ctx.np}.broadcast_to({args[0]}, {shape}).copy()"


def _numba_reshape(node, args, ctx, name):
    # Numba reshapes contiguous arrays only (a transpose is not)
    return f"{ctx.np}.ascontiguousarray({args[0]}).reshape({ctx.table.shape(node.shape, ctx)})"


# exp and tanh are the module's own (templates/numba_math.py.j2), which loops can vectorise
NUMBA = Target("numba", "numba.py.j2", {**symbolic.NUMBA_FUNCTIONS, "exp": "__exp", "tanh": "__tanh"}, {
    **{k: v for k, v in NUMPY.table.items() if k not in ("where",)},
    "matmul": _numba_matmul,
    "sum": reduction, "mean": reduction, "max": reduction,
    "reshape": _numba_reshape,
    "broadcast_like": _numba_broadcast,
}, fuses=True, typed_literals=True, group_statements=loops.group_statements, chooses_blas=True)


# ---- CUDA (numba-cuda) -------------------------------------------------------------
# Elementwise ops are printed inside kernels (kernels.py), as scalars, as in the Numba
# target's loops; the rest are kernels, views or module helpers. numba-cuda compiles
# no NumPy ufunc for exp, sqrt, abs, log1p or expm1 on the device: those are math
# functions, also in the scalar code the host runs (and, for a graph of scalars, the
# device too). np.sign has no device version either: kernels call the module's __sign.

CUDA_FUNCTIONS = {**symbolic.NUMBA_FUNCTIONS, "exp": "math.exp", "sqrt": "math.sqrt", "Abs": "abs",
                  "log1p": "math.log1p", "expm1": "math.expm1"}

CUDA = Target("cuda", "cuda.py.j2", CUDA_FUNCTIONS, {
    **{k: v for k, v in NUMBA.table.items() if isinstance(v, str)},   # the scalar gates
    **kernels.TABLE,
}, fuses=True, typed_literals=True, group_statements=kernels.group_statements)

CUDA_DEVICE = Target("cuda", "cuda.py.j2", {**CUDA_FUNCTIONS, "sign": "__sign"}, CUDA.table,
                     fuses=True, typed_literals=True)   # how kernels print their elementwise code

TARGETS = {"numpy": NUMPY, "numba": NUMBA, "cuda": CUDA}
