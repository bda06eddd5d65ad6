"""Training state on the device (the cuda target): optimizers that take device-array
parameters and gradients and keep their state on the GPU, batch norm's running averages
there, dropout's noise drawn there, and gc.to_device / gc.to_host. Each training step
runs with every copy between host and device refused, against the numpy target. Without
a GPU this runs under numba-cuda's simulator (tests/conftest.py): the shapes stay small."""
import contextlib

import numpy as np
import pytest

import graphc as gc
from graphc.train import device
from graphc.train.optim import _write

cuda = pytest.importorskip("numba.cuda")

RTOL = {"float64": 1e-12, "float32": 1e-5}


def on_device(a):
    # numba-cuda's arrays (the simulator's have copy_to_host only) or any CUDA array
    return hasattr(a, "copy_to_host") or hasattr(a, "__cuda_array_interface__")


@pytest.fixture
def no_host_traffic(monkeypatch):
    """A context manager inside which every copy between host and device fails the test:
    cuda.to_device, copy_to_host (which np.asarray of a device array calls on a GPU) and
    copy_to_device from a host array. Copies between device arrays, kernels and the
    one number a reduction brings back (the loss) are allowed."""
    cls = type(cuda.to_device(np.zeros(1)))
    copy_to_device = cls.copy_to_device

    def refuse(*args, **kwargs):
        raise AssertionError("a copy between host and device inside a training step")

    def device_to_device_only(self, ary, *args, **kwargs):
        if not on_device(ary):
            refuse()
        return copy_to_device(self, ary, *args, **kwargs)

    @contextlib.contextmanager
    def guard():
        with monkeypatch.context() as m:
            m.setattr(cuda, "to_device", refuse)
            m.setattr(cls, "copy_to_host", refuse)
            m.setattr(cls, "copy_to_device", device_to_device_only)
            yield

    return guard


def host(a):
    return a.copy_to_host() if on_device(a) else np.asarray(a)


# ---- optimizers -------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": ("SGD", {"lr": 0.05}),
    "momentum": ("SGD", {"lr": 0.05, "momentum": 0.9}),
    "nesterov": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    "adagrad": ("AdaGrad", {"lr": 0.1, "weight_decay": 0.1}),
    "rmsprop": ("RMSProp", {"lr": 0.01, "decay": 0.99}),
    "adam": ("Adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.1}),
    "adamw": ("AdamW", {"lr": 0.01}),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, options", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_optimizer_on_device_arrays_follows_the_numpy_target(name, options, dtype, no_host_traffic):
    rng = np.random.default_rng(0)
    start = {"W": rng.standard_normal((3, 5)).astype(dtype), "b": rng.standard_normal(4).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in start.items()} for _ in range(4)]
    reference, expected = {k: v.copy() for k, v in start.items()}, []
    ref_opt = getattr(gc.optim, name)(**options)
    for g in grads:
        ref_opt.step(reference, g)
        expected.append({k: v.copy() for k, v in reference.items()})

    params = gc.to_device(start)
    arrays = dict(params)
    device_grads = [gc.to_device(g) for g in grads]
    opt = getattr(gc.optim, name)(**options, target="cuda")
    tol = dict(rtol=RTOL[dtype], atol=RTOL[dtype])
    for step, g in enumerate(device_grads):
        # the first step compiles the rule and creates the state; then nothing crosses the bus
        with no_host_traffic() if step else contextlib.nullcontext():
            opt.step(params, g)
        assert all(params[k] is arrays[k] for k in params)          # updated in place
        for k, v in gc.to_host(params).items():
            np.testing.assert_allclose(v, expected[step][k], **tol)
    slots = [s for state in opt.state.values() for s in state.values()]
    assert len(slots) == 2 * len(opt.slots())                                  # W's and b's
    assert all(on_device(s) and s.dtype == np.dtype(dtype) for s in slots)   # velocities, caches, moments


def test_host_parameters_on_cuda_keep_their_arrays_and_the_state_is_on_the_device():
    w = np.array([1.0, 2.0, 3.0])
    params, opt = {"w": w}, gc.optim.SGD(lr=0.1, momentum=0.9, target="cuda")
    for _ in range(2):
        opt.step(params, {"w": np.ones(3)})
    assert params["w"] is w and isinstance(w, np.ndarray)
    np.testing.assert_allclose(w, np.array([1.0, 2.0, 3.0]) - 0.1 * (1 + 1.9), rtol=1e-15)
    assert on_device(opt.state["w"]["v"])
    np.testing.assert_allclose(host(opt.state["w"]["v"]), 1.9, rtol=1e-15)


def test_an_update_that_is_the_array_itself_is_not_copied():
    """A rule that wrote its result into the parameter returns the parameter itself: no copy."""
    target = gc.to_device({"w": np.arange(3.0)})["w"]
    params, cls, copies = {"w": target}, type(target), []
    original = cls.copy_to_device
    cls.copy_to_device = lambda self, ary, *a, **k: copies.append(ary) or original(self, ary, *a, **k)
    try:
        _write(params, "w", target)
        assert copies == []
        _write(params, "w", gc.to_device({"w": np.ones(3)})["w"])     # any other array is copied in
        assert len(copies) == 1
    finally:
        cls.copy_to_device = original
    assert params["w"] is target
    np.testing.assert_array_equal(host(target), 1.0)


# ---- running averages ----------------------------------------------------------------------

@gc.graph(wrt=("x", "gamma", "beta"))
def bn_layer(x: gc.Tensor["B", 3], gamma: gc.Tensor[3], beta: gc.Tensor[3], *, train=True):
    return gc.batch_norm(x, gamma, beta, train=train)


def test_running_averages_live_on_the_device(no_host_traffic):
    fn, ref_fn = gc.compile(bn_layer, target="cuda"), gc.compile(bn_layer)
    running, reference = gc.optim.RunningAverages(fn, unbiased=True), gc.optim.RunningAverages(ref_fn, unbiased=True)
    assert all(on_device(v) for v in running.values.values())
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    batches = [2 * rng.standard_normal((6, 3)) + 1 for _ in range(3)]
    device_inputs = [gc.to_device({"x": x, "gamma": gamma, "beta": beta}) for x in batches]
    values = dict(running.values)
    with no_host_traffic():
        for inputs in device_inputs:
            out = fn.forward(**inputs)
            assert on_device(out["bn1_mean"]) and on_device(out["bn1_var"])
            running.update(out, batch_size=6)
    assert all(running.values[k] is values[k] for k in values)   # updated in place
    for x in batches:
        reference.update(ref_fn.forward(x, gamma, beta), batch_size=6)
    for k, v in gc.to_host(running.values).items():
        np.testing.assert_allclose(v, reference.values[k], rtol=1e-12)
    # the values go straight into the inference graph
    evaluation = gc.compile(gc.variant(bn_layer, train=False), target="cuda")
    x = rng.standard_normal((4, 3))
    out = evaluation.forward(**gc.to_device({"x": x, "gamma": gamma, "beta": beta}), **running.values)
    want = gc.compile(gc.variant(bn_layer, train=False)).forward(x, gamma, beta, **reference.values)
    np.testing.assert_allclose(host(out), want, rtol=1e-12)


# ---- dropout's noise ---------------------------------------------------------------------------

@gc.graph
def drop(x: gc.Tensor["B", 8], *, train=True):
    return gc.dropout(x, 0.25, train=train)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_noise_is_drawn_on_the_device_reproducibly(dtype, no_host_traffic):
    fn = gc.compile(drop, target="cuda", dtype=dtype)
    with no_host_traffic():
        first = gc.data.noise(fn, np.random.default_rng(7), B=5)["dropout1"]
        again = gc.data.noise(fn, np.random.default_rng(7), B=5)["dropout1"]
        other = gc.data.noise(fn, np.random.default_rng(8), B=5)["dropout1"]
    assert on_device(first) and first.shape == (5, 8) and first.dtype == np.dtype(dtype)
    first, again, other = host(first), host(again), host(other)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= 0 and first.max() < 1
    # a Generator moves on: the next draw differs
    rng = np.random.default_rng(7)
    one, two = (host(gc.data.noise(fn, rng, B=5)["dropout1"]) for _ in range(2))
    np.testing.assert_array_equal(one, first)
    assert not np.array_equal(one, two)


def test_device_noise_is_uniform():
    """Large enough for the statistics, small enough for the simulator: the mean, the
    variance and ten bins of 3,000 numbers, and no correlation between neighbours (which
    different generators draw)."""
    u = host(device.uniform((3000,), "float64", 12345))
    n = u.size
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 0.01
    counts = np.bincount((u * 10).astype(int), minlength=10)
    chi2 = np.sum((counts - n / 10) ** 2 / (n / 10))
    assert chi2 < 27.9                                                    # p = 0.001, 9 degrees of freedom
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 4 / np.sqrt(n)


def test_noise_on_the_other_targets_is_numpys():
    fn = gc.compile(drop)
    np.testing.assert_array_equal(gc.data.noise(fn, np.random.default_rng(3), B=2)["dropout1"],
                                  np.random.default_rng(3).random((2, 8)))


# ---- a whole training step ---------------------------------------------------------------------------

@gc.graph(wrt=("W", "b", "gamma", "beta"))
def classifier(x: gc.Tensor["B", 4], y: gc.Tensor["B", 3], W: gc.Tensor[6, 4], b: gc.Tensor[6],
               gamma: gc.Tensor[6], beta: gc.Tensor[6], *, train=True):
    h = gc.relu(gc.batch_norm(gc.linear(x, W, b), gamma, beta, train=train))
    return gc.softmax_cross_entropy(gc.maxout(gc.dropout(h, 0.5, train=train), 2), y)


def test_a_dropout_training_step_stays_on_the_device(no_host_traffic):
    rng = np.random.default_rng(0)
    fn, ref_fn = gc.compile(classifier, target="cuda"), gc.compile(classifier)
    start = {"W": rng.standard_normal((6, 4)), "b": rng.standard_normal(6), "gamma": rng.uniform(0.5, 1.5, 6),
             "beta": rng.standard_normal(6)}
    batches = [(rng.standard_normal((5, 4)), gc.data.one_hot(rng.integers(0, 3, 5), 3)) for _ in range(2)]

    params, reference = gc.to_device(start), {k: v.copy() for k, v in start.items()}
    # SGD: an update linear in the gradients (Adam's first steps divide tiny gradients by
    # themselves, and its trajectories are compared above on the same gradients)
    opt, ref_opt = gc.optim.SGD(lr=0.1, momentum=0.9, target="cuda"), gc.optim.SGD(lr=0.1, momentum=0.9)
    running, ref_running = gc.optim.RunningAverages(fn), gc.optim.RunningAverages(ref_fn)
    device_batches = [gc.to_device({"x": x, "y": y}) for x, y in batches]
    noise_rng, losses, noises = np.random.default_rng(5), [], []
    for step, batch in enumerate(device_batches):
        # the first step compiles and creates the state; the second moves nothing but the loss
        with no_host_traffic() if step else contextlib.nullcontext():
            noise = gc.data.noise(fn, noise_rng, B=5)
            out, grads = fn.value_and_grad(**batch, **params, **noise)
            assert all(on_device(g) for g in grads)
            opt.step(params, grads)
            running.update(out)
        losses.append(out["L"])
        noises.append(gc.to_host(noise))
    for (x, y), noise, loss in zip(batches, noises, losses):
        out, grads = ref_fn.value_and_grad(x, y, **reference, **noise)
        ref_opt.step(reference, grads)
        ref_running.update(out)
        assert loss == pytest.approx(out["L"], rel=1e-12)
    for k, v in gc.to_host(params).items():
        np.testing.assert_allclose(v, reference[k], rtol=1e-12, atol=1e-13)
    for k, v in gc.to_host(running.values).items():
        np.testing.assert_allclose(v, ref_running.values[k], rtol=1e-12, atol=1e-13)


# ---- moving parameters ----------------------------------------------------------------------------------

def test_to_device_and_back():
    params = {"W": np.arange(6.0).reshape(2, 3), "s": 2.5, "t": np.array(1.5)}
    d = gc.to_device(params)
    assert on_device(d["W"]) and d["s"] == 2.5 and d["t"] is params["t"]   # scalars stay: kernel arguments
    assert gc.to_device(d)["W"] is d["W"]                                   # already there
    assert gc.to_device(params, dtype="float32")["W"].dtype == np.float32
    back = gc.to_host(d)
    assert isinstance(back["W"], np.ndarray) and back is not d
    np.testing.assert_array_equal(back["W"], params["W"])
    assert gc.to_host(params) == params


def test_a_missing_numba_cuda_is_named(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "numba.cuda", None)    # as if numba-cuda were not installed
    monkeypatch.delattr("numba.cuda", raising=False)
    with pytest.raises(ImportError, match=r"graphc\[cuda\]"):
        gc.to_device({"w": np.ones(2)})
