"""np.einsum and np.tensordot, as contractions of pairs of operands.

(A module beside arrays.py, whose 400 lines hold the other array operations.)

Each operand first loses its repeated indices (a diagonal, arrays.diagonal) and the indices
no one else reads (a sum). Then the operands are combined left to right, each pair as one
matrix product: both transposed to (shared kept indices, own indices, contracted indices)
and reshaped to a stack of matrices, so that the product is a (batched) matmul and the
result is reshaped back. A pair with nothing to contract is a broadcast product. No full
outer product of all the indices is ever built, and the VJPs and JVPs are matmul's,
transpose's and reshape's.
"""
from __future__ import annotations

import numbers
import string
from collections import Counter

from .arrays import axis_of, diagonal, fail
from .ir import GraphError, format_shape, size_of
from .structural import _tensor, reshape, sum, transpose

_LETTERS = string.ascii_letters


def _parse(subscripts, xs):
    """(the indices of each operand, the output's indices), checked against the operands."""
    x0 = xs[0]
    if not isinstance(subscripts, str):
        fail(x0, "einsum", f"subscripts must be a string like 'ij,jk->ik', got {subscripts!r}")
    text = subscripts.replace(" ", "")
    if "." in text:
        fail(x0, "einsum", f"subscripts {subscripts!r}: an ellipsis (...) is not supported; name every axis")
    lhs, arrow, rhs = text.partition("->")
    inputs = lhs.split(",")
    bad = sorted(set(lhs.replace(",", "") + rhs) - set(_LETTERS))
    if bad or "-" in rhs or ">" in rhs:
        fail(x0, "einsum", f"subscripts {subscripts!r}: indices are letters, got {''.join(bad) or '->'}")
    if len(inputs) != len(xs):
        fail(x0, "einsum", f"subscripts {subscripts!r} name {len(inputs)} operands, got {len(xs)}")
    sizes = {}
    for k, (x, s) in enumerate(zip(xs, inputs)):
        if len(s) != x.ndim:
            raise GraphError(f"graph '{x0.graph.name}': einsum {subscripts!r}: operand {k} of shape "
                             f"{format_shape(x.shape)} has {x.ndim} axes, its subscripts {s!r} {len(s)}")
        for c, d in zip(s, x.shape):
            if sizes.setdefault(c, d) != d:
                raise GraphError(f"graph '{x0.graph.name}': einsum {subscripts!r}: index {c!r} has size "
                                 f"{sizes[c]} in one place and {d} in operand {k} of shape {format_shape(x.shape)}")
    if not arrow:   # NumPy's implicit output: the indices seen once, in alphabetical order
        counts = Counter(lhs.replace(",", ""))
        return inputs, "".join(sorted(c for c in counts if counts[c] == 1))
    if len(set(rhs)) != len(rhs) or set(rhs) - set(lhs):
        fail(x0, "einsum", f"subscripts {subscripts!r}: the output's indices must be distinct indices of the operands")
    return inputs, rhs


def _distinct(x, s):
    """An operand with an index repeated in its own subscripts ('ii') reduced to the
    diagonal: one axis for that index, last."""
    while len(set(s)) < len(s):
        c = next(c for c in s if s.count(c) > 1)
        i = s.index(c)
        j = s.index(c, i + 1)
        x, s = diagonal(x, 0, i, j), s[:i] + s[i + 1:j] + s[j + 1:] + c
    return x, s


def _keep(x, s, needed):
    """The operand with the indices that nothing else needs summed away."""
    axes = tuple(k for k, c in enumerate(s) if c not in needed)
    if not axes:
        return x, s
    return sum(x, axes), "".join(c for c in s if c in needed)


def _arranged(x, s, order, shape):
    """x (indices s) transposed to the index order `order`, then reshaped to `shape`."""
    return reshape(transpose(x, tuple(s.index(c) for c in order)), shape)


def _pair(x, s, y, t, keep):
    """x (indices s) and y (indices t) multiplied, summing the shared indices not in `keep`:
    one matmul of stacks (batch..., M, K) @ (batch..., K, N)."""
    batch = [c for c in s if c in t and c in keep]
    summed = [c for c in s if c in t and c not in keep]
    left, right = [c for c in s if c not in t], [c for c in t if c not in s]
    dims = {**dict(zip(s, x.shape)), **dict(zip(t, y.shape))}
    shape = lambda cs: tuple(dims[c] for c in cs)  # noqa: E731
    out = batch + left + right
    if not summed:   # nothing to contract: a broadcast product, not a matmul over K = 1
        a = _arranged(x, s, batch + left, shape(batch + left) + (1,) * len(right))
        b = _arranged(y, t, batch + right, shape(batch) + (1,) * len(left) + shape(right))
        return a * b, "".join(out)
    m, k, n = (size_of(shape(cs)) for cs in (left, summed, right))
    a = _arranged(x, s, batch + left + summed, shape(batch) + (m, k))
    b = _arranged(y, t, batch + summed + right, shape(batch) + (k, n))
    return reshape(a @ b, shape(out)), "".join(out)


def _contract(terms, output):
    """The einsum of `terms` ((operand, its indices) each, indices distinct or not) into the
    indices `output`."""
    terms = [_distinct(x, s) for x, s in terms]
    x, s = terms[0]
    for k in range(1, len(terms)):
        y, t = terms[k]
        later = set(output).union(*(u for _, u in terms[k + 1:]))
        x, s = _keep(x, s, later | set(t))
        y, t = _keep(y, t, later | set(s))
        x, s = _pair(x, s, y, t, later)
    x, s = _keep(x, s, set(output))
    return transpose(x, tuple(s.index(c) for c in output))


def einsum(subscripts, *operands):
    """np.einsum(subscripts, *operands) for subscripts without an ellipsis: explicit
    ('ij,jk->ik') or implicit ('ij,jk': the indices seen once, alphabetically); an index
    repeated in one operand takes its diagonal ('ii->i', 'ii'); an index missing from the
    output is summed."""
    if not operands:
        raise GraphError("einsum needs at least one operand")
    xs = [_tensor(x, "einsum") for x in operands]
    inputs, output = _parse(subscripts, xs)
    return _contract(list(zip(xs, inputs)), output)


def _axes_pair(a, axes):
    """tensordot's axes: an int N (a's last N, b's first N) or a pair of axes or of sequences."""
    if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
        return None
    try:
        ax_a, ax_b = axes
    except (TypeError, ValueError):
        fail(a, "tensordot", f"axes must be an int or a pair of sequences of axes, got {axes!r}")
    return [ax if isinstance(ax, (tuple, list)) else [ax] for ax in (ax_a, ax_b)]


def tensordot(a, b, axes=2):
    """np.tensordot: the sum over a's `axes[0]` against b's `axes[1]`; the result has a's
    other axes, then b's. One einsum contraction (a single matmul)."""
    a, b = _tensor(a, "tensordot"), _tensor(b, "tensordot")
    pair = _axes_pair(a, axes)
    if pair is None:
        if not 0 <= axes <= min(a.ndim, b.ndim):
            raise GraphError(f"graph '{a.graph.name}': tensordot of shapes {format_shape(a.shape)} and "
                             f"{format_shape(b.shape)}: axes={axes} is not between 0 and {min(a.ndim, b.ndim)}")
        axes = int(axes)
        pair = [list(range(a.ndim - axes, a.ndim)), list(range(axes))]
    ax_a, ax_b = [axis_of(a, k, "tensordot") for k in pair[0]], [axis_of(b, k, "tensordot") for k in pair[1]]
    if len(ax_a) != len(ax_b) or len(set(ax_a)) != len(ax_a) or len(set(ax_b)) != len(ax_b):
        fail(a, "tensordot", f"axes {axes!r} must name as many distinct axes of each operand")
    for i, j in zip(ax_a, ax_b):
        if a.shape[i] != b.shape[j]:
            raise GraphError(f"graph '{a.graph.name}': tensordot of shapes {format_shape(a.shape)} and "
                             f"{format_shape(b.shape)}: axis {i} ({a.shape[i]}) and axis {j} ({b.shape[j]}) differ")
    if a.ndim + b.ndim > len(_LETTERS):
        fail(a, "tensordot", f"{a.ndim + b.ndim} axes in all is more than einsum's {len(_LETTERS)} indices")
    sa, sb = _LETTERS[:a.ndim], list(_LETTERS[a.ndim:a.ndim + b.ndim])
    for i, j in zip(ax_a, ax_b):
        sb[j] = sa[i]
    out = [c for k, c in enumerate(sa) if k not in ax_a] + [c for k, c in enumerate(sb) if k not in ax_b]
    return _contract([(a, sa), (b, "".join(sb))], "".join(out))
