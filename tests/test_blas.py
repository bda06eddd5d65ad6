"""The numba target's matrix products: MKL's cblas_?gemm where MKL is installed, the gemm of
SciPy's OpenBLAS (through Numba's numba_xxgemm, as Numba's `@` calls it) otherwise or when
GRAPHC_BLAS=scipy; both agree with the numpy target on every layout a product meets
(transposes, slices, stacks, vectors, empty matrices)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.backends.numba import blas

pytest.importorskip("numba")

BLAS = ["scipy", pytest.param("mkl", marks=pytest.mark.skipif(
    blas.mkl_library() is None, reason="MKL is not installed (pip install 'graphc[mkl]')"))]


@pytest.fixture(params=BLAS)
def chosen(request, monkeypatch):
    monkeypatch.setenv("GRAPHC_BLAS", request.param)
    return request.param


@gc.graph
def mlp(x: gc.Tensor["B", 6], y: gc.Tensor["B", 3], W1: gc.Tensor[5, 6], b1: gc.Tensor[5],
        W2: gc.Tensor[3, 5], b2: gc.Tensor[3]):
    h = gc.relu(x @ gc.transpose(W1) + b1)
    return gc.softmax_cross_entropy(h @ gc.transpose(W2) + b2, y)


def _mlp_args(rng, batch, dtype):
    shapes = {"x": (batch, 6), "y": (batch, 3), "W1": (5, 6), "b1": (5,), "W2": (3, 5), "b2": (3,)}
    args = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    args["y"] = np.eye(3, dtype=dtype)[rng.integers(0, 3, batch)]
    return args


def _close(got, ref, dtype):
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for g, r in zip(np.atleast_1d(got), np.atleast_1d(ref)):
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(r), initial=0))))


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")   # the empty batch's loss
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_mlp_agrees_with_the_numpy_target(chosen, dtype):
    fn = gc.compile(mlp, target="numba", dtype=dtype)
    assert "__matmul(x, " in fn.source
    if chosen == "mkl":
        assert ("cblas_sgemm" if dtype == "float32" else "cblas_dgemm") in fn.source
    else:
        assert '"numba_xxgemm"' in fn.source and "cblas" not in fn.source
    ref = gc.compile(mlp, dtype=dtype)
    rng = np.random.default_rng(1)
    for batch in (7, 1, 0):   # an empty batch: a product of zero rows
        args = _mlp_args(rng, batch, dtype)
        with np.errstate(invalid="ignore", divide="ignore"):   # the mean of no examples
            value, grads = fn.value_and_grad(**args)
            ref_value, ref_grads = ref.value_and_grad(**args)
        if batch:
            _close(value, ref_value, dtype)
        for g, r in zip(grads, ref_grads):
            assert g.dtype == np.dtype(dtype) and g.shape == r.shape
            _close(g, r, dtype)


@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")   # strided on purpose
def test_products_of_every_layout_agree_with_numpy(chosen):
    # F-ordered and strided arguments, a transposed product, a stack and a vector
    @gc.graph
    def products(a: gc.Tensor[4, 3], b: gc.Tensor[3, 5], s: gc.Tensor[2, 4, 3], v: gc.Tensor[3]):
        return {"ab": a @ b, "ta": gc.transpose(b) @ gc.transpose(a), "stack": s @ b, "av": a @ v}
    fn = gc.compile(products, target="numba")
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 5))
    s, v = rng.standard_normal((2, 4, 3)), rng.standard_normal(3)
    for a_, b_ in ((a, b), (np.asfortranarray(a), np.asfortranarray(b)),
                   (rng.standard_normal((4, 6))[:, ::2], rng.standard_normal((6, 5))[::2])):
        out = fn.forward(a_, b_, s, v)
        np.testing.assert_allclose(out["ab"], a_ @ b_, rtol=1e-13)
        np.testing.assert_allclose(out["ta"], b_.T @ a_.T, rtol=1e-13)
        np.testing.assert_allclose(out["stack"], s @ b_, rtol=1e-13)
        np.testing.assert_allclose(out["av"], a_ @ v, rtol=1e-13)


def test_products_of_every_layout_share_one_compiled_gemm(chosen):
    # x @ W1.T, g @ W2 and g.T @ h are three pairs of layouts; each pair's implementation only
    # hands C-contiguous matrices and two flags on, so the call of gemm compiles once
    fn = gc.compile(mlp, target="numba")
    fn.value_and_grad(**_mlp_args(np.random.default_rng(4), 8, "float64"))
    assert len(fn.module.__value_and_grad.signatures) == 1
    signatures = fn.module.__gemm_of.signatures
    assert len(signatures) == 1 and [str(t) for t in signatures[0][2:]] == ["bool", "bool"]


@pytest.mark.filterwarnings("error::numba.core.errors.NumbaPerformanceWarning")   # '@' on a strided matrix
def test_a_strided_matrix_slice_is_copied_into_c_order_before_its_product(chosen):
    # x[:, t, :] would be a third layout beside C and F, and Numba compiles a product for each
    # pair of layouts it meets; a slice that is C-contiguous already (z[1:3], z[0]) stays a view.
    # Steps, negative steps and indices from the end, and new axes are copied too
    @gc.graph
    def sliced(x: gc.Tensor["B", 5, 3], W: gc.Tensor[4, 3], z: gc.Tensor[6, 5, 3]):
        return gc.sum(gc.tanh(x[:, 2, :] @ W.T)) + gc.sum(z[:, -1, 1:] @ W[:, 1:].T) + gc.sum(z[1:3] @ W.T) \
            + gc.sum(z[0] @ W.T) + gc.sum(z[::-2, -1, 1:] @ W[::-1, ::2].T) + gc.sum(z[0, :, None, 1] * x[0, :, :1])
    fn = gc.compile(sliced, target="numba")
    body = fn.source[fn.source.index("def __value_and_grad("):]
    for copy in ("s0[i, j] = x[i, 2, j]", "= z[i, 4, j + 1]", "= W[i, j + 1]", "= z[5 - 2 * i, 4, j + 1]",
                 "= W[3 - i, 2 * j]", "[i, 0] = z[0, i, 1]"):
        assert copy in body, body
    assert "= x[:, 2, :]" not in body and "= z[1:3]" in body and "= z[0]" in body
    rng = np.random.default_rng(7)
    args = rng.standard_normal((6, 5, 3)), rng.standard_normal((4, 3)), rng.standard_normal((6, 5, 3))
    got, want = fn.value_and_grad(*args), gc.compile(sliced).value_and_grad(*args)
    assert got[0] == pytest.approx(want[0], rel=1e-13)
    for g, r in zip(got[1], want[1]):
        _close(g, r, "float64")


def test_the_module_takes_other_dtypes_and_refuses_mismatched_shapes(chosen):
    # called directly, the float32 module's product falls back to `@` for float64 matrices,
    # and a product of matrices that do not fit raises rather than reading past them
    @gc.graph
    def product(a: gc.Tensor["M", "K"], b: gc.Tensor["K", "N"]):
        return a @ b
    module = gc.compile(product, target="numba", dtype="float32").module
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 5))
    np.testing.assert_allclose(module.forward(a, b), a @ b, rtol=1e-13)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    np.testing.assert_allclose(module.forward(a32, b32), a32 @ b32, rtol=1e-6)
    np.testing.assert_array_equal(module.forward(a32[:, :0], b32[:0]), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError):
        module.forward(a32, b32[:2])


def test_the_mkl_module_loads_mkl_from_numbas_cache_in_a_new_process(tmp_path, monkeypatch):
    if blas.mkl_library() is None:
        pytest.skip("MKL is not installed")
    monkeypatch.setenv("GRAPHC_BLAS", "mkl")
    gc.compile(mlp, target="numba", dtype="float32", path=tmp_path / "mlp_graphc.py")
    script = textwrap.dedent("""
        import sys
        sys.modules["graphc"] = None
        import numpy as np
        import mlp_graphc as m
        rng = np.random.default_rng(0)
        x, W1, W2 = (rng.standard_normal(s).astype(np.float32) for s in ((4, 6), (5, 6), (3, 5)))
        y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
        value, grads = m.value_and_grad(x, y, W1, np.zeros(5, np.float32), W2, np.zeros(3, np.float32))
        print(repr(float(value)), sum(m.__value_and_grad.stats.cache_hits.values()))
    """)
    runs = [subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    (first, hits_first), (second, hits_second) = (run.stdout.split() for run in runs)
    assert first == second and (hits_first, hits_second) == ("0", "1")


def test_an_mkl_module_without_mkl_says_what_to_do(tmp_path, monkeypatch):
    if blas.mkl_library() is None:
        pytest.skip("MKL is not installed")
    monkeypatch.setenv("GRAPHC_BLAS", "mkl")
    gc.compile(mlp, target="numba", path=tmp_path / "mlp_graphc.py")
    script = textwrap.dedent("""
        from importlib import metadata
        def files(name):
            raise metadata.PackageNotFoundError(name)
        metadata.files = files   # as where the mkl package is not installed
        import mlp_graphc
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "ImportError: this module's matrix products call Intel MKL, which is not installed: "
        "pip install mkl, or write the module again with GRAPHC_BLAS=scipy")


def test_the_choice_follows_graphc_blas(monkeypatch):
    monkeypatch.setattr(blas, "mkl_library", lambda: "/opt/mkl/lib/libmkl_rt.so.3")
    for value, expected in ((None, "mkl"), ("mkl", "mkl"), ("scipy", "scipy"), (" SciPy ", "scipy")):
        if value is None:
            monkeypatch.delenv("GRAPHC_BLAS", raising=False)
        else:
            monkeypatch.setenv("GRAPHC_BLAS", value)
        assert blas.choice() == expected, value
    monkeypatch.setattr(blas, "mkl_library", lambda: None)
    monkeypatch.delenv("GRAPHC_BLAS")
    assert blas.choice() == "scipy"
    monkeypatch.setenv("GRAPHC_BLAS", "mkl")
    with pytest.raises(gc.GraphError, match=r"GRAPHC_BLAS=mkl, but MKL is not installed: pip install 'graphc\[mkl\]'"):
        blas.choice()
    monkeypatch.setenv("GRAPHC_BLAS", "openblas")
    with pytest.raises(gc.GraphError, match="GRAPHC_BLAS='openblas' is not a BLAS graphc knows; "
                                            "choose one of mkl, scipy"):
        gc.compile(mlp, target="numba")
    assert gc.compile(mlp).target == "numpy"   # the other targets do not ask


def test_the_mkl_runtime_pattern_names_each_platforms_library():
    import re
    for name in ("libmkl_rt.so.3", "libmkl_rt.so", "mkl_rt.3.dll", "libmkl_rt.2.dylib"):
        assert re.fullmatch(blas.MKL_RUNTIME, name), name
    for name in ("libmkl_core.so.3", "libmkl_rt.so.3.py", "mkl_rt.h"):
        assert not re.fullmatch(blas.MKL_RUNTIME, name), name


def test_small_products_run_on_one_mkl_thread_unless_the_environment_sets_them(tmp_path, monkeypatch):
    """MKL_VERBOSE prints each product's thread count: one for a product below the module's
    size (32x16 @ 16x16); where MKL_NUM_THREADS is set, what it says for that product and a
    large one (128x128 @ 128x128). The second process runs the code Numba cached in the first:
    the module reads the environment as products run."""
    if blas.mkl_library() is None:
        pytest.skip("MKL is not installed")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: every product runs on one thread")
    monkeypatch.setenv("GRAPHC_BLAS", "mkl")

    @gc.graph
    def product(a: gc.Tensor["M", "K"], b: gc.Tensor["K", "N"]):
        return a @ b
    gc.compile(product, target="numba", path=tmp_path / "product_graphc.py")
    script = textwrap.dedent("""
        import numpy as np
        import product_graphc as m
        m.forward(np.ones((32, 16)), np.ones((16, 16)))
        m.forward(np.ones((128, 128)), np.ones((128, 128)))
    """)

    def threads(**env):
        env = {k: v for k, v in os.environ.items() if k not in ("MKL_NUM_THREADS", "OMP_NUM_THREADS")} | env
        run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                             env={**env, "MKL_VERBOSE": "1"})
        assert run.returncode == 0, run.stderr
        return [int(line.rsplit("NThr:", 1)[1].split()[0]) for line in run.stdout.splitlines() if "DGEMM(" in line]
    assert threads()[0] == 1
    assert threads(MKL_NUM_THREADS="2") == [2, 2]
