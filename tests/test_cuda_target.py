"""The cuda target (numba-cuda) against the numpy target: values, gradients, dtypes,
device arrays in and out, per-example calls of scalar graphs, and the generated
module. Without a GPU this runs under numba-cuda's simulator (tests/conftest.py
switches it on before numba is imported), which runs every thread in Python: the
shapes stay small."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc

cuda = pytest.importorskip("numba.cuda")

RTOL = {"float64": 1e-12, "float32": 1e-5}
DTYPES = ["float64", "float32"]


def rng_for(name):
    return np.random.default_rng(sum(map(ord, name)))


def assert_close(got, want, dtype):
    """Relative agreement, with an absolute floor scaled to the largest magnitude (a
    gradient that is ~0 in one element is compared at the scale of the others)."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_close(g, w, dtype)
        return
    assert np.shape(got) == np.shape(want)
    assert np.asarray(got).dtype == np.dtype(dtype)
    floor = RTOL[dtype] * max(1.0, float(np.max(np.abs(want))) if np.size(want) else 1.0)
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=floor)


def check(graph, args, dtype, grad_out=None, wrt=None):
    """forward, backward (seeded) and value_and_grad on cuda agree with numpy."""
    fn = gc.compile(graph, target="cuda", dtype=dtype, wrt=wrt)
    ref = gc.compile(graph, target="numpy", dtype=dtype, wrt=wrt)
    assert_close(fn.forward(*args), ref.forward(*args), dtype)
    seed = {} if grad_out is None else {"grad_out": grad_out}
    assert_close(fn.backward(*args, **seed), ref.backward(*args, **seed), dtype)
    assert_close(fn.value_and_grad(*args, **seed), ref.value_and_grad(*args, **seed), dtype)
    return fn


# ---- the lecture's graphs -------------------------------------------------------------------

@gc.graph
def neuron(w0, x0, w1, x1, w2):
    return gc.sigmoid(w0 * x0 + w1 * x1 + w2)


@gc.graph
def circuit(x, y, z):
    return ((x + y) * z).named("f")


@gc.graph(wrt=("W1", "b1"))
def mlp(x: gc.Tensor["B", 4], y: gc.Tensor["B", 3], W1: gc.Tensor[3, 4], b1: gc.Tensor[3]):
    return gc.softmax_cross_entropy(x @ W1.T + b1, y)


def mlp_args(rng, batch=5):
    return (rng.standard_normal((batch, 4)), np.eye(3)[rng.integers(0, 3, batch)],
            rng.standard_normal((3, 4)), rng.standard_normal(3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_lecture_scalar_graphs(dtype):
    check(neuron, (2.0, -1.0, -3.0, -2.0, -3.0), dtype)
    fn = check(circuit, (-2.0, 5.0, -4.0), dtype, grad_out=2.0)
    assert fn.value_and_grad(-2.0, 5.0, -4.0) == (-12.0, (-4.0, -4.0, 3.0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp(dtype):
    check(mlp, mlp_args(rng_for("mlp")), dtype, grad_out=0.5)


def test_mlp_source_is_flat_kernels_and_launches():
    src = gc.compile(mlp, target="cuda", dtype="float32").source
    body = src.split('"""', 2)[2]
    assert "graphc" not in body and "from numba import cuda" in body
    assert "__matmul(x, s0)" in body and "@cuda.jit" in body
    # forward's kernels serve value_and_grad too: fewer definitions than launches
    assert body.count("@cuda.jit\ndef ") < body.count("[__grid(")
    assert "np.float32(0.0)" in body and "np.float64" not in body


# ---- elementwise chains, broadcasting, comparisons ---------------------------------------------

@gc.graph
def chain(x: gc.Tensor[4, 3]):
    return gc.log(gc.exp(gc.tanh(x)) + gc.relu(x) + 1.0)


@gc.graph
def bias(x: gc.Tensor["B", 3], b: gc.Tensor[3]):
    return gc.sigmoid(x + b) * b


@gc.graph
def masks(x: gc.Tensor[5], y: gc.Tensor[5]):
    big = gc.where(x > y, x * y, gc.minimum(x, y) ** 2)
    return big + (x <= 0.5) * gc.maximum(x, y) - gc.equal(x, x) * abs(y)


@gc.graph
def loss(x: gc.Tensor[6], y: gc.Tensor[6]):
    return gc.sum(gc.softplus(x) * y - gc.sqrt(y * y + 1.0) + gc.sin(x) * gc.cos(y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise(dtype):
    rng = rng_for("elementwise")
    x = rng.standard_normal((4, 3))
    check(chain, (x,), dtype, grad_out=rng.standard_normal((4, 3)))
    check(bias, (rng.standard_normal((5, 3)), rng.standard_normal(3)), dtype,
          grad_out=rng.standard_normal((5, 3)))
    check(masks, (rng.standard_normal(5), rng.standard_normal(5)), dtype, grad_out=rng.standard_normal(5))
    check(loss, (rng.standard_normal(6), rng.standard_normal(6)), dtype)


# ---- reductions -------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, (0, 1)])
@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reductions(op, axis):
    rng = rng_for(f"{op}{axis}")
    x = rng.standard_normal((4, 3))
    for keepdims in (False, True):
        @gc.graph
        def f(x: gc.Tensor[4, 3]):
            return getattr(gc, op)(x * 2.0, axis=axis, keepdims=keepdims)

        shape = np.shape(getattr(np, op)(x, axis=axis, keepdims=keepdims))
        seed = rng.standard_normal(shape) if shape else 1.5
        for dtype in DTYPES:
            check(f, (x,), dtype, grad_out=seed)


# ---- structural ops ----------------------------------------------------------------------------

STRUCTURAL = {
    "transpose": lambda x, y: x.T * 1.5,
    "transpose_3d": lambda x, y: gc.transpose(x.reshape(2, 2, 3), (2, 0, 1)),
    "reshape": lambda x, y: gc.tanh(x).reshape(2, 6),
    "slices": lambda x, y: x[1:, ::2] * x[:-1, 1:3:1],
    "int_and_newaxis": lambda x, y: x[-1] * x[None, 0] + x[2, None],
    "one_element": lambda x, y: x[1, 2] * y,
    "concatenate": lambda x, y: gc.concatenate([x, gc.exp(y), x[:2]], axis=0),
    "concatenate_columns": lambda x, y: gc.concatenate([y.T, x.T], axis=1),
    "stack": lambda x, y: gc.stack([x[0], y[1]], axis=1),
}


@pytest.mark.parametrize("name", list(STRUCTURAL))
def test_structural(name):
    @gc.graph
    def f(x: gc.Tensor[4, 3], y: gc.Tensor[2, 3]):
        return STRUCTURAL[name](x, y)

    rng = rng_for(name)
    args = (rng.standard_normal((4, 3)), rng.standard_normal((2, 3)))
    seed = rng.standard_normal(np.shape(gc.compile(f).forward(*args)))
    for dtype in DTYPES:
        check(f, args, dtype, grad_out=seed)


@pytest.mark.parametrize("sa, sb", [((17, 5), (5, 18)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,)),
                                    ((2, 3, 4), (4, 2)), ((1, 2, 3), (2, 3, 2))],
                         ids=["tiles", "vector@matrix", "matrix@vector", "vector@vector", "stack", "batch"])
def test_matmul(sa, sb):
    """A product at least 16 wide on both sides takes the tiled kernel; the others one
    thread per element; stacks of matrices one launch per matrix."""
    @gc.graph
    def f(a: gc.Tensor[sa], b: gc.Tensor[sb]):
        return gc.sum(gc.tanh(a @ b))

    rng = rng_for(str(sa))
    check(f, (rng.standard_normal(sa), rng.standard_normal(sb)), "float64")


# ---- device arrays ----------------------------------------------------------------------------

def test_device_arrays_stay_on_the_device():
    rng = rng_for("device")
    args = mlp_args(rng)
    fn = gc.compile(mlp, target="cuda")
    on_device = [cuda.to_device(a) for a in args]
    value, grads = fn.module.value_and_grad(*on_device)
    assert isinstance(value, np.float64)
    assert all(hasattr(g, "copy_to_host") for g in grads)
    want_value, want = gc.compile(mlp, target="numpy").value_and_grad(*args)
    assert value == pytest.approx(want_value, rel=1e-12)
    for g, w in zip(grads, want):
        np.testing.assert_allclose(g.copy_to_host(), w, rtol=1e-12)
    # a training step: parameters updated on the device go back in
    W1 = cuda.to_device(args[2] - 0.1 * grads[0].copy_to_host())
    stepped, _ = fn.module.value_and_grad(on_device[0], on_device[1], W1, on_device[3])
    assert stepped == pytest.approx(gc.compile(mlp).forward(args[0], args[1], W1.copy_to_host(), args[3]),
                                    rel=1e-12)
    # one host array among device arrays: the results come back to the host
    _, mixed = fn.module.value_and_grad(args[0], *on_device[1:])
    assert all(isinstance(g, np.ndarray) for g in mixed)


def test_device_arrays_for_array_outputs():
    rng = rng_for("device out")
    x, seed = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    fn = gc.compile(chain, target="cuda")
    out = fn.module.forward(cuda.to_device(x))
    assert hasattr(out, "copy_to_host")
    np.testing.assert_allclose(out.copy_to_host(), gc.compile(chain).forward(x), rtol=1e-12)
    (g,) = fn.module.backward(cuda.to_device(x), grad_out=cuda.to_device(seed))
    np.testing.assert_allclose(g.copy_to_host(), gc.compile(chain).backward(x, grad_out=seed)[0], rtol=1e-12)


# ---- per example ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_per_example_functions_match_a_loop(dtype):
    fn = gc.compile(neuron, target="cuda", dtype=dtype)
    m, rng = fn.module, rng_for("each")
    args = [rng.standard_normal(7).astype(dtype) for _ in range(5)]
    seed = rng.standard_normal(7).astype(dtype)
    rows = range(7)
    value = m.forward_each(*args)
    assert value.dtype == np.dtype(dtype) and value.shape == (7,)
    assert_close(value, np.array([m.forward(*[a[k] for a in args]) for k in rows], dtype), dtype)
    grads = m.backward_each(*args, seed)
    loop = [m.backward(*[a[k] for a in args], grad_out=seed[k]) for k in rows]
    assert_close(grads, tuple(np.array([r[i] for r in loop], dtype) for i in range(5)), dtype)
    value, grads = m.value_and_grad_each(*args)
    loop = [m.value_and_grad(*[a[k] for a in args]) for k in rows]
    assert_close(value, np.array([r[0] for r in loop], dtype), dtype)
    assert_close(grads, tuple(np.array([r[1][i] for r in loop], dtype) for i in range(5)), dtype)
    # the wrapper calls them for arrays, broadcasting scalars among them
    batched = fn.value_and_grad(args[0], 0.5, args[2], args[3], args[4])
    assert_close(batched[0], m.value_and_grad_each(args[0], np.full(7, 0.5, dtype), *args[2:])[0], dtype)


def test_per_example_with_several_outputs_and_mixed_types():
    """A value that stays float32 beside float64 ones (`1/x` is float64 in Numba) and two outputs."""
    @gc.graph
    def f(x, y):
        return gc.sigmoid(x) + y, x * y

    fn = gc.compile(f, target="cuda", dtype="float32")
    x, y = np.array([0.5, -1.0, 2.0], np.float32), np.array([1.5, 0.25, -3.0], np.float32)
    (v0, v1), (gx, gy) = fn.module.value_and_grad_each(x, y)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(v0, s + y, rtol=1e-6)
    np.testing.assert_allclose(v1, x * y, rtol=1e-6)
    np.testing.assert_allclose(gx, s * (1 - s), rtol=1e-6)
    np.testing.assert_allclose(gy, np.ones(3), rtol=1e-6)
    assert fn.module.forward_each(x, y)[1].dtype == np.float32


def test_per_example_without_gradients_is_forward_only():
    @gc.graph
    def f(x, y):
        return x * gc.exp(y)

    fn = gc.compile(f, target="cuda", wrt=())
    assert hasattr(fn.module, "forward_each") and not hasattr(fn.module, "backward_each")
    np.testing.assert_allclose(fn.module.forward_each(np.array([1.0, 2.0]), np.array([0.0, 1.0])),
                               [1.0, 2.0 * np.e], rtol=1e-12)


def test_per_example_needs_one_length():
    m = gc.compile(circuit, target="cuda").module
    with pytest.raises(ValueError, match="1-D arrays of one length"):
        m.forward_each(np.ones(3), np.ones(4), np.ones(3))


def test_scalar_graph_that_builds_arrays_loops_on_the_host():
    """Scalar code that launches kernels cannot be device code: no *_each functions, and
    the wrapper runs the host functions once per example."""
    @gc.graph
    def f(a, b):
        return gc.sum(gc.exp(gc.stack([a, b * 2.0])))

    fn = gc.compile(f, target="cuda")
    assert not hasattr(fn.module, "forward_each")
    a, b = np.array([0.1, 0.2]), np.array([-0.3, 0.4])
    np.testing.assert_allclose(fn.forward(a, b), np.exp(a) + np.exp(2 * b), rtol=1e-12)


# ---- errors and isolation --------------------------------------------------------------------------

def test_names_of_generated_code_step_around_inputs():
    """An input called np moves the module's NumPy alias; i and s0 move index and temporary names."""
    @gc.graph
    def f(np: gc.Tensor[3, 2], i: gc.Tensor[2, 4], s0):
        return gc.sum(abs(np @ i) * s0)

    rng = rng_for("names")
    for dtype in DTYPES:
        check(f, (rng.standard_normal((3, 2)), rng.standard_normal((2, 4)), 0.5), dtype)
    assert "import numpy as np_1" in gc.compile(f, target="cuda").source


def test_a_value_named_like_a_called_module_is_a_clear_error():
    @gc.graph
    def f(math: gc.Tensor[3]):
        return gc.sum(gc.exp(math))

    with pytest.raises(gc.GraphError, match="math"):
        gc.compile(f, target="cuda")
    assert gc.compile(f, target="numpy").forward(np.zeros(3)) == 3.0


def test_other_targets_need_no_numba_cuda(tmp_path):
    script = textwrap.dedent("""
        import sys
        sys.modules["numba.cuda"] = None      # as if numba-cuda were not installed
        sys.modules["numba_cuda"] = None
        import graphc as gc

        @gc.graph
        def f(x, y):
            return x * y + 1.0

        assert gc.compile(f, target="numpy").forward(2.0, 3.0) == 7.0
        try:
            gc.compile(f, target="cuda")
        except gc.GraphError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={"GRAPHC_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout
    assert "numba" in out and "cuda" in out


def test_same_graph_same_source():
    a = gc.compile(mlp, target="cuda", dtype="float32").source
    assert a == gc.compile(mlp, target="cuda", dtype="float32").source
    assert a != gc.compile(mlp, target="cuda", dtype="float64").source
