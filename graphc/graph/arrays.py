"""NumPy's array operations beyond the primitives, by NumPy's names and signatures: axes
moved and swapped, rolls, splits, pads, repeats and tiles, diagonals and traces, triangles,
min, prod, var, std, cumsum, and PyTorch's gelu. (einsum and tensordot: contract.py.)

Each is built from the primitives (transpose, reshape, broadcast_to, the reductions, matmul,
static indexing, concatenation, elementwise ops), so its VJP, its JVP and every target's
printing are theirs, already tested; a function here only normalises its arguments and says
in a GraphError what is wrong. The one new structural op is `tri` (np.tri: a triangle of
ones), the mask behind tril, triu and cumsum; gelu is two elementwise ops by their formulas.
"""
from __future__ import annotations

import builtins
import math
import numbers

import numpy as np

from .elementwise import elementwise
from .indexing import concatenate, getitem
from .ir import GraphError, dim, format_shape, size_of
from .lazy import sp
from .ops import apply, const, structural
from .primitives import sqrt
from .structural import _axes, _reduced, _tensor, broadcast_to, max, mean, reshape, transpose
from .tensor import Tensor

# ---- helpers ------------------------------------------------------------------------------

def fail(x, what, message):
    """A GraphError naming the graph, the function and the shape it was given."""
    raise GraphError(f"graph '{x.graph.name}': {what} of shape {format_shape(x.shape)}: {message}")


def _int(x, what, name, value, low=None):
    """`value` as an int (a Python or NumPy integer, not a bool), at least `low`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        fail(x, what, f"{name} must be an int, got {value!r}")
    if low is not None and value < low:
        fail(x, what, f"{name} must be {low} or more, got {value}")
    return int(value)


def axis_of(x, axis, what):
    """One axis of x, normalised (a negative one counts from the end)."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral) or not -x.ndim <= axis < x.ndim:
        fail(x, what, f"axis {axis!r} is out of range")
    return int(axis) % x.ndim


def _axis_list(x, axes, what):
    """An int or a sequence of them: distinct normalised axes, in the order given."""
    out = [axis_of(x, a, what) for a in (axes if isinstance(axes, (tuple, list)) else (axes,))]
    if len(set(out)) != len(out):
        fail(x, what, f"repeated axis in {axes!r}")
    return out


def static(x, axis, what):
    """The size of `axis`, which must be a number: slicing needs one."""
    d = x.shape[axis]
    if not isinstance(d, int):
        fail(x, what, f"axis {axis} has the symbolic size {d}; {what} needs a static size there")
    return d


def take(x, axis, start, stop, step=None):
    """x[..., start:stop:step] along `axis` of static size; x itself for all of it."""
    if slice(start, stop, step).indices(x.shape[axis]) == (0, x.shape[axis], 1):
        return x
    return getitem(x, (slice(None),) * axis + (slice(start, stop, step),))


def _full(x, value, shape):
    """`value` everywhere in `shape`, in x's graph: a constant broadcast, so no gradient."""
    return broadcast_to(Tensor(x.graph, const(x.graph, value)), shape)


# ---- axes: transposes -----------------------------------------------------------------------

def swapaxes(x, axis1, axis2):
    """np.swapaxes: a transpose that exchanges two axes."""
    x = _tensor(x, "swapaxes")
    a, b = axis_of(x, axis1, "swapaxes"), axis_of(x, axis2, "swapaxes")
    order = list(range(x.ndim))
    order[a], order[b] = b, a
    return transpose(x, tuple(order))


def moveaxis(x, source, destination):
    """np.moveaxis: a transpose that puts the `source` axes at `destination`, the others
    keeping their order."""
    x = _tensor(x, "moveaxis")
    src, dst = _axis_list(x, source, "moveaxis"), _axis_list(x, destination, "moveaxis")
    if len(src) != len(dst):
        fail(x, "moveaxis", f"source {source!r} and destination {destination!r} differ in length")
    order = [k for k in range(x.ndim) if k not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, tuple(order))


# ---- reductions --------------------------------------------------------------------------------

def min(x, axis=None, keepdims=False):
    """np.min, as -max(-x): the max gate routes the gradient to the smallest entries (ties
    share it, as for max), and the two negations fuse into the loops around it."""
    return -max(-_tensor(x, "min"), axis, keepdims)


def prod(x, axis=None, keepdims=False):
    """np.prod: the axes moved last and merged into one, then halved by pairwise products,
    log2(n) of them. No division anywhere, so the gradient, each factor's product of all the
    others, is exact where entries are 0 (where the textbook y/x is nan)."""
    x = _tensor(x, "prod")
    axes = _axes(x, axis)
    if not axes:
        return x
    kept = tuple(k for k in range(x.ndim) if k not in axes)
    n = size_of(tuple(x.shape[a] for a in axes))
    if not isinstance(n, int):
        fail(x, "prod", f"the axes {axes} have the symbolic size {n}; prod needs a static one")
    out_shape = _reduced(x.shape, axes, keepdims)
    if n == 0:   # the empty product
        return _full(x, 1, out_shape)
    flat = reshape(transpose(x, kept + axes), tuple(x.shape[k] for k in kept) + (n,))
    last = flat.ndim - 1
    while flat.shape[last] > 1:
        m = flat.shape[last]
        pairs = take(flat, last, 0, m - 1, 2) * take(flat, last, 1, m, 2)
        # an odd one out goes on to the next round as it is (as if paired with a 1)
        flat = concatenate([pairs, take(flat, last, m - 1, m)], last) if m % 2 else pairs
    return reshape(flat, out_shape)


def var(x, axis=None, ddof=0, keepdims=False):
    """np.var: the mean squared deviation from the mean, times n/(n - ddof) (ddof=1: the
    unbiased estimate, PyTorch's default)."""
    x = _tensor(x, "var")
    axes = _axes(x, axis)
    if isinstance(ddof, bool) or not isinstance(ddof, numbers.Real) or ddof < 0:
        fail(x, "var", f"ddof must be a number 0 or more, got {ddof!r}")
    n = sp.sympify(size_of(tuple(x.shape[a] for a in axes)))
    if (n - ddof).is_nonpositive:
        fail(x, "var", f"ddof={ddof} leaves no degrees of freedom from {n} elements")
    d = x - mean(x, axes, keepdims=True)
    return mean(d * d, axes, keepdims) * (n / (n - sp.nsimplify(ddof)))


def std(x, axis=None, ddof=0, keepdims=False):
    """np.std: the square root of var."""
    return sqrt(var(x, axis, ddof, keepdims))


# ---- triangles: one structural op, np.tri ---------------------------------------------------------

def _tri_ref(like, n, m, k):
    return np.tri(n, m, k, dtype=np.result_type(like, 1.0))


# A constant (no gradient flows into `like`, whose value is not read) that the targets print
# (np.tri; a kernel on the GPU) rather than a graph of comparisons of index ranges.
TRI = structural("tri", 1, lambda attrs, like: (attrs["n"], attrs["m"]), lambda g, y, like, **attrs: (None,),
                 params=(("n", None), ("m", None), ("k", 0)), ref=_tri_ref, symbol="tri", nondiff=(0,))


def tri(like, n, m=None, k=0):
    """np.tri(n, m, k) in `like`'s graph: an (n, m) matrix of ones where column <= row + k,
    zeros elsewhere."""
    like = _tensor(like, "tri")
    try:
        n, m = dim(n), dim(n if m is None else m)
    except GraphError as e:
        raise GraphError(f"graph '{like.graph.name}': tri: {e}") from None
    return apply(TRI, (like,), n=n, m=m, k=_int(like, "tri", "k", k))


def _matrices(x, what):
    x = _tensor(x, what)
    if x.ndim < 2:
        fail(x, what, "needs at least 2 axes (a matrix, or a stack of them)")
    return x


def tril(x, k=0):
    """np.tril: x with the entries above the k-th diagonal zeroed (x times a triangle of ones)."""
    x = _matrices(x, "tril")
    return x * tri(x, x.shape[-2], x.shape[-1], _int(x, "tril", "k", k))


def triu(x, k=0):
    """np.triu: x with the entries below the k-th diagonal zeroed (x times the triangle's complement)."""
    x = _matrices(x, "triu")
    return x * (1 - tri(x, x.shape[-2], x.shape[-1], _int(x, "triu", "k", k) - 1))


def cumsum(x, axis=None):
    """np.cumsum (axis None: of the flattened x). The summed axis moved first and the others
    merged, y = L @ x with L the (n, n) lower triangle of ones: y_i = sum of x_j for j <= i.
    Its VJP, L.T @ g, sums g from the end: the reverse cumsum, as the gradient must be."""
    x = _tensor(x, "cumsum")
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    a = axis_of(x, axis, "cumsum")
    first = moveaxis(x, a, 0)
    n = first.shape[0]
    flat = first if first.ndim <= 2 else reshape(first, (n, -1))
    return moveaxis(reshape(tri(x, n, n) @ flat, first.shape), 0, a)


# ---- slices and concatenation: roll, split, pad -----------------------------------------------------

def roll(x, shift, axis=None):
    """np.roll: along each axis, the last `shift` entries moved to the front (two slices
    joined). axis None: of the flattened x, shaped back."""
    x = _tensor(x, "roll")
    if axis is None:
        return reshape(roll(reshape(x, (-1,)), shift, 0), x.shape)
    shifts = list(shift) if isinstance(shift, (tuple, list)) else [shift]
    axes = list(axis) if isinstance(axis, (tuple, list)) else [axis]
    if len(shifts) != len(axes) and builtins.min(len(shifts), len(axes)) != 1:
        fail(x, "roll", f"shift {shift!r} and axis {axis!r} do not broadcast together")
    total = {}
    for s, a in zip(shifts * (len(axes) if len(shifts) == 1 else 1), axes * (len(shifts) if len(axes) == 1 else 1)):
        a = axis_of(x, a, "roll")
        total[a] = total.get(a, 0) + _int(x, "roll", "shift", s)
    for a, s in total.items():
        n = static(x, a, "roll")
        s = s % n if n else 0
        if s:
            x = concatenate([take(x, a, n - s, n), take(x, a, 0, n - s)], a)
    return x


def split(x, indices_or_sections, axis=0):
    """np.split: a list of slices along `axis`: N equal sections (N must divide its size), or
    the pieces between the sorted indices given, as NumPy slices them."""
    x = _tensor(x, "split")
    a = axis_of(x, axis, "split")
    n = static(x, a, "split")
    if isinstance(indices_or_sections, numbers.Integral) and not isinstance(indices_or_sections, bool):
        sections = _int(x, "split", "the number of sections", indices_or_sections, 1)
        if n % sections:
            fail(x, "split", f"{sections} sections do not divide axis {a} of size {n} equally")
        bounds = [k * (n // sections) for k in range(sections + 1)]
    elif isinstance(indices_or_sections, (tuple, list, np.ndarray)):
        bounds = [0, *(_int(x, "split", "an index", i) for i in indices_or_sections), n]
    else:
        fail(x, "split", f"indices_or_sections must be an int or a sequence of ints, got {indices_or_sections!r}")
    return [take(x, a, lo, hi) for lo, hi in zip(bounds, bounds[1:])]


def _pad_pairs(x, pad_width):
    """NumPy's pad_width forms (n; (before, after); ((before, after),); one pair per axis) as
    one (before, after) pair per axis."""
    w = np.asarray(pad_width, dtype=object)
    if w.size == 0 or w.ndim > 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                            for v in w.ravel()):
        fail(x, "pad", f"pad_width must be ints: n, (before, after) or one pair per axis; got {pad_width!r}")
    w = w.astype(np.int64)
    if (w < 0).any():
        fail(x, "pad", f"pad_width cannot be negative, got {pad_width!r}")
    if w.size == 1:
        w = w.reshape(1)[[0, 0]]
    elif w.size == 2 and w.shape != (2, 1):
        w = w.reshape(2)
    try:
        return np.broadcast_to(w, (x.ndim, 2)).tolist()
    except ValueError:
        fail(x, "pad", f"pad_width {pad_width!r} does not give one (before, after) pair per axis")


def pad(x, pad_width, mode="constant", constant_values=0):
    """np.pad in mode "constant": along each axis, blocks of `constant_values` joined before
    and after x. The blocks are a constant broadcast, so the gradient is x's slice of g."""
    x = _tensor(x, "pad")
    if mode != "constant":
        fail(x, "pad", f"only mode 'constant' is supported, got {mode!r}")
    if isinstance(constant_values, bool) or not isinstance(constant_values, numbers.Real):
        fail(x, "pad", f"constant_values must be a number, got {constant_values!r}")
    for a, (before, after) in enumerate(_pad_pairs(x, pad_width)):
        block = lambda w: _full(x, constant_values, x.shape[:a] + (w,) + x.shape[a + 1:])  # noqa: E731
        parts = ([block(before)] if before else []) + [x] + ([block(after)] if after else [])
        x = concatenate(parts, a) if len(parts) > 1 else x
    return x


# ---- repeat and tile: a new axis, broadcast, merged ------------------------------------------------

def _repeat_each(x, a, r):
    """Each entry along axis `a` r times in a row: a unit axis after `a`, broadcast to r,
    merged into `a`."""
    if r == 1:
        return x
    wide = broadcast_to(getitem(x, (slice(None),) * (a + 1) + (None,)), x.shape[:a + 1] + (r,) + x.shape[a + 1:])
    return reshape(wide, x.shape[:a] + (x.shape[a] * r,) + x.shape[a + 1:])


def repeat(x, repeats, axis=None):
    """np.repeat: each entry along `axis` `repeats` times (axis None: of the flattened x).
    Per-entry repeats: each run of equal counts repeated as one slice, the runs joined."""
    x = _tensor(x, "repeat")
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    a = axis_of(x, axis, "repeat")
    if np.ndim(repeats) == 0:
        return _repeat_each(x, a, _int(x, "repeat", "repeats", repeats, 0))
    counts = [_int(x, "repeat", "repeats", r, 0) for r in np.ravel(repeats)]
    n = static(x, a, "repeat")
    if len(counts) == 1:
        return _repeat_each(x, a, counts[0])
    if len(counts) != n:
        fail(x, "repeat", f"{len(counts)} repeats for the {n} entries of axis {a}")
    runs, start = [], 0
    for k in range(1, n + 1):
        if k == n or counts[k] != counts[start]:
            runs.append((start, k, counts[start]))
            start = k
    parts = [_repeat_each(take(x, a, lo, hi), a, r) for lo, hi, r in runs if r]
    if not parts:
        return _repeat_each(x, a, 0)
    return parts[0] if len(parts) == 1 else concatenate(parts, a)


def tile(x, reps):
    """np.tile: x repeated `reps[k]` times along axis k as a whole (reps and x's shape padded
    with leading 1s to one length): a unit axis before each tiled axis, broadcast, merged."""
    x = _tensor(x, "tile")
    reps = [_int(x, "tile", "reps", r, 0) for r in np.ravel(np.asarray(reps, dtype=object))]
    nd = builtins.max(x.ndim, len(reps))
    reps = [1] * (nd - len(reps)) + reps
    x = reshape(x, (1,) * (nd - x.ndim) + x.shape)
    if all(r == 1 for r in reps):
        return x
    index, wide = [], []
    for r, d in zip(reps, x.shape):
        if r != 1:
            index.append(None)
            wide.append(r)
        index.append(slice(None))
        wide.append(d)
    return reshape(broadcast_to(getitem(x, tuple(index)), tuple(wide)), tuple(r * d for r, d in zip(reps, x.shape)))


# ---- diagonals --------------------------------------------------------------------------------------

def diagonal(x, offset=0, axis1=0, axis2=1):
    """np.diagonal: the two axes moved last and merged into one of n1*n2 entries, where the
    diagonal is a strided slice (from `offset`, every n2 + 1); it is the result's last axis."""
    x = _matrices(x, "diagonal")
    a1, a2 = axis_of(x, axis1, "diagonal"), axis_of(x, axis2, "diagonal")
    if a1 == a2:
        fail(x, "diagonal", f"axis1 and axis2 are the same axis ({a1})")
    offset = _int(x, "diagonal", "offset", offset)
    n1, n2 = static(x, a1, "diagonal"), static(x, a2, "diagonal")
    length = builtins.max(0, builtins.min(n1, n2 - offset) if offset >= 0 else builtins.min(n1 + offset, n2))
    moved = moveaxis(x, (a1, a2), (-2, -1))
    flat = reshape(moved, moved.shape[:-2] + (n1 * n2,))
    start = offset if offset >= 0 else -offset * n2
    stop = start + (length - 1) * (n2 + 1) + 1 if length else start
    return getitem(flat, (slice(None),) * (flat.ndim - 1) + (slice(start, stop, n2 + 1),))


def trace(x, offset=0, axis1=0, axis2=1):
    """np.trace: the sum of the diagonal."""
    d = diagonal(x, offset, axis1, axis2)
    return d.sum(axis=-1)


# ---- gelu: PyTorch's two forms, elementwise by their formulas ------------------------------------

def np_erf(x):
    """erf elementwise for NumPy, which has none: SciPy's where it is installed (it keeps
    float32), else math.erf element by element."""
    try:
        from scipy.special import erf
    except ImportError:
        out = np.vectorize(math.erf, otypes=[np.result_type(x, 1.0)])(x)
        return out[()]
    return erf(x)


# lazy: SymPy builds the formulas on first use (lazy.py); 44715/10**6 is PyTorch's 0.044715
_gelu = elementwise("gelu", lambda x: x / 2 * (1 + sp.erf(x / sp.sqrt(2))), lazy=True,
                    ref=lambda x: x / 2 * (1 + np_erf(x / np.sqrt(2.0))), symbol="gelu")
_gelu_tanh = elementwise("gelu_tanh",
                         lambda x: x / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 10 ** 6) * x ** 3))),
                         ref=lambda x: x / 2 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
                         symbol="gelu", lazy=True)


def gelu(x, approximate="none"):
    """PyTorch's gelu: x * Phi(x), Phi the normal distribution function, exactly with erf
    (approximate="none") or with PyTorch's tanh formula (approximate="tanh")."""
    if approximate == "none":
        return _gelu(x)
    if approximate == "tanh":
        return _gelu_tanh(x)
    fail(_tensor(x, "gelu"), "gelu", f"approximate must be 'none' or 'tanh', got {approximate!r}")
