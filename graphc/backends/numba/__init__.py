"""The numba target: the same program compiled by Numba on the CPU, each fused group of
elementwise ops one loop nest (loops.py), matrix products through BLAS (blas.py)."""
from __future__ import annotations

from ...lower.fusion import broadcast_index
from ...lower.scan import scan_printer
from ..base import Target, atom, dtype_of, element, reserve_loop_names
from ..numpy import FUNCTIONS as NUMPY_FUNCTIONS, OPS as NUMPY_OPS
from . import blas, integers, loops

# Inside the loops every value is a scalar, and so is every value of a graph of scalars.
# There the math module's functions give what NumPy's ufuncs give (Numba's math raises no
# domain error: log(0) is -inf, sqrt(-1) nan; float32 stays float32), and Numba types and
# lowers a call of one in half the time of a ufunc's: LLVM's time on a function full of
# ufunc calls grows faster than its length (a 1,200-op chain's value_and_grad: 32 s -> 16 s).
# np.where gives a 0-d array, so a choice is Python's conditional (module.py.j2's __where).
# exp and tanh are the module's own (math.py.j2), which loops can vectorise. math.floor
# would give an integer.
MATH = ("sin", "cos", "tan", "sinh", "cosh", "log", "sqrt", "log1p", "expm1", "log2", "log10", "asin", "acos",
        "atan", "asinh", "acosh", "atanh", "atan2", "hypot", "erf")
FUNCTIONS = {**NUMPY_FUNCTIONS, "where": "__where({{c}}, {{a}}, {{b}})", "exp": "__exp", "tanh": "__tanh",
             **{f: f"__math.{f}" for f in MATH}}   # the math module, as module.py.j2 imports it

# Elementwise ops are printed inside loops (loops.py), where every value is a scalar;
# the rest are whole-array statements that Numba compiles (matrix products go to BLAS).

def _matmul(node, args, ctx, name):
    a, b = node.inputs

    def product(left, right):   # two matrices: BLAS's gemm (blas.py.j2)
        if min(a.ndim, b.ndim) >= 2:
            return f"__matmul({left}, {right})"
        return f"{atom(left)} @ {atom(right)}"
    if a.ndim <= 2 and b.ndim <= 2:
        return product(args[0], args[1])
    # stacks of matrices: Numba's @ takes two dimensions at most, so loop over the stack
    batch = node.shape[:len(node.shape) - (a.ndim > 1) - (b.ndim > 1)]
    index = ctx.loop.index[:len(batch)]
    lines = []
    for axis, d in enumerate(batch):
        lines.append("    " * axis + f"for {index[axis]} in {ctx.loop.range}({ctx.target.dimension(d, ctx)}):")

    def operand(x, text):
        stack = x.shape[:-2] if x.ndim > 1 else ()
        if not stack:
            return text
        return f"{text}[{broadcast_index(stack, batch, index)}]"
    lines.append("    " * len(batch) + f"{name}[{', '.join(index)}] = "
                 f"{product(operand(a, args[0]), operand(b, args[1]))}")
    return f"{ctx.np}.empty({ctx.target.shape(node.shape, ctx)}, dtype={ctx.np}.{ctx.dtype})", lines


def _broadcast(node, args, ctx, name):
    shape = ctx.target.shape(node.shape, ctx)
    if node.inputs[0].shape == ():   # a constant or a scalar fills the array
        return f"{ctx.np}.full({shape}, {args[0]}, dtype={ctx.np}.{dtype_of(node, ctx)})"
    return f"{ctx.np}.broadcast_to({args[0]}, {shape}).copy()"


def _tri(node, args, ctx, name):
    """np.tri(n, m, k): Numba's takes no dtype, and gives float64."""
    n, m = (ctx.target.dimension(d, ctx) for d in node.shape)
    text = f"{ctx.np}.tri({n}, {m}, {node.attr['k']})"
    return text if ctx.dtype == "float64" else f"{text}.astype({ctx.np}.{ctx.dtype})"


def _transpose(node, args, ctx, name):
    """A matrix's .T is a view; any other order of axes a loop nest copying into C order:
    Numba compiles np.transpose with a tuple of axes in about 5 s, these loops in a fraction."""
    axes = node.attr["axes"]
    if axes == tuple(reversed(range(len(axes)))) and len(axes) <= 2:
        return f"{atom(args[0])}.T"
    index = ctx.loop.index[:len(axes)]
    lines = ["    " * a + f"for {index[a]} in {ctx.loop.range}({ctx.target.dimension(d, ctx)}):"
             for a, d in enumerate(node.shape)]
    source = [index[axes.index(k)] for k in range(len(axes))]   # output axis a reads input axis axes[a]
    lines.append("    " * len(axes) + f"{name}[{', '.join(index)}] = {args[0]}[{', '.join(source)}]")
    return f"{ctx.np}.empty({ctx.target.shape(node.shape, ctx)}, dtype={ctx.np}.{dtype_of(node, ctx)})", lines


def _getitem(node, args, ctx, name):
    """A strided matrix (`x[:, t, :]`, `A[:, ::-1]`) is a loop nest copying it into C order:
    Numba compiles a matrix product once for each pair of layouts it meets (0.3-1.2 s each),
    and a strided slice's 'A' layout made a third beside C and F (a product copies it anyway)."""
    key, src = node.attr["index"], node.inputs[0]
    if node.ndim != 2 or src.ndim < 2 or _contiguous(key, src.ndim):
        return NUMPY_OPS["getitem"](node, args, ctx, name)
    lines, pad, index = loops.loop_nest(node.shape, ctx)
    source, axis = [], 0
    for item, size in _with_sizes(key, src.shape):
        if item[0] == "n":   # a new axis of size 1: no source axis
            axis += 1
        elif item[0] == "i":
            source.append(str(item[1] % size if isinstance(size, int) else item[1]))
        else:
            source.append(_strided(index[axis], *_start_step(item, size)))
            axis += 1
    lines.append(pad + f"{name}[{', '.join(index)}] = {args[0]}[{', '.join(source)}]")
    return _empty(node, ctx), lines


def _full_key(key, ndim):
    """The index with ':' for each source axis it leaves out."""
    return list(key) + [("s", None, None, None)] * (ndim - sum(item[0] != "n" for item in key))


def _with_sizes(key, shape):
    """Each item of _full_key with the size of the source axis it indexes (None for a new axis)."""
    pairs, axis = [], 0
    for item in _full_key(key, len(shape)):
        pairs.append((item, None if item[0] == "n" else shape[axis]))
        axis += item[0] != "n"
    return pairs


def _start_step(item, size):
    """A slice's first source index and step; only ':' can slice a symbolic size."""
    if item[1:] == (None, None, None):
        return 0, 1
    start, _, step = slice(*item[1:]).indices(size)
    return start, step


def _strided(at, start, step):
    """The source index of output index `at` ("0" on an axis of size 1), as short as it goes."""
    if at == "0":
        return str(start)
    scaled = at if abs(step) == 1 else f"{abs(step)} * {at}"
    if step < 0:
        return f"{start} - {scaled}"
    return f"{scaled} + {start}" if start else scaled


def _contiguous(key, ndim):
    """Whether the slice of a C-contiguous array is C-contiguous too, as Numba types it:
    integers first, then one slice, then whole axes."""
    items = _full_key(key, ndim)
    k = 0
    while k < len(items) and items[k][0] == "i":
        k += 1
    return all(item == ("s", None, None, None) for item in items[k + 1:])


def _zeros(node, args, ctx, name):
    """Zeros in C order, whatever the order of the value they are shaped like (np.zeros_like
    of W.T is in Fortran order): a scan's carry keeps one array type from step to step."""
    if node.shape == ():
        return ctx.target.constant(0.0, ctx)
    return f"{ctx.np}.zeros({ctx.target.shape(node.shape, ctx)}, dtype={ctx.np}.{ctx.dtype})"


def _reshape(node, args, ctx, name):
    if node.shape == ():   # its one element: a number, not a 0-d array
        return element(args[0], node.inputs[0].ndim)
    # Numba reshapes contiguous arrays only (a transpose is not)
    return f"{ctx.np}.ascontiguousarray({args[0]}).reshape({ctx.target.shape(node.shape, ctx)})"



def _window(node):
    """The window's stride, leading padding and dilation, as conv.py.j2's loops take them."""
    a = node.attr
    return (*a["stride"], a["padding"][0][0], a["padding"][1][0], *a["dilation"])


def _patches(node, args, ctx, name):
    """im2col: a loop nest in the module (conv.py.j2)."""
    fill = f"-{ctx.np}.inf" if node.attr["fill"] == "-inf" else "0.0"
    sizes = (*node.attr["kernel"], *_window(node), *node.shape[4:])
    return f"__patches({args[0]}, {', '.join(map(str, sizes))}, {fill})"


def _unpatches(node, args, ctx, name):
    """col2im: a loop nest in the module (conv.py.j2)."""
    return f"__unpatches({args[0]}, {', '.join(map(str, (*node.attr['size'], *_window(node))))})"


def _empty(node, ctx):
    return f"{ctx.np}.empty({ctx.target.shape(node.shape, ctx)}, dtype={ctx.np}.{dtype_of(node, ctx)})"


def _store(stack, t, value, shape, ctx):
    """A scan's value stored at step t, element by element: Numba compiles `stack[t] = value`
    for arrays through its general setitem, about 5 s of compile time for one line."""
    index = ctx.loop.index[:len(shape)]
    lines = ["    " * a + f"for {index[a]} in {ctx.loop.range}({ctx.target.dimension(d, ctx)}):"
             for a, d in enumerate(shape)]
    where = ", ".join(index)
    return lines + ["    " * len(shape) + f"{stack}[{t}{', ' if shape else ''}{where}] = {value}"
                    + (f"[{where}]" if shape else "")]


OPS = {
    **{k: v for k, v in NUMPY_OPS.items() if k not in ("where",)},
    "matmul": _matmul,
    "sum": loops.reduction, "mean": loops.reduction, "max": loops.reduction,
    "transpose": _transpose,
    "getitem": _getitem,
    "zeros_like": _zeros,
    "reshape": _reshape,
    "broadcast_like": _broadcast, "broadcast_to": _broadcast,
    "tri": _tri,
    "patches": _patches, "unpatches": _unpatches,
    "scan": scan_printer(_empty, _store),
    **integers.OPS,
}


def _reserve(namer, user):
    return reserve_loop_names(namer, user, loops.PARFOR_NAMES)


TARGET = Target("numba", "numba/module.py.j2", FUNCTIONS, OPS, fuses=True, typed_literals=True,
                group_statements=loops.group_statements, blas=blas.choice, threads_when=loops.threads_when,
                reserve=_reserve, per_example=True, native_scalars=True,
                runtime=(("numba", "scipy"), "pip install 'graphc[numba]'"),
                template_globals={"mkl_runtime": blas.MKL_RUNTIME}, interim="numpy", outlines=True,
                summary="fused loops compiled for the CPU (pip install 'graphc[numba]')")
