"""Reverse mode: fan-out, broadcasting, matmul shapes, reductions, indexing,
higher derivatives, and long chains. Every expected gradient is derived by
hand (NumPy) or by central differences, never taken from graphc itself."""

import time
import zlib

import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seeded(request):
    """Each test draws the same numbers however the tests are selected."""
    global RNG
    RNG = np.random.default_rng(zlib.crc32(request.node.name.encode()))


def rand(*shape):
    return RNG.standard_normal(shape)


def central(f, x, h=1e-6):
    """Central differences of the scalar f at the array x."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        g[idx] = (f(plus) - f(minus)) / (2 * h)
    return g


# ---- fan-out: the copy gate adds -------------------------------------------------------

def test_fan_out_scalar(target):
    @gc.graph
    def f(x):
        return x * x + x

    value, (g,) = gc.compile(f, target=target).value_and_grad(3.0)
    assert value == 12.0
    assert g == 7.0                      # 2x + 1


def test_fan_out_tensor_and_deep_reuse(target):
    @gc.graph
    def f(x: gc.Tensor[4]):
        y = gc.sin(x)
        return gc.sum(y * y + y * x + gc.exp(y))

    x = np.array([0.1, -0.7, 1.3, 2.0])
    fn = gc.compile(f, target=target)
    value, (g,) = fn.value_and_grad(x)
    s, c = np.sin(x), np.cos(x)
    assert value == pytest.approx(np.sum(s * s + s * x + np.exp(s)), rel=1e-14)
    np.testing.assert_allclose(g, 2 * s * c + c * x + s + np.exp(s) * c, rtol=1e-13)


def test_fan_out_source_says_the_copy_gate_adds(target):
    @gc.graph
    def f(x):
        return x * x + x

    assert "copy gate adds" in gc.compile(f, target=target).source


# ---- broadcasting: gradients summed back ------------------------------------------------

def test_bias_broadcast_over_rows(target):
    @gc.graph
    def f(X: gc.Tensor[4, 3], b: gc.Tensor[3]):
        return gc.sum(gc.tanh(X + b))

    X, b = rand(4, 3), rand(3)
    value, (gX, gb) = gc.compile(f, target=target).value_and_grad(X, b)
    local = 1 - np.tanh(X + b) ** 2
    np.testing.assert_allclose(gX, local, rtol=1e-13)
    np.testing.assert_allclose(gb, local.sum(axis=0), rtol=1e-13)
    assert gb.shape == (3,)


def test_column_broadcast_keeps_its_unit_axis(target):
    @gc.graph
    def f(a: gc.Tensor[4, 1], B: gc.Tensor[4, 3]):
        return gc.sum((a * B) ** 2)

    a, B = rand(4, 1), rand(4, 3)
    _, (ga, gB) = gc.compile(f, target=target).value_and_grad(a, B)
    assert ga.shape == (4, 1) and gB.shape == (4, 3)
    np.testing.assert_allclose(ga, np.sum(2 * a * B * B, axis=1, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(gB, 2 * a * a * B, rtol=1e-13)


def test_scalar_broadcast_against_a_matrix(target):
    @gc.graph
    def f(s, M: gc.Tensor[2, 3]):
        return gc.sum(gc.sin(s * M - s))

    s, M = 0.7, rand(2, 3)
    _, (gs, gM) = gc.compile(f, target=target).value_and_grad(s, M)
    c = np.cos(s * M - s)
    assert isinstance(gs, float)
    assert gs == pytest.approx(np.sum(c * (M - 1)), rel=1e-13)
    np.testing.assert_allclose(gM, c * s, rtol=1e-13)


def test_both_sides_broadcast(target):
    @gc.graph
    def f(r: gc.Tensor[1, 3], c: gc.Tensor[2, 1]):
        return gc.sum(r * c + r / (c * c + 1))

    r, c = rand(1, 3), rand(2, 1)
    _, (gr, gc_) = gc.compile(f, target=target).value_and_grad(r, c)
    objective_r = lambda v: np.sum(v * c + v / (c * c + 1))  # noqa: E731
    objective_c = lambda v: np.sum(r * v + r / (v * v + 1))  # noqa: E731
    np.testing.assert_allclose(gr, central(objective_r, r), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gc_, central(objective_c, c), rtol=1e-6, atol=1e-9)


# ---- matmul -------------------------------------------------------------------------------

def _projected(graph_fn, *arrays, target="numpy"):
    """value, grads of a non-scalar output through a random seed; and the seed."""
    fn = gc.compile(graph_fn, target=target)
    out = fn.forward(*arrays)
    seed = RNG.standard_normal(np.shape(out))
    return out, fn.backward(*arrays, grad_out=seed), seed


def test_matrix_at_vector(target):
    @gc.graph
    def f(A: gc.Tensor[3, 4], v: gc.Tensor[4]):
        return A @ v

    A, v = rand(3, 4), rand(4)
    out, (gA, gv), g = _projected(f, A, v, target=target)
    np.testing.assert_allclose(out, A @ v, rtol=1e-13)
    np.testing.assert_allclose(gA, np.outer(g, v), rtol=1e-13)
    np.testing.assert_allclose(gv, A.T @ g, rtol=1e-13)


def test_vector_at_matrix(target):
    @gc.graph
    def f(v: gc.Tensor[4], A: gc.Tensor[4, 3]):
        return v @ A

    v, A = rand(4), rand(4, 3)
    out, (gv, gA), g = _projected(f, v, A, target=target)
    np.testing.assert_allclose(out, v @ A, rtol=1e-13)
    np.testing.assert_allclose(gv, A @ g, rtol=1e-13)
    np.testing.assert_allclose(gA, np.outer(v, g), rtol=1e-13)


def test_vector_at_vector(target):
    @gc.graph
    def f(u: gc.Tensor[5], v: gc.Tensor[5]):
        return u @ v

    u, v = rand(5), rand(5)
    value, (gu, gv) = gc.compile(f, target=target).value_and_grad(u, v)
    assert value == pytest.approx(u @ v, rel=1e-13)
    np.testing.assert_allclose(gu, v, rtol=1e-15)
    np.testing.assert_allclose(gv, u, rtol=1e-15)


def test_batched_matmul_3d_at_2d(target):
    @gc.graph
    def f(X: gc.Tensor[2, 3, 4], W: gc.Tensor[4, 5]):
        return X @ W

    X, W = rand(2, 3, 4), rand(4, 5)
    out, (gX, gW), g = _projected(f, X, W, target=target)
    np.testing.assert_allclose(out, X @ W, rtol=1e-13)
    np.testing.assert_allclose(gX, g @ W.T, rtol=1e-13)
    np.testing.assert_allclose(gW, np.einsum("bij,bik->jk", X, g), rtol=1e-12)


def test_batched_vector_at_3d(target):
    @gc.graph
    def f(v: gc.Tensor[4], X: gc.Tensor[2, 4, 3]):
        return gc.sum(gc.tanh(v @ X))

    v, X = rand(4), rand(2, 4, 3)
    _, (gv, gX) = gc.compile(f, target=target).value_and_grad(v, X)
    np.testing.assert_allclose(gv, central(lambda a: np.sum(np.tanh(a @ X)), v), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gX, central(lambda a: np.sum(np.tanh(v @ a)), X), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shapes", [((3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 5)),
                                    ((2, 1, 3, 4), (3, 4, 5)), ((2, 3, 4), (4,))],
                         ids=["2d@3d", "batch 1 vs 2", "4d@3d", "3d@vector"])
def test_matmul_batch_broadcasting(shapes, target):
    sa, sb = shapes

    @gc.graph
    def f(a: gc.Tensor[sa], b: gc.Tensor[sb]):
        return gc.sum(gc.sin(a @ b))

    a, b = rand(*sa), rand(*sb)
    value, (ga, gb) = gc.compile(f, target=target).value_and_grad(a, b)
    assert value == pytest.approx(np.sum(np.sin(a @ b)), rel=1e-13)
    assert ga.shape == sa and gb.shape == sb
    np.testing.assert_allclose(ga, central(lambda v: np.sum(np.sin(v @ b)), a), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gb, central(lambda v: np.sum(np.sin(a @ v)), b), rtol=1e-6, atol=1e-9)


def test_wx_norm_lecture_numbers(target):
    @gc.graph
    def f(W: gc.Tensor[2, 2], x: gc.Tensor[2]):
        q = W @ x
        return gc.sum(q * q)

    W = np.array([[0.1, 0.5], [-0.3, 0.8]])
    x = np.array([0.2, 0.4])
    value, (gW, gx) = gc.compile(f, target=target).value_and_grad(W, x)
    assert value == pytest.approx(0.116)
    np.testing.assert_allclose(gW, [[0.088, 0.176], [0.104, 0.208]], atol=1e-12)
    np.testing.assert_allclose(gx, [-0.112, 0.636], atol=1e-12)


# ---- reductions -----------------------------------------------------------------------------

REDUCTIONS = {
    "sum": (gc.sum, np.sum),
    "mean": (gc.mean, np.mean),
}
AXES = [None, 0, 1, 2, -1, (0, 2), (1, 2), (0, 1, 2)]


@pytest.mark.parametrize("keepdims", [False, True], ids=["drop", "keep"])
@pytest.mark.parametrize("axis", AXES, ids=[str(a) for a in AXES])
@pytest.mark.parametrize("kind", sorted(REDUCTIONS))
def test_sum_and_mean_over_axes(kind, axis, keepdims, target):
    ours, theirs = REDUCTIONS[kind]

    @gc.graph
    def f(x: gc.Tensor[2, 3, 4]):
        return ours(x, axis, keepdims=keepdims)

    x = rand(2, 3, 4)
    out, (gx,), g = _projected(f, x, target=target)
    expected = theirs(x, axis=axis, keepdims=keepdims)
    assert np.shape(out) == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-13)
    # d/dx sum(g * reduce(x)) is g broadcast back over the reduced axes (/count for mean)
    count = x.size // max(expected.size, 1)
    ax = tuple(range(3)) if axis is None else axis
    g_kept = g if keepdims else np.expand_dims(g, ax)
    np.testing.assert_allclose(gx, np.broadcast_to(g_kept, x.shape) / (count if kind == "mean" else 1),
                               rtol=1e-13)


@pytest.mark.parametrize("keepdims", [False, True], ids=["drop", "keep"])
@pytest.mark.parametrize("axis", AXES, ids=[str(a) for a in AXES])
def test_max_over_axes(axis, keepdims, target):
    @gc.graph
    def f(x: gc.Tensor[2, 3, 4]):
        return gc.max(x, axis, keepdims=keepdims)

    x = RNG.permutation(24).reshape(2, 3, 4) * 0.5   # distinct: one winner per slice
    out, (gx,), g = _projected(f, x, target=target)
    expected = np.max(x, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out, expected)
    ax = tuple(range(3)) if axis is None else axis
    kept = np.max(x, axis=axis, keepdims=True)
    g_kept = g if keepdims else np.expand_dims(g, ax)
    np.testing.assert_allclose(gx, np.where(x == kept, np.broadcast_to(g_kept, x.shape), 0.0))


@pytest.mark.parametrize("batch", [1, 3])
def test_reductions_over_a_symbolic_dimension(batch, target):
    @gc.graph
    def f(x: gc.Tensor["B", 4]):
        return gc.sum(gc.mean(x, axis=0) * gc.max(x, axis=0)) + gc.mean(x) * gc.sum(x[:, 1:3])

    x = RNG.permutation(4 * batch).reshape(batch, 4) * 0.3 - 1.0
    objective = lambda v: np.sum(v.mean(0) * v.max(0)) + v.mean() * v[:, 1:3].sum()  # noqa: E731
    value, (gx,) = gc.compile(f, target=target).value_and_grad(x)
    assert value == pytest.approx(objective(x), rel=1e-13)
    np.testing.assert_allclose(gx, central(objective, x), rtol=1e-6, atol=1e-9)


def test_max_ties_share_the_gradient(target):
    @gc.graph
    def f(x: gc.Tensor[3, 4]):
        return gc.max(x, axis=1)

    x = np.array([[1.0, 3.0, 3.0, 0.0],
                  [2.0, 2.0, 2.0, 2.0],
                  [5.0, -1.0, 4.0, 4.5]])
    g = np.array([2.0, -1.0, 0.5])
    fn = gc.compile(f, target=target)
    np.testing.assert_array_equal(fn.forward(x), [3.0, 2.0, 5.0])
    (gx,) = fn.backward(x, grad_out=g)
    np.testing.assert_allclose(gx, [[0.0, 1.0, 1.0, 0.0],
                                    [-0.25, -0.25, -0.25, -0.25],
                                    [0.5, 0.0, 0.0, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(gx.sum(axis=1), g, rtol=1e-15)   # the total equals the upstream


def test_max_ties_over_everything(target):
    @gc.graph
    def f(x: gc.Tensor[2, 3]):
        return 3.0 * gc.max(x)

    x = np.array([[1.0, 7.0, 7.0], [7.0, 0.0, -2.0]])
    value, (gx,) = gc.compile(f, target=target).value_and_grad(x)
    assert value == 21.0
    np.testing.assert_allclose(gx, [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], rtol=1e-15)
    assert gx.sum() == pytest.approx(3.0)


# ---- reshape ------------------------------------------------------------------------------

def test_reshape_with_minus_one(target):
    @gc.graph
    def f(x: gc.Tensor[2, 6], w: gc.Tensor[3]):
        return gc.sum(gc.tanh(gc.reshape(x, (-1, 3))) * w)

    x, w = rand(2, 6), rand(3)
    value, (gx, gw) = gc.compile(f, target=target).value_and_grad(x, w)
    t = np.tanh(x.reshape(-1, 3))
    assert value == pytest.approx(np.sum(t * w), rel=1e-13)
    np.testing.assert_allclose(gx, ((1 - t ** 2) * w).reshape(2, 6), rtol=1e-13)
    np.testing.assert_allclose(gw, t.sum(axis=0), rtol=1e-13)


def _reshaped_model(x, w):
    k = (x.reshape(-1, 3) * w).reshape(-1, 2, 3)
    return np.sum(np.sin(k) * x.reshape(-1, 2, 3))


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_reshape_with_a_symbolic_dimension(batch, target):
    shapes = {}

    @gc.graph
    def f(x: gc.Tensor["B", 6], w: gc.Tensor[3]):
        h = gc.reshape(x, (-1, 3))
        k = gc.reshape(h * w, ("B", 2, 3))     # back, with the symbol spelled out
        shapes["h"] = h.shape
        return gc.sum(gc.sin(k) * x.reshape(("B", 2, 3)))

    assert [str(d) for d in shapes["h"]] == ["2*B", "3"]
    x, w = rand(batch, 6), rand(3)
    value, (gx, gw) = gc.compile(f, target=target).value_and_grad(x, w)
    assert value == pytest.approx(_reshaped_model(x, w), rel=1e-13)
    assert gx.shape == (batch, 6)
    np.testing.assert_allclose(gx, central(lambda v: _reshaped_model(v, w), x), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gw, central(lambda v: _reshaped_model(x, v), w), rtol=1e-6, atol=1e-9)


# ---- indexing --------------------------------------------------------------------------------

INDICES = {
    "int": 1,
    "negative int": (-1, 2),
    "slice": (slice(0, 2), slice(1, None)),
    "negative step": (slice(None, None, -1), slice(3, 0, -2)),
    "None": (None, 0, slice(None), None),
    "Ellipsis": (Ellipsis, 2),
    "Ellipsis middle": (1, Ellipsis, slice(None, None, -1)),
    "mixed": (slice(None, None, -2), None, Ellipsis, -2),
}


@pytest.mark.parametrize("name", sorted(INDICES))
def test_getitem(name, target):
    index = INDICES[name]

    @gc.graph
    def f(x: gc.Tensor[3, 4, 5]):
        return x[index]

    x = rand(3, 4, 5)
    out, (gx,), g = _projected(f, x, target=target)
    np.testing.assert_array_equal(out, x[index])
    expected = np.zeros_like(x)
    expected[index] = g                      # basic indexing: each element at most once
    np.testing.assert_array_equal(gx, expected)


def test_overlapping_slices_add(target):
    @gc.graph
    def f(x: gc.Tensor[5]):
        return gc.sum(x[1:4] * x[:3]) + x[-1] * x[0]

    x = rand(5)
    _, (gx,) = gc.compile(f, target=target).value_and_grad(x)
    expected = np.zeros(5)
    expected[1:4] += x[:3]
    expected[:3] += x[1:4]
    expected[-1] += x[0]
    expected[0] += x[-1]
    np.testing.assert_allclose(gx, expected, rtol=1e-14)


# ---- concatenate and stack -------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate(axis, target):
    @gc.graph
    def f(a: gc.Tensor[2, 3], b: gc.Tensor[2, 3], c: gc.Tensor[2, 3]):
        return gc.concatenate([a, b * 2.0, c], axis=axis)

    a, b, c = rand(2, 3), rand(2, 3), rand(2, 3)
    out, (ga, gb, gc_), g = _projected(f, a, b, c, target=target)
    np.testing.assert_allclose(out, np.concatenate([a, 2 * b, c], axis=axis))
    parts = np.split(g, 3, axis=axis)
    np.testing.assert_array_equal(ga, parts[0])
    np.testing.assert_allclose(gb, 2 * parts[1])
    np.testing.assert_array_equal(gc_, parts[2])


def test_concatenate_unequal_sizes(target):
    @gc.graph
    def f(a: gc.Tensor[1, 2], b: gc.Tensor[3, 2]):
        return gc.concatenate([a, b, a])

    a, b = rand(1, 2), rand(3, 2)
    out, (ga, gb), g = _projected(f, a, b, target=target)
    np.testing.assert_allclose(out, np.concatenate([a, b, a]))
    np.testing.assert_allclose(ga, g[:1] + g[4:], rtol=1e-15)   # used twice: the copy gate adds
    np.testing.assert_array_equal(gb, g[1:4])


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack(axis, target):
    @gc.graph
    def f(a: gc.Tensor[2, 3], b: gc.Tensor[2, 3]):
        return gc.stack([gc.exp(a), b], axis=axis)

    a, b = rand(2, 3), rand(2, 3)
    out, (ga, gb), g = _projected(f, a, b, target=target)
    np.testing.assert_allclose(out, np.stack([np.exp(a), b], axis=axis))
    ga_up, gb_up = (np.take(g, k, axis=axis) for k in (0, 1))
    np.testing.assert_allclose(ga, ga_up * np.exp(a), rtol=1e-14)
    np.testing.assert_array_equal(gb, gb_up)


# ---- where, stop_gradient, unused inputs -------------------------------------------------------

def test_where_with_masks_from_comparisons(target):
    @gc.graph
    def f(x: gc.Tensor[6], y: gc.Tensor[6]):
        return gc.sum(gc.where(x > y, x * y, x - y) + gc.where(x <= 0.0, y * y, 0.0 * y))

    x = np.array([1.0, -2.0, 0.5, -0.3, 2.0, -1.0])
    y = np.array([0.2, 1.0, 0.9, -0.8, 2.5, -3.0])
    value, (gx, gy) = gc.compile(f, target=target).value_and_grad(x, y)
    m, n = x > y, x <= 0
    assert value == pytest.approx(np.sum(np.where(m, x * y, x - y) + np.where(n, y * y, 0.0)))
    np.testing.assert_allclose(gx, np.where(m, y, 1.0), rtol=1e-15)
    np.testing.assert_allclose(gy, np.where(m, x, -1.0) + np.where(n, 2 * y, 0.0), rtol=1e-15)


CONSTANT_VALUED = {
    # f(x) * x for an f whose value is constant although x is a tensor
    "0 * x": (lambda x: 0.0 * x, lambda x: 0.0 * x, lambda x: 0.0 * x),
    "x * 0 + x": (lambda x: x * 0 + x, lambda x: x, lambda x: 2 * x),
    "x ** 0": (lambda x: x ** 0, lambda x: np.ones_like(x), lambda x: np.ones_like(x)),
    "x - x": (lambda x: x - x, lambda x: 0.0 * x, lambda x: 0.0 * x),
    "where(x > 0, x, 0 * x)": (lambda x: gc.where(x > 0.0, x, 0.0 * x), lambda x: np.where(x > 0, x, 0.0),
                               lambda x: np.where(x > 0, 2 * x, 0.0)),
}


@pytest.mark.parametrize("name", sorted(CONSTANT_VALUED))
def test_python_constants_that_make_a_tensor_constant(name, target):
    """0 * x keeps x's shape, and its gradient contribution is zeros, not an error."""
    build, value_of, grad_of = CONSTANT_VALUED[name]

    @gc.graph
    def f(x: gc.Tensor[3]):
        return gc.sum(build(x) * x)

    x = np.array([1.0, -2.0, 3.0])
    value, (gx,) = gc.compile(f, target=target).value_and_grad(x)
    assert value == pytest.approx(np.sum(value_of(x) * x))
    np.testing.assert_allclose(gx, grad_of(x), rtol=1e-15)


def test_relu_vector_lecture_numbers(target):
    @gc.graph
    def f(x: gc.Tensor[4]):
        return gc.relu(x)

    (gx,) = gc.compile(f, target=target).backward(np.array([1.0, -2.0, 3.0, -1.0]), grad_out=np.array([4.0, -1.0, 5.0, 9.0]))
    np.testing.assert_array_equal(gx, [4.0, 0.0, 5.0, 0.0])


def test_stop_gradient(target):
    @gc.graph
    def f(x: gc.Tensor[3]):
        return gc.sum(x * gc.stop_gradient(x) + gc.stop_gradient(gc.exp(x)))

    x = np.array([0.5, -1.0, 2.0])
    value, (gx,) = gc.compile(f, target=target).value_and_grad(x)
    assert value == pytest.approx(np.sum(x * x + np.exp(x)))
    np.testing.assert_allclose(gx, x, rtol=1e-15)      # not 2x + exp(x)


def test_inputs_the_output_ignores_get_zeros_of_their_shape(target):
    @gc.graph
    def f(x: gc.Tensor[3], unused: gc.Tensor[2, 4], s, only_stopped: gc.Tensor[3]):
        return gc.sum(x * x * gc.stop_gradient(only_stopped))

    x, u, s, o = rand(3), rand(2, 4), 0.5, rand(3)
    fn = gc.compile(f, target=target)
    value, (gx, gu, gs, go) = fn.value_and_grad(x, u, s, o)
    np.testing.assert_allclose(gx, 2 * x * o, rtol=1e-15)
    assert np.shape(gu) == (2, 4) and np.all(gu == 0.0)
    assert np.shape(gs) == () and gs == 0.0
    assert np.shape(go) == (3,) and np.all(go == 0.0)


def test_wrt_subset(target):
    @gc.graph(wrt=("b",))
    def f(a: gc.Tensor[3], b: gc.Tensor[3]):
        return gc.sum(a * gc.sin(b))

    a, b = rand(3), rand(3)
    fn = gc.compile(f, target=target)
    assert fn.wrt == ("b",)
    _, (gb,) = fn.value_and_grad(a, b)
    np.testing.assert_allclose(gb, a * np.cos(b), rtol=1e-15)
    _, (ga,) = gc.compile(f, wrt="a", target=target).value_and_grad(a, b)
    np.testing.assert_allclose(ga, np.sin(b), rtol=1e-15)


# ---- higher derivatives ------------------------------------------------------------------------

@gc.graph
def poly(x, y):
    return x ** 2 * y + gc.sin(x) * y ** 3


def _hessian_by_hand(x, y):
    # f = x^2 y + sin(x) y^3
    fxx = 2 * y - np.sin(x) * y ** 3
    fxy = 2 * x + 3 * np.cos(x) * y ** 2
    fyy = 6 * np.sin(x) * y
    return np.array([[fxx, fxy], [fxy, fyy]])


def test_grad_graph_computes_the_gradient(target):
    df = gc.grad(poly)
    assert isinstance(df, gc.Graph)
    assert df.output_names == ("grad_x", "grad_y")
    x, y = 0.8, -1.3
    gx, gy = gc.compile(df, target=target).forward(x, y)
    assert gx == pytest.approx(2 * x * y + np.cos(x) * y ** 3, rel=1e-14)
    assert gy == pytest.approx(x ** 2 + 3 * np.sin(x) * y ** 2, rel=1e-14)


def test_hessian_entries(target):
    x, y = 0.8, -1.3
    H = _hessian_by_hand(x, y)
    df = gc.grad(poly)
    # the first output of the gradient graph is grad_x: differentiating it gives row 0
    d2 = gc.grad(df)
    fxx, fxy = gc.compile(d2, target=target).forward(x, y)
    assert fxx == pytest.approx(H[0, 0], rel=1e-13)
    assert fxy == pytest.approx(H[0, 1], rel=1e-13)
    # compiling the gradient graph differentiates grad_x as well
    (gx, gy), (hxx, hxy) = gc.compile(df, target=target).value_and_grad(x, y)
    assert (hxx, hxy) == pytest.approx((H[0, 0], H[0, 1]), rel=1e-13)

    # row 1: a graph picking grad_y, differentiated again
    @gc.graph
    def dfdy(x, y):
        return df(x, y)[1]

    _, (hyx, hyy) = gc.compile(dfdy, target=target).value_and_grad(x, y)
    assert hyx == pytest.approx(H[1, 0], rel=1e-13)
    assert hyy == pytest.approx(H[1, 1], rel=1e-13)


def test_third_derivative(target):
    # d3/dx3 (x^2 y + sin(x) y^3) = -cos(x) y^3
    d3 = gc.grad(gc.grad(gc.grad(poly, wrt="x"), wrt="x"), wrt="x")
    x, y = 0.3, 1.7
    assert gc.compile(d3, target=target).forward(x, y) == pytest.approx(-np.cos(x) * y ** 3, rel=1e-13)


def _f3(x):
    return gc.sum(x ** 3) + x[0] * x[1] * x[2] + gc.sum(gc.sin(x))


@gc.graph
def f3(x: gc.Tensor[3]):
    return _f3(x)


def _hessian_f3(x):
    # f = sum x_i^3 + x0 x1 x2 + sum sin x_i
    H = np.diag(6 * x - np.sin(x))
    H[0, 1] = H[1, 0] = x[2]
    H[0, 2] = H[2, 0] = x[1]
    H[1, 2] = H[2, 1] = x[0]
    return H


def test_hessian_vector_product(target):
    df = gc.grad(f3)

    @gc.graph
    def hvp(x: gc.Tensor[3], v: gc.Tensor[3]):
        return gc.sum(df(x) * v)

    x = np.array([0.4, -1.1, 0.9])
    v = np.array([1.5, 0.25, -2.0])
    fn = gc.compile(hvp, wrt="x", target=target)
    value, (Hv,) = fn.value_and_grad(x, v)
    gradient = 3 * x ** 2 + np.array([x[1] * x[2], x[0] * x[2], x[0] * x[1]]) + np.cos(x)
    assert value == pytest.approx(gradient @ v, rel=1e-13)
    np.testing.assert_allclose(Hv, _hessian_f3(x) @ v, rtol=1e-13)
    # and d/dv of g.v is the gradient itself
    _, (gx, gv) = gc.compile(hvp, target=target).value_and_grad(x, v)
    np.testing.assert_allclose(gv, gradient, rtol=1e-13)
    np.testing.assert_allclose(gx, Hv, rtol=1e-13)


def test_hessian_vector_product_by_seeding_the_gradient_graph(target):
    """backward of the gradient graph, seeded with v, is H v as well."""
    df = gc.grad(f3)
    x = np.array([0.4, -1.1, 0.9])
    v = np.array([1.5, 0.25, -2.0])
    (Hv,) = gc.compile(df, target=target).backward(x, grad_out=v)
    np.testing.assert_allclose(Hv, _hessian_f3(x) @ v, rtol=1e-13)


A43 = np.random.default_rng(43).standard_normal((4, 3))


def _max_rows_grad(x):
    P = A43 * x
    k = np.argmax(P, axis=1)
    g = np.zeros(3)
    for r in range(4):
        g[k[r]] += 2 * P[r, k[r]] * A43[r, k[r]]
    return g


def _index_grad(x):
    s, c = np.sum(A43[1:3, ::-1] @ x), np.sum(A43[1:3, ::-1], axis=0)
    g = x[0] * x[1] ** 2 * c
    g[0] += x[1] ** 2 * s
    g[1] += 2 * x[0] * x[1] * s
    return g


def _mean_relu_grad(x):
    s = 1 / (1 + np.exp(-A43 * x))
    m, r = s.mean(), np.sum(np.maximum(x, 0) * x)
    return np.sum(s * (1 - s) * A43, axis=0) / 12 * r + m * np.where(x > 0, 2 * x, 0.0)


# f(x, A) and its gradient in x, derived by hand
SECOND_ORDER = {
    "matmul": (lambda x, A: gc.sum(gc.tanh(A @ x)),
               lambda x: A43.T @ (1 - np.tanh(A43 @ x) ** 2)),
    "broadcast": (lambda x, A: gc.sum(gc.sin(A + x) ** 2),
                  lambda x: np.sum(2 * np.sin(A43 + x) * np.cos(A43 + x), axis=0)),
    "max": (lambda x, A: gc.sum(gc.max(A * x, axis=1) ** 2), _max_rows_grad),
    "getitem": (lambda x, A: x[0] * x[1] ** 2 * gc.sum(A[1:3, ::-1] @ x), _index_grad),
    "concatenate": (lambda x, A: gc.sum(gc.exp(gc.concatenate([x, x[::-1] * x])) * 0.5),
                    lambda x: 0.5 * np.exp(x) + 0.5 * np.exp(x[::-1] * x) * x[::-1]
                    + (0.5 * np.exp(x[::-1] * x) * x)[::-1]),
    "mean relu": (lambda x, A: gc.mean(gc.sigmoid(A * x)) * gc.sum(gc.relu(x) * x), _mean_relu_grad),
}


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_hessian_vector_product_through_structural_ops(name, target):
    body, grad_by_hand = SECOND_ORDER[name]

    @gc.graph
    def f(x: gc.Tensor[3], A: gc.Tensor[4, 3]):
        return body(x, A)

    df = gc.grad(f, wrt="x")

    @gc.graph
    def hvp(x: gc.Tensor[3], A: gc.Tensor[4, 3], v: gc.Tensor[3]):
        return gc.sum(df(x, A) * v)

    x = np.array([0.7, -0.4, 1.1])
    v = np.array([0.3, -1.2, 0.8])
    value, (Hv,) = gc.compile(hvp, wrt="x", target=target).value_and_grad(x, A43, v)
    assert value == pytest.approx(grad_by_hand(x) @ v, rel=1e-12)
    h = 1e-5
    expected = (grad_by_hand(x + h * v) - grad_by_hand(x - h * v)) / (2 * h)
    np.testing.assert_allclose(Hv, expected, rtol=1e-6, atol=1e-8)


def test_full_hessian_by_rows(target):
    df = gc.grad(f3)
    x = np.array([0.4, -1.1, 0.9])
    rows = []
    for k in range(3):
        @gc.graph(name=f"row{k}")
        def row(x: gc.Tensor[3]):
            return df(x)[k]
        rows.append(gc.compile(row, target=target).value_and_grad(x)[1][0])
    np.testing.assert_allclose(np.array(rows), _hessian_f3(x), rtol=1e-13)


def test_grad_needs_a_scalar_output():
    @gc.graph
    def f(x: gc.Tensor[3]):
        return x * 2.0

    with pytest.raises(gc.GraphError, match="scalar"):
        gc.grad(f)


# ---- long chains ---------------------------------------------------------------------------------

def _tanh_chain(n_ops):
    """x <- tanh(x * w + b), three ops a step, about n_ops ops in all."""
    steps = n_ops // 3

    @gc.graph(name=f"chain{n_ops}")
    def chain(x, w, b):
        for _ in range(steps):
            x = gc.tanh(x * w + b)
        return x
    return chain, steps


def _chain_by_hand(x, w, b, steps):
    """The value and its derivatives, by forward-mode differentiation in plain Python."""
    dx, dw, db = 1.0, 0.0, 0.0
    for _ in range(steps):
        z = x * w + b
        dzx, dzw, dzb = dx * w, dw * w + x, db * w + 1.0
        x = np.tanh(z)
        local = 1.0 - x * x
        dx, dw, db = local * dzx, local * dzw, local * dzb
    return x, (dx, dw, db)


def test_ten_thousand_op_chain(tmp_path):
    chain, steps = _tanh_chain(10_000)
    assert len(chain.live_nodes()) >= 10_000
    fn = gc.compile(chain, path=tmp_path / "chain_graphc.py")
    args = (0.1, 0.9, 0.3)
    value, grads = fn.value_and_grad(*args)
    expected, by_hand = _chain_by_hand(*args, steps)
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grads, by_hand, rtol=1e-9, atol=1e-300)
    result = gc.gradcheck(fn, args)
    assert result.ok, str(result)


def test_mixed_long_chain_with_fan_out(tmp_path):
    """Every step reuses its input twice, so the backward sums at every node."""
    @gc.graph
    def mixed(x, a):
        for _ in range(1_500):
            x = gc.sin(x) * a + x * 0.5 + gc.sigmoid(x) * 0.1
        return x

    fn = gc.compile(mixed, path=tmp_path / "mixed_graphc.py")
    args = (0.3, 0.4)
    value, (gx, ga) = fn.value_and_grad(*args)

    def plain(x, a):
        for _ in range(1_500):
            x = np.sin(x) * a + x * 0.5 + 0.1 / (1.0 + np.exp(-x))
        return x

    assert value == pytest.approx(plain(*args), rel=1e-12)
    h = 1e-6
    assert gx == pytest.approx((plain(0.3 + h, 0.4) - plain(0.3 - h, 0.4)) / (2 * h), rel=1e-5, abs=1e-9)
    assert ga == pytest.approx((plain(0.3, 0.4 + h) - plain(0.3, 0.4 - h)) / (2 * h), rel=1e-5, abs=1e-9)


def test_compile_time_grows_linearly(tmp_path):
    def compile_seconds(n_ops, tag):
        start = time.perf_counter()
        chain, _ = _tanh_chain(n_ops)
        gc.compile(chain, path=tmp_path / tag / "chain_graphc.py")
        return time.perf_counter() - start

    compile_seconds(300, "warm")
    small = min(compile_seconds(2_000, f"small{k}") for k in range(2))
    large = compile_seconds(8_000, "large")
    # 4x the ops: linear is about 4x, quadratic would be 16x
    assert large / small < 10, f"2,000 ops: {small:.2f}s, 8,000 ops: {large:.2f}s"
