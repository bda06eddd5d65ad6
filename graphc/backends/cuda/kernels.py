"""Kernels for the CUDA target: fused groups and array ops as numba-cuda kernels.

A fused group (lower/fusion.py) becomes one `@cuda.jit` kernel, one thread per
element in a grid-stride loop, its body the group's scalar code (printed by
scalar.py's DEVICE, as the numba target's loops print theirs). A folded sum is a part per thread, added in with one
atomic each: the grid is capped, so that is a bounded number of atomics and no
barriers. Transposes, broadcasts, indexing, its scatter, concatenation and
partial reductions are small kernels; a reshape is a view; matrix products go
to a module helper (cuBLAS through CuPy where installed, else a tiled kernel).

Kernels are module-level definitions (`ctx.definitions`) named `__` and their
first value. Their parameters are the host names their text uses, found in the
text itself, so what a kernel reads and what the host passes cannot drift
apart; a kernel printed again for another function is defined once.
"""
from __future__ import annotations

import re

import sympy as sp

from ...graph import ops
from ...graph.ir import size_of
from ...lower.fusion import broadcast_index, read
from ...lower.naming import through_aliases
from ...lower.program import commented
from ..base import atom, element, empty_max_check
from .helpers import MATMUL, SIGN
from .scalar import DEVICE

_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
_SHAPE_OF = re.compile(r"^([A-Za-z_]\w*)\.shape\[\d+\]$")
_WRITTEN = re.compile(r"^\s*(?:cuda\.atomic\.\w+\()?([A-Za-z_]\w*)(?:\[[^\]]*\]\s*=[^=]|, )")
_PLACEHOLDER = "\0kernel\0"


class Definition(str):
    """A kernel's text, with its name and a key (the text without the name) that
    tells the same kernel printed again for another function."""

    def __new__(cls, text, name, key):
        self = super().__new__(cls, text)
        self.name, self.key = name, key
        return self


def _define(ctx, text):
    """A fixed module-level block (a helper), once."""
    if text not in ctx.definitions:
        ctx.definitions.append(text)


def _host_names(ctx):
    """The names host code has: values, gradient aliases, and the inputs whose
    shapes give the symbolic dimensions (`x.shape[0]` needs x)."""
    names = set(ctx.names.values()) | set(ctx.alias_of.values())
    names.update(m.group(1) for text in ctx.dims.values() if (m := _SHAPE_OF.match(text)))
    return names


def _scalars(ctx):
    """Scalars the host computes (inputs come in converted to the module's dtype)."""
    names = {name for node, name in ctx.names.items()
             if node.shape == () and node.op is not ops.INPUT and node.dtype == "float"}
    names.update(name for (_, adjoint), name in ctx.alias_of.items() if adjoint.shape == ())
    return names


def _loop(ctx, shape, index):
    """The grid-stride loop over the elements of `shape`: its head, the lines that
    unravel the flat index `__t` into `index`, and the element count."""
    size = ctx.target.dimension(size_of(shape), ctx)
    stride = "cuda.grid(1), {}, cuda.gridsize(1)"
    if len(shape) == 1:
        return f"for {index[0]} in range({stride.format(size)}):", [], size
    lines = []
    for axis in range(len(shape)):
        inner = ctx.target.dimension(size_of(shape[axis + 1:]), ctx)
        text = "__t" if inner == "1" else f"__t // {atom(inner)}"
        if axis > 0:
            text += f" % {atom(ctx.target.dimension(shape[axis], ctx))}"
        lines.append(f"{index[axis]} = {text}")
    return f"for __t in range({stride.format(size)}):", lines, size


def _kernel(ctx, base, shape, index, body, before=(), after=(), local=(), arrays=(), comment=""):
    """Define a kernel over the elements of `shape` (once) and return the line that
    launches it. `body` runs per element, `before`/`after` once per thread; lines are
    text or (text, comment); `local` holds the host names the kernel assigns itself,
    `arrays` the scalars that are device accumulators on the host."""
    head, unravel, size = _loop(ctx, shape, index)

    def rows(lines, pad):
        return [commented(pad + line[0], line[1]) if isinstance(line, tuple) and line[1] else pad + str(line)
                for line in lines]

    lines = rows(before, "    ") + rows([(head, comment)], "    ") + rows([*unravel, *body], " " * 8) + rows(after, "    ")
    host, local = _host_names(ctx), set(local)
    code = [line.split("#")[0] for line in lines]
    used = dict.fromkeys(n for line in code for n in _NAME.findall(line) if n in host and n not in local)
    written = {m.group(1) for line in code if (m := _WRITTEN.match(line))}
    params = [n for n in used if n not in written] + [n for n in used if n in written]   # inputs, outputs
    key = "\n".join([f"def {_PLACEHOLDER}({', '.join(params)}):", *lines])
    if "__sign(" in key:
        _define(ctx, SIGN.format(np=ctx.np, dtype=ctx.dtype))
    name = next((d.name for d in ctx.definitions if isinstance(d, Definition) and d.key == key), None)
    if name is None:
        name = ctx.namer.fresh("__" + base)
        ctx.definitions.append(Definition("@cuda.jit\n" + key.replace(_PLACEHOLDER, name), name, key))
    scalars = _scalars(ctx) - set(arrays) if ctx.dtype != "float64" else set()
    # host scalars may be Python floats (math.exp gives one): float32 kernels take float32
    args = [f"{ctx.np}.{ctx.dtype}({p})" if p in scalars else p for p in params]
    return f"{name}[__grid({size})]({', '.join(args)})"


def _empty(node, ctx, shape=None):
    """A device array for `node` (of `shape`, where given): the module's dtype, int64 for an integer value."""
    return f"__empty({ctx.target.shape(node.shape if shape is None else shape, ctx)}{_int64(node, ctx)})"


def _full(node, ctx, value):
    return f"__full({ctx.target.shape(node.shape, ctx)}, {value}{_int64(node, ctx)})"


def _int64(node, ctx):
    return f", {ctx.np}.int64" if node.dtype == "int" else ""


# ---- fused groups ----------------------------------------------------------------------

def group_statements(group, virtual, ctx, statement):
    """A fused group: its arrays and accumulators, one kernel launch, the sums read back."""
    names = ", ".join(dict.fromkeys(m.op.name for m in group.members))
    index = ctx.loop.index[:len(group.shape)]
    at = f"[{', '.join(index)}]"
    local, body, own = {}, [], set()
    for m in group.members:
        args = [read(i, group, local, virtual, ctx) for i in m.inputs]
        name = ctx.names[m]
        target = name + at if m in group.stored else name
        if m not in group.stored:
            own.add(name)
        body.append((f"{target} = {DEVICE.print_node(m, args, ctx, name)}", m.op.name))
        local[m] = target
    out = [statement(ctx.names[m], _empty(m, ctx), f"{m.op.name}: filled by the kernel")
           for m in group.members if m in group.stored]
    before, after = [], []
    for r in group.reductions:
        name = ctx.names[r]
        out.append(statement(name, "__full((1,), 0.0)", f"{r.op.name}: accumulated by the kernel"))
        before.append((f"__{name} = {ctx.target.constant(0.0, ctx)}", f"{r.op.name}: this thread's part"))
        body.append((f"__{name} += {local[through_aliases(r.inputs[0])]}", r.op.name))
        after.append((f"cuda.atomic.add({name}, 0, __{name})", "one atomic add per thread"))
    launch = _kernel(ctx, ctx.names[group.members[0]], group.shape, index, body, before, after, own,
                     [ctx.names[r] for r in group.reductions], f"fused: {names}")
    out.append(statement("", "", "", [commented(launch, f"fused: {names}")]))
    for r in group.reductions:
        name = ctx.names[r]
        out.append(statement(name, f"{name}[0]", f"{r.op.name}: back on the host"))
        if r.op.name == "mean":
            count = ctx.target.dimension(size_of(r.inputs[0].shape), ctx)
            out.append(statement(name, f"{name} / {atom(count)}", "mean: divide once"))
    return out


# ---- reductions --------------------------------------------------------------------------

def reduction(node, args, ctx, name):
    """sum/mean/max over some axes: to a scalar, each thread's part meets the others
    in one atomic; otherwise one thread per element of the result."""
    src, op = node.inputs[0], node.op.name
    axes, keep = node.attr["axis"], node.attr["keepdims"]
    if src.shape == ():
        return args[0]
    index = ctx.loop.index[:src.ndim]
    value = f"{args[0]}[{', '.join(index)}]"
    lowest = f"-{ctx.np}.inf" if ctx.dtype == "float64" else f"{ctx.np}.{ctx.dtype}(-{ctx.np}.inf)"
    start = lowest if op == "max" else ctx.target.constant(0.0, ctx)
    step = [f"if {value} > __part:", f"    __part = {value}"] if op == "max" else [f"__part += {value}"]
    count = ctx.target.dimension(sp.Mul(*[src.shape[a] for a in axes]), ctx)
    check = empty_max_check(sp.Mul(*[src.shape[a] for a in axes]), ctx) if op == "max" else []
    if len(axes) == src.ndim and not keep:
        launch = _kernel(ctx, name, src.shape, index, step, [(f"__part = {start}", "this thread's part")],
                         [f"cuda.atomic.{'max' if op == 'max' else 'add'}({name}, 0, __part)"], (), [name], op)
        extra = check + [commented(launch, f"{op}: each thread's part, one atomic each"),
                         commented(f"{name} = {name}[0]", f"{op}: back on the host")]
        if op == "mean":
            extra.append(commented(f"{name} = {name} / {atom(count)}", "mean: divide once"))
        return f"__full((1,), {'-' + ctx.np + '.inf' if op == 'max' else '0.0'})", extra
    kept = [a for a in range(src.ndim) if a not in axes]
    body, pad = [f"__part = {start}"], ""
    for a in axes:
        body.append(f"{pad}for {index[a]} in range({ctx.target.dimension(src.shape[a], ctx)}):")
        pad += "    "
    body += [pad + line for line in step]
    result = "__part" if op != "mean" else f"__part / {atom(count)}"
    out_index = [index[a] if a not in axes else "0" for a in range(src.ndim) if a not in axes or keep]
    body.append(f"{name}[{', '.join(out_index)}] = {result}")
    launch = _kernel(ctx, name, tuple(src.shape[a] for a in kept), [index[a] for a in kept], body,
                     comment=f"{op} over axis {', '.join(map(str, axes))}")
    return _empty(node, ctx), check + [launch]


# ---- copies: transpose, broadcast, indexing, scatter, concatenate --------------------------

def transpose(node, args, ctx, name):
    out = ctx.loop.index[:node.ndim]
    src = [None] * node.ndim
    for k, a in enumerate(node.attr["axes"]):
        src[a] = out[k]
    body = [f"{name}[{', '.join(out)}] = {args[0]}[{', '.join(src)}]"]
    return _empty(node, ctx), [_kernel(ctx, name, node.shape, out, body, comment="transpose")]


def broadcast_like(node, args, ctx, name):
    src = node.inputs[0]
    if src.shape == ():   # a scalar fills the array
        return _full(node, ctx, args[0])
    out = ctx.loop.index[:node.ndim]
    body = [f"{name}[{', '.join(out)}] = {args[0]}[{broadcast_index(src.shape, node.shape, out)}]"]
    return _empty(node, ctx), [_kernel(ctx, name, node.shape, out, body, comment="broadcast")]


def basis(node, args, ctx, name):
    """An identity matrix (a kernel writes its diagonal), each row shaped like the input."""
    n = node.shape[0]
    i = ctx.loop.index[0]
    launch = _kernel(ctx, name, (n,), [i], [f"{name}[{i}, {i}] = 1.0"], comment="basis: the diagonal")
    shaped = [] if node.ndim == 2 else [f"{name} = {name}.reshape({ctx.target.shape(node.shape, ctx)})"]
    return f"__full(({n}, {n}), 0.0)", [launch, *shaped]


def tri(node, args, ctx, name):
    """np.tri(n, m, k): a kernel writes the ones (where column <= row + k) into zeros."""
    i, j = ctx.loop.index[:2]
    body = [f"if {j} <= {i} + {node.attr['k']}:", f"    {name}[{i}, {j}] = 1.0"]
    launch = _kernel(ctx, name, node.shape, [i, j], body, comment="tri: the ones")
    return f"__full({ctx.target.shape(node.shape, ctx)}, 0.0)", [launch]


def zeros_like(node, args, ctx, name):
    if node.shape == ():
        return ctx.target.constant(0.0, ctx)
    return f"__full({ctx.target.shape(node.shape, ctx)}, 0.0)"


def reshape(node, args, ctx, name):
    """A view: every device array the module makes or takes is C-contiguous."""
    src = node.inputs[0]
    if node.shape == ():   # one element, read back to the host
        return element(args[0], src.ndim)
    if src.shape == ():
        return _full(node, ctx, args[0])
    return f"{atom(args[0])}.reshape({ctx.target.shape(node.shape, ctx)})"


def _source_index(key, shape, out, ctx):
    """Indexing with the normalised `key` (indexing.py): the source element that the
    element `out` (index names, one per result axis) reads."""
    src, k = [], 0
    for item in key:
        if item[0] == "n":   # a new unit axis reads no source axis
            k += 1
            continue
        d = shape[len(src)]
        if item[0] == "i":
            src.append(str(item[1]) if item[1] >= 0 else ctx.target.dimension(sp.sympify(d) + item[1], ctx))
            continue
        if item[1:] == (None, None, None):
            src.append(out[k])
        else:   # a slice of a static axis (indexing.py allows no other)
            begin, _, step = slice(*item[1:]).indices(d)
            scaled = out[k] if abs(step) == 1 else f"{abs(step)}*{out[k]}"
            src.append(scaled if begin == 0 else f"{begin} {'+' if step > 0 else '-'} {scaled}")
        k += 1
    src += out[k:k + len(shape) - len(src)]
    return ", ".join(src)


def getitem(node, args, ctx, name):
    src = node.inputs[0]
    if src.shape == ():   # a number given new unit axes (x[None]): an array holding it
        return _full(node, ctx, args[0])
    out = ctx.loop.index[:node.ndim]
    at = _source_index(node.attr["index"], src.shape, out, ctx)
    if node.shape == ():   # one element, read back to the host
        return f"{atom(args[0])}[{at}]"
    body = [f"{name}[{', '.join(out)}] = {args[0]}[{at}]"]
    return _empty(node, ctx), [_kernel(ctx, name, node.shape, out, body, comment="index")]


def scatter(node, args, ctx, name):
    """Zeros, with the values written where the indexing read them (its VJP)."""
    v = node.inputs[0]
    if node.shape == ():   # into a number (the VJP of x[None]): v's one element
        return element(args[0], v.ndim)
    out = ctx.loop.index[:v.ndim]
    value = f"{args[0]}[{', '.join(out)}]" if v.shape != () else args[0]
    body = [f"{name}[{_source_index(node.attr['index'], node.shape, out, ctx)}] = {value}"]
    launch = _kernel(ctx, name, v.shape, out, body, comment="scatter")
    return f"__full({ctx.target.shape(node.shape, ctx)}, 0.0)", [launch]


def concatenate(node, args, ctx, name):
    axis = node.attr["axis"]
    out = ctx.loop.index[:node.ndim]
    body, start = [], sp.Integer(0)
    for k, (part, arg) in enumerate(zip(node.inputs, args)):
        stop = start + sp.sympify(part.shape[axis])
        at = list(out)
        if start != 0:
            at[axis] = f"{out[axis]} - {atom(ctx.target.dimension(start, ctx))}"
        test = "else:" if 0 < k == len(args) - 1 else \
            f"{'if' if k == 0 else 'elif'} {out[axis]} < {ctx.target.dimension(stop, ctx)}:"
        body += [test, f"    {name}[{', '.join(out)}] = {arg}[{', '.join(at)}]"]
        start = stop
    return _empty(node, ctx), [_kernel(ctx, name, node.shape, out, body, comment="concatenate")]


# ---- matrix products ----------------------------------------------------------------------

def matmul(node, args, ctx, name):
    a, b = node.inputs
    _define(ctx, MATMUL.format(np=ctx.np, dtype=ctx.dtype))
    return f"__matmul({args[0]}, {args[1]})"


TABLE = {"matmul": matmul, "transpose": transpose, "sum": reduction, "mean": reduction,
         "max": reduction, "reshape": reshape, "broadcast_like": broadcast_like, "broadcast_to": broadcast_like,
         "basis": basis, "tri": tri,
         "zeros_like": zeros_like, "getitem": getitem, "scatter": scatter, "concatenate": concatenate}
