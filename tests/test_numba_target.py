"""The numba target's own promises: fused loops, no float64 in float32 code, Numba's
on-disk cache, per-example calls of graphs of scalars (on every target), and clear errors.
(Every other test that takes the `target` fixture runs on numba too.)"""
import inspect
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc import compiler

pytest.importorskip("numba")


def _function(source, name):
    """The text of one generated function."""
    start = source.index(f"def {name}(")
    end = source.find("\n\n\n", start)
    return source[start:end if end > 0 else None]


@gc.graph
def chain(x: gc.Tensor["N"], a, b):
    return gc.sum(gc.tanh(gc.sigmoid(x * a + b) * x) ** 2)


@gc.graph
def neuron(w0, x0, w1, x1, w2):
    return gc.sigmoid(w0 * x0 + w1 * x1 + w2)


def test_an_elementwise_chain_and_its_gradient_are_one_loop():
    fn = gc.compile(chain, target="numba")
    body = _function(fn.source, "__value_and_grad")
    assert body.count(" for ") == 1, body
    # the only array written is the gradient returned; the sums are accumulators
    assert re.findall(r"(\w+) = np\.empty", body) == ["grad_x"], body
    assert "L += " in body and "grad_a += " in body
    x = np.random.default_rng(0).standard_normal(10_000)
    value, grads = fn.value_and_grad(x, 0.5, -0.25)
    ref_value, ref_grads = gc.compile(chain).value_and_grad(x, 0.5, -0.25)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12 * np.max(np.abs(r)))


def test_large_loops_run_on_threads_small_ones_do_not():
    @gc.graph
    def large(x: gc.Tensor[600, 500]):
        return gc.sum(gc.exp(x))
    assert "parallel=True" in gc.compile(large, target="numba").source

    @gc.graph
    def small(x: gc.Tensor[4, 3]):
        return gc.sum(gc.exp(x))
    assert "parallel=True" not in gc.compile(small, target="numba").source
    # GNU OpenMP's threads sleep rather than spin between loops, unless the process chose
    passive = 'os.environ.setdefault("GOMP_SPINCOUNT", "0")'
    assert passive in gc.compile(large, target="numba").source
    assert passive not in gc.compile(small, target="numba").source
    assert "@numba.njit(cache=True, error_model=\"numpy\", fastmath={\"reassoc\"}, no_cfunc_wrapper=True, parallel=True)\n" \
        "def __value_and_grad_each" in gc.compile(neuron, target="numba").source


def test_a_symbolic_batch_takes_threads_only_when_large():
    # the kernel runs its prange loop as a plain range; its parallel twin takes large calls
    fn = gc.compile(chain, target="numba")
    assert "def __value_and_grad(x, a, b):" in fn.source
    assert "@numba.njit(cache=True, error_model=\"numpy\", fastmath={\"reassoc\"}, no_cfunc_wrapper=True, parallel=True)\n" \
        "def __value_and_grad_threads(x, a, b):" in fn.source
    assert _function(fn.source, "__value_and_grad_threads").split("\n", 1)[1] == \
        _function(fn.source, "__value_and_grad").split("\n", 1)[1]   # the same statements
    assert "__kernel = __value_and_grad_threads if x.shape[0] >= 262144 else __value_and_grad" in fn.source
    module = fn.module
    ref = gc.compile(chain)
    for n, twin_used in ((1000, False), (300_000, True)):
        x = np.random.default_rng(n).standard_normal(n)
        value, grads = fn.value_and_grad(x, 0.5, -0.25)
        ref_value, ref_grads = ref.value_and_grad(x, 0.5, -0.25)
        assert value == pytest.approx(ref_value, rel=1e-12)
        np.testing.assert_allclose(grads[0], ref_grads[0], rtol=1e-12, atol=1e-300)
        assert bool(module.__value_and_grad_threads.signatures) == twin_used, n
    # the twin is a function of its own, so Numba caches it apart from the one-thread kernel
    cached = os.listdir(fn.path.parent / "__pycache__")
    assert any("__value_and_grad_threads" in name and name.endswith(".nbi") for name in cached), cached


def test_a_value_that_only_gives_a_shape_is_not_stored():
    # the sum's gradient is broadcast like W*W: only its shape is read, so the loop keeps W*W
    # a local rather than writing it to an array
    @gc.graph
    def decay(W: gc.Tensor[16, 2], x: gc.Tensor["B", 2]):
        return gc.sum(x @ W.T) + 1e-4 * gc.sum(W * W)
    fn = gc.compile(decay, target="numba")
    body = _function(fn.source, "__value_and_grad")
    assert re.search(r"^ +s\d+ = W\[i, j\] \* W\[i, j\] +# mul$", body, re.M), body
    assert re.findall(r"(\w+) = np\.empty", body) == ["grad_W"], body
    rng = np.random.default_rng(4)
    W, x = rng.standard_normal((16, 2)), rng.standard_normal((5, 2))
    got, want = fn.value_and_grad(W, x), gc.compile(decay).value_and_grad(W, x)
    assert got[0] == pytest.approx(want[0], rel=1e-13)
    np.testing.assert_allclose(got[1][0], want[1][0], rtol=1e-13)


def test_a_choice_is_a_call_of_the_modules_where_not_a_branch():
    # each conditional written in place would be blocks of Numba's IR (its passes grow with
    # blocks times names); __where is one call, which LLVM inlines
    @gc.graph
    def choices(x, y):
        return gc.relu(x) * y + gc.where(x > y, x * x, y) + gc.abs(x - y)
    fn, ref = gc.compile(choices, target="numba"), gc.compile(choices)
    for name in ("__forward", "__backward", "__value_and_grad"):
        body = _function(fn.source, name)
        assert "__where(" in body and not re.search(r"\bif\b", body), body
    for x, y in ((0.5, -1.5), (-0.5, 1.5), (2.0, 1.0), (-1.0, -3.0)):
        got, want = fn.value_and_grad(x, y), ref.value_and_grad(x, y)
        assert got[0] == pytest.approx(want[0], rel=1e-15) and got[1] == pytest.approx(want[1], rel=1e-15)


def test_no_function_carries_a_c_callable_wrapper():
    # no_cfunc_wrapper=True: nothing takes a generated function as a first-class function
    # value, and without it the 2,000-input graph reached its first result in 32.7 s, not 51.9 s
    @gc.graph
    def layers(x: gc.Tensor[4, 3], W: gc.Tensor[3, 3], a):
        h = x
        for _ in range(6):
            h = gc.tanh(h @ W) * a
        return gc.sum(gc.relu(h) + gc.exp(h))
    fn = gc.compile(layers, target="numba")
    rng = np.random.default_rng(0)
    x, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 3))
    got, want = fn.value_and_grad(x, W, 0.7), gc.compile(layers).value_and_grad(x, W, 0.7)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    compiled = {name: value for name, value in vars(fn.module).items() if getattr(value, "overloads", None)}
    assert {"__value_and_grad", "__gemm_of", "__tanh", "__where"} <= set(compiled), sorted(compiled)
    for name, dispatcher in compiled.items():
        for result in dispatcher.overloads.values():
            address = result.library.get_pointer_to_function   # 0 for a symbol not compiled
            assert address(result.fndesc.llvm_cpython_wrapper_name), name
            assert not address(result.fndesc.llvm_cfunc_wrapper_name), name


def test_the_parallel_twin_shares_out_only_loops_near_the_largest():
    # per example: 256 elements (the largest), 32 (1/8: shared too) and 4 (1/64: one thread)
    @gc.graph
    def sizes(x: gc.Tensor["N", 256], y: gc.Tensor["N", 32], z: gc.Tensor["N", 4], a):
        return gc.sum(gc.tanh(x * a)) + gc.sum(gc.sin(y * a)) + gc.sum(gc.exp(z * a))
    fn = gc.compile(sizes, target="numba")
    twin = _function(fn.source, "__value_and_grad_threads")
    loops = re.findall(r"for i in (\S+)\(x\.shape\[0\]\):.*\n\s+for j in range\((\d+)\)", twin)
    assert sorted(loops) == [("numba.prange", "256")] * 2 + [("numba.prange", "32")] * 2 + [("range", "4")] * 2, twin
    assert "__value_and_grad_threads if 256*x.shape[0] >= 262144 else" in fn.source
    rng = np.random.default_rng(0)
    for n in (10, 2000):   # one thread, then the twin
        args = [rng.standard_normal((n, k)) for k in (256, 32, 4)] + [0.3]
        got, want = fn.value_and_grad(*args), gc.compile(sizes).value_and_grad(*args)
        assert got[0] == pytest.approx(want[0], rel=1e-12)
        for g, r in zip(got[1], want[1]):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)
    assert fn.module.__value_and_grad_threads.signatures


@pytest.mark.parametrize("dtype, lane", [("float64", "double"), ("float32", "float")])
def test_loops_calling_exp_and_tanh_run_in_simd_lanes(dtype, lane):
    # the module's own exp and tanh are arithmetic: the loop, its sums included, vectorises
    # (float32 code in float32 lanes)
    fn = gc.compile(chain, target="numba", dtype=dtype)
    kernel = fn.module.__value_and_grad
    fn.value_and_grad(np.linspace(-1, 1, 100, dtype=dtype), 0.5, -0.25)
    llvm = kernel.inspect_llvm(kernel.signatures[0])
    assert re.search(rf"<\d+ x {lane}>", llvm), "the fused loop was not vectorised"
    assert not re.search(r"@(exp|tanh)f?\(", llvm), "a libm call is left in the loop"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exp_and_tanh_agree_with_numpy_everywhere(dtype):
    @gc.graph
    def both(x: gc.Tensor["N"]):
        return {"e": gc.exp(x), "t": gc.tanh(x)}
    fn = gc.compile(both, target="numba", dtype=dtype)
    tiny = np.finfo(dtype).tiny
    x = np.concatenate([np.linspace(-800, 800, 20001), np.linspace(-1e-6, 1e-6, 2001),
                        np.random.default_rng(0).standard_normal(10_000) * 5,
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 709.78, 709.79, -745.1, -744.0, -708.5,
                         88.72, 88.73, -103.9, tiny, -tiny, 19.99, 20.0, 25.0]]).astype(dtype)
    with np.errstate(over="ignore"):
        out = fn.forward(x)
        expected = {"e": np.exp(x), "t": np.tanh(x)}
    # 4 ulp; exp's subnormal results keep fewer digits, so they are compared absolutely
    eps = np.finfo(dtype).eps
    for name in ("e", "t"):
        got, ref = out[name], expected[name]
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, ref, rtol=4 * eps, atol=4 * tiny * eps, equal_nan=True, err_msg=name)
        zero = ref == 0
        assert np.array_equal(np.signbit(got[zero]), np.signbit(ref[zero])), name
        assert np.array_equal(np.isinf(got), np.isinf(ref)) and np.array_equal(np.isnan(got), np.isnan(ref))


def test_float32_code_has_no_float64_literal():
    fn = gc.compile(chain, target="numba", dtype="float32")
    # the module's exp and tanh compute in float32 too (no float64 anywhere in them)
    assert "float64" not in _function(fn.source, "__exp_parts") + _function(fn.source, "__tanh")
    for name in ("__forward", "__backward", "__value_and_grad", "__exp_parts", "__exp", "__tanh"):
        body = _function(fn.source, name)
        # every number in an expression is typed; 0.0 starts a float64 accumulator on purpose
        code = [re.sub(r"np\.float32\(-?[\d.e+-]+\)", "", line.split("#")[0]) for line in body.splitlines()[1:]]
        bare = [c for c in code if re.search(r"\d\.\d", c) and "= 0.0" not in c]
        assert not bare, bare
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    value, grads = fn.value_and_grad(x, 0.5, -0.25)
    assert isinstance(value, np.float32) and all(g.dtype == np.float32 for g in np.atleast_1d(*grads))


def test_reductions_over_axes_and_size_one_axes():
    @gc.graph
    def f(x: gc.Tensor["B", 1, 4]):
        m = gc.max(x, axis=2, keepdims=True)
        return gc.sum(gc.mean(gc.exp(x - m), axis=0) * 2.0)

    x = np.random.default_rng(1).standard_normal((6, 1, 4))
    got = gc.compile(f, target="numba").value_and_grad(x)
    want = gc.compile(f).value_and_grad(x)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(got[1][0], want[1][0], rtol=1e-12, atol=1e-15)
    source = gc.compile(f, target="numba").source
    assert "range(1)" not in source
    # the arrays of kept axes start as zeros (-inf for a max) written by loops, and a mean
    # divides in a loop: np.zeros, np.full and an array's /= are compiles of their own
    assert "np.zeros" not in source and "np.full" not in source and re.search(r"s\d+\[0, j\] /= x\.shape\[0\]", source)


def test_the_module_runs_without_graphc_and_fills_numbas_cache(tmp_path):
    path = tmp_path / "neuron_graphc.py"
    gc.compile(neuron, target="numba", path=path)
    script = textwrap.dedent("""
        import sys
        sys.modules["graphc"] = None
        import neuron_graphc as m
        value, grads = m.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
        print(repr(value), repr(grads[0]))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.7310585786300049", "-0.19661193324148185"]
    cached = os.listdir(tmp_path / "__pycache__")
    assert any(name.endswith(".nbi") for name in cached), cached   # Numba's index: a second run loads


def test_same_graph_same_bytes():
    assert gc.compile(chain, target="numba").source == gc.compile(chain, target="numba").source


def test_user_names_cannot_shadow_the_loop_machinery():
    @gc.graph
    def f(i: gc.Tensor[40000], numba: gc.Tensor[40000], np, range):
        return gc.sum(gc.tanh(i * numba + np) * range)

    args = [np.linspace(-1, 1, 40000), np.linspace(0, 2, 40000), 0.3, 1.5]
    fn = gc.compile(f, target="numba")
    assert "import numba as numba_1" in fn.source and "numba_1.prange" in fn.source
    # Numba's own parallel code uses the names np, numba and range: this graph runs on one thread
    assert "parallel=True" not in fn.source
    got, want = fn.value_and_grad(*args), gc.compile(f).value_and_grad(*args)
    assert got[0] == pytest.approx(want[0], rel=1e-12)


def test_a_call_with_floats_goes_straight_to_the_compiled_function():
    fn = gc.compile(neuron, target="numba")
    value, grads = fn.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
    assert type(value) is float and all(type(g) is float for g in grads)
    assert fn.forward(2.0, -1.0, -3.0, -2.0, -3.0) == value
    # anything else takes the checked path, with the same results
    assert fn.value_and_grad(2, -1, -3, -2, -3.0) == (value, grads)
    with pytest.raises(gc.GraphError, match="missing input"):
        fn.value_and_grad(2.0, -1.0)


# ---- per example, on every target ------------------------------------------------------------

def test_a_graph_of_scalars_runs_once_per_example(target):
    fn = gc.compile(neuron, target=target)
    rng = np.random.default_rng(2)
    w0, x0 = rng.standard_normal((3, 4)), rng.standard_normal(4)   # broadcast with the scalars
    value, grads = fn.value_and_grad(w0, x0, -3.0, -2.0, -3.0)
    assert value.shape == (3, 4) and all(g.shape == (3, 4) for g in grads)
    for i in range(3):
        for j in range(4):
            v, g = fn.value_and_grad(float(w0[i, j]), float(x0[j]), -3.0, -2.0, -3.0)
            assert value[i, j] == pytest.approx(v, rel=1e-14)
            np.testing.assert_allclose([gk[i, j] for gk in grads], g, rtol=1e-14)
    np.testing.assert_allclose(fn.forward(w0, x0, -3.0, -2.0, -3.0), value, rtol=1e-15)
    seed = rng.standard_normal((3, 4))
    scaled = fn.backward(w0, x0, -3.0, -2.0, -3.0, grad_out=seed)
    for g, s in zip(scaled, grads):
        np.testing.assert_allclose(g, s * seed, rtol=1e-14)
    value2, grads2 = fn.value_and_grad(w0, x0, -3.0, -2.0, -3.0, grad_out=seed)
    np.testing.assert_allclose(value2, value, rtol=1e-15)
    np.testing.assert_allclose(grads2[0], grads[0] * seed, rtol=1e-14)


def test_per_example_float32(target):
    fn = gc.compile(neuron, target=target, dtype="float32")
    value, grads = fn.value_and_grad(np.linspace(-1, 1, 5), 0.5, -3.0, -2.0, -3.0)
    assert value.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)


def test_per_example_constant_gradient_is_broadcast(target):
    @gc.graph
    def f(x, y):
        return x * 2.0 + y

    value, (gx, gy) = gc.compile(f, target=target).value_and_grad(np.arange(3.0), 1.0)
    np.testing.assert_array_equal(value, [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(gx, [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(gy, [1.0, 1.0, 1.0])


def test_per_example_arrays_must_broadcast(target):
    fn = gc.compile(neuron, target=target)
    with pytest.raises(gc.GraphError, match="do not broadcast together.*w0: \\(3,\\).*x0: \\(4,\\)"):
        fn.value_and_grad(np.ones(3), np.ones(4), 1.0, 1.0, 1.0)


# ---- errors -------------------------------------------------------------------------------------

def test_missing_runtime_is_a_clear_error(monkeypatch):
    real = compiler.importlib.util.find_spec
    monkeypatch.setattr(compiler.importlib.util, "find_spec",
                        lambda name, *a: None if name == "scipy" else real(name, *a))
    with pytest.raises(gc.GraphError, match=r"numba target needs the Python package 'scipy'.*graphc\[numba\]"):
        gc.compile(neuron, target="numba")


def _rule(fn, shapes, in_place):
    """A graph of `fn` over inputs of `shapes` whose outputs may overwrite `in_place` inputs."""
    from graphc.frontend import graph as trace_graph
    from graphc.graph.tensor import TensorSpec
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    fn.__signature__ = inspect.Signature([inspect.Parameter(n, kind, annotation=TensorSpec(s))
                                          for n, s in shapes.items()])
    g = trace_graph(fn, name="rule")
    g.in_place = dict(in_place)
    return g


def test_an_update_rule_writes_into_its_inputs_arrays():
    def momentum(W, dW, v, lr, mu):
        v_new = mu * v + dW
        return {"W_new": W - lr * (dW + mu * v_new), "v_new": v_new}
    g = _rule(momentum, {"W": (5, 3), "dW": (5, 3), "v": (5, 3), "lr": (), "mu": ()},
              {"W_new": "W", "v_new": "v"})
    fn = gc.compile(g, target="numba", wrt=())
    body = _function(fn.source, "__forward")
    assert "v_new = v " in body and "W_new = W " in body and "np.empty" not in body, body
    rng = np.random.default_rng(0)
    W, dW, v = rng.standard_normal((3, 5, 3))
    ref = gc.compile(g, wrt=()).forward(W, dW, v, 0.1, 0.9)
    W_arr, v_arr = W.copy(), v.copy()
    out = fn.forward(W_arr, dW, v_arr, 0.1, 0.9)
    assert out["W_new"] is W_arr and out["v_new"] is v_arr
    np.testing.assert_allclose(W_arr, ref["W_new"], rtol=1e-15)
    np.testing.assert_allclose(v_arr, ref["v_new"], rtol=1e-15)


@pytest.mark.parametrize("case", ["read after the write", "read by a sum", "returned too", "other shape"])
def test_an_input_read_after_its_overwrite_keeps_its_array(case):
    rules = {
        "read after the write": (lambda a, b: {"a_new": a * 2, "c": (a + 1) * b}, (4,)),
        "read by a sum": (lambda a, b: {"a_new": a * b, "c": gc.sum(a) * b}, (4,)),
        "returned too": (lambda a, b: {"a_new": a * b, "c": a}, (4,)),
        "other shape": (lambda a, b: {"a_new": a * b}, (1,)),
    }
    rule, b_shape = rules[case]
    a_shape = (4,) if case != "other shape" else (1,)
    g = _rule(rule, {"a": a_shape, "b": b_shape if case != "other shape" else (4,)}, {"a_new": "a"})
    fn = gc.compile(g, target="numba", wrt=())
    assert "a_new = a " not in fn.source
    a = np.arange(1.0, 1.0 + a_shape[0])
    before = a.copy()
    out = fn.forward(a, np.full(4, 3.0))
    np.testing.assert_array_equal(a, before)   # the caller's array is untouched
    ref = gc.compile(g, wrt=()).forward(before, np.full(4, 3.0))
    for name, value in ref.items():
        np.testing.assert_allclose(out[name], value)


def test_optimizer_steps_update_parameters_and_state_in_their_arrays():
    rng = np.random.default_rng(0)
    start = {"W": rng.standard_normal((6, 4)), "b": rng.standard_normal(4)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(3)]
    results = {}
    for target in ("numpy", "numba"):
        opt = gc.optim.Adam(lr=0.1, target=target)
        params = {k: v.copy() for k, v in start.items()}
        arrays = dict(params)
        for g in grads:
            opt.step(params, g)
            state = {k: dict(s) for k, s in opt.state.items()}
        assert all(params[k] is arrays[k] for k in params)
        assert all(opt.state[k][s] is state[k][s] for k in state for s in state[k])
        results[target] = params
    source = gc.optim.Adam(lr=0.1, target="numba").compile(start).source
    for name in ("W", "m_W", "v_W", "b", "m_b", "v_b"):
        assert f"{name}_new = {name} " in source, name   # no array of its own
    for k in start:
        np.testing.assert_allclose(results["numba"][k], results["numpy"][k], rtol=1e-12)
