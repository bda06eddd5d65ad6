"""gc.optim and gc.schedules: every optimizer against steps worked out by hand and against
PyTorch's torch.optim (where PyTorch is installed), the lecture's gradient descent,
the running averages of batch norm, and every schedule's values."""
import math

import numpy as np
import pytest

import graphc as gc

try:
    import torch
except ImportError:   # PyTorch is an optional peer: its comparisons are skipped without it
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))


def steps(opt, p0, grads):
    """Apply one step per gradient to {"p": p0}; the iterates after each step."""
    params, out = {"p": np.array(p0, dtype=np.float64)}, []
    for g in grads:
        opt.step(params, {"p": np.array(g, dtype=np.float64)})
        out.append(params["p"].copy())
    return out


# ---- hand-computed steps --------------------------------------------------------------------

def test_sgd_by_hand(target):
    # p = 1, g = 0.5 then 0.25: p - lr * g
    assert steps(gc.optim.SGD(lr=0.1, target=target), 1.0, [0.5, 0.25]) == pytest.approx([0.95, 0.925], abs=1e-15)


def test_momentum_by_hand(target):
    # v = 0.9 v + g: v1 = 0.5, p1 = 1 - 0.1 * 0.5 = 0.95; v2 = 0.45 + 0.5 = 0.95, p2 = 0.95 - 0.095 = 0.855
    assert steps(gc.optim.SGD(lr=0.1, momentum=0.9, target=target), 1.0, [0.5, 0.5]) == pytest.approx([0.95, 0.855], abs=1e-15)


def test_nesterov_by_hand(target):
    # v1 = 0.5, p1 = 1 - 0.1 * (0.5 + 0.9 * 0.5) = 0.905; v2 = 0.95, p2 = 0.905 - 0.1 * (0.5 + 0.855) = 0.7695
    opt = gc.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, target=target)
    assert steps(opt, 1.0, [0.5, 0.5]) == pytest.approx([0.905, 0.7695], abs=1e-15)


def test_weight_decay_by_hand(target):
    # the gradient gains 0.1 * p: g1 = 0.5 + 0.1 = 0.6, p1 = 1 - 0.06 = 0.94; g2 = 0.5 + 0.094, p2 = 0.94 - 0.0594
    assert steps(gc.optim.SGD(lr=0.1, weight_decay=0.1, target=target), 1.0, [0.5, 0.5]) == pytest.approx([0.94, 0.8806], abs=1e-15)


def test_adagrad_by_hand(target):
    # cache1 = 0.25, p1 = 1 - 0.1 * 0.5 / 0.5 = 0.9; cache2 = 0.25 + 1 = 1.25, p2 = 0.9 - 0.1 * 1 / sqrt(1.25)
    opt = gc.optim.AdaGrad(lr=0.1, eps=0.0, target=target)
    assert steps(opt, 1.0, [0.5, 1.0]) == pytest.approx([0.9, 0.9 - 0.1 / math.sqrt(1.25)], abs=1e-15)


def test_rmsprop_by_hand(target):
    # cache1 = 0.1 * 0.25 = 0.025, p1 = 1 - 0.01 * 0.5 / sqrt(0.025)
    # cache2 = 0.9 * 0.025 + 0.1 * 1 = 0.1225 = 0.35**2, p2 = p1 - 0.01 * 1 / 0.35
    opt = gc.optim.RMSProp(lr=0.01, decay=0.9, eps=0.0, target=target)
    p1 = 1 - 0.01 * 0.5 / math.sqrt(0.025)
    assert steps(opt, 1.0, [0.5, 1.0]) == pytest.approx([p1, p1 - 0.01 / 0.35], abs=1e-15)


def test_adam_by_hand(target):
    # step 1: m = 0.05, v = 0.00025, mt = 0.5, vt = 0.25: p1 = 1 - 0.1 * 0.5 / 0.5 = 0.9
    # step 2 (g = 1): m = 0.145, v = 0.00124975; mt = 0.145 / 0.19, vt = 0.00124975 / 0.001999
    opt = gc.optim.Adam(lr=0.1, eps=0.0, target=target)
    mt, vt = 0.145 / 0.19, 0.00124975 / (1 - 0.999 ** 2)
    assert steps(opt, 1.0, [0.5, 1.0]) == pytest.approx([0.9, 0.9 - 0.1 * mt / math.sqrt(vt)], abs=1e-14)


def test_adamw_decays_the_weights_before_the_step(target):
    # p * (1 - lr * wd) = 0.99, then Adam's first step of -lr * sign(g)
    opt = gc.optim.AdamW(lr=0.1, weight_decay=0.1, eps=0.0, target=target)
    assert steps(opt, 1.0, [0.5]) == pytest.approx([0.89], abs=1e-15)


def _reference(kind, p, grads, lr, **h):
    """The lectures' update formulas, in plain NumPy, for many steps."""
    v = np.zeros_like(p)
    m = np.zeros_like(p)
    out = []
    for t, g in enumerate(grads, start=1):
        if kind == "momentum":
            v = h["rho"] * v + g
            p = p - lr * v
        elif kind == "adagrad":
            v = v + g * g
            p = p - lr * g / (np.sqrt(v) + h["eps"])
        elif kind == "rmsprop":
            v = h["decay"] * v + (1 - h["decay"]) * g * g
            p = p - lr * g / (np.sqrt(v) + h["eps"])
        elif kind == "adam":
            m = h["b1"] * m + (1 - h["b1"]) * g
            v = h["b2"] * v + (1 - h["b2"]) * g * g
            p = p - lr * (m / (1 - h["b1"] ** t)) / (np.sqrt(v / (1 - h["b2"] ** t)) + h["eps"])
        out.append(p)
    return out


@pytest.mark.parametrize("kind, opt", [
    ("momentum", lambda t: gc.optim.SGD(lr=0.05, momentum=0.8, target=t)),
    ("adagrad", lambda t: gc.optim.AdaGrad(lr=0.05, eps=1e-10, target=t)),
    ("rmsprop", lambda t: gc.optim.RMSProp(lr=0.01, decay=0.9, eps=1e-8, target=t)),
    ("adam", lambda t: gc.optim.Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-8, target=t)),
])
def test_many_steps_follow_the_lecture_formulas(kind, opt, target):
    rng = np.random.default_rng(1)
    p0, grads = rng.standard_normal(7), rng.standard_normal((30, 7))
    h = {"rho": 0.8, "eps": {"adagrad": 1e-10}.get(kind, 1e-8), "decay": 0.9, "b1": 0.8, "b2": 0.99}
    expected = _reference(kind, p0, grads, {"momentum": 0.05, "adagrad": 0.05}.get(kind, 0.01), **h)
    np.testing.assert_allclose(steps(opt(target), p0, grads), expected, rtol=1e-12, atol=1e-14)


def test_lecture_gradient_descent_on_a_parabola(target):
    @gc.graph
    def parabola(w):
        return (w + 5) ** 2

    fn = gc.compile(parabola, target=target)
    params, opt, path = {"w": np.array(3.0)}, gc.optim.SGD(lr=0.02, target=target), []
    for _ in range(175):
        opt.step(params, fn.backward(**params))
        path.append(float(params["w"]))
    assert path[0] == pytest.approx(2.68, abs=1e-12)
    assert path[1] == pytest.approx(2.3728, abs=1e-12)
    assert round(path[174], 4) == -4.9937
    assert path[174] == pytest.approx(-5 + 8 * 0.96 ** 175, abs=1e-9)


# ---- PyTorch ------------------------------------------------------------------------------------

CONFIGS = [
    ("SGD", {"lr": 0.05}, {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
     {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("AdaGrad", {"lr": 0.1}, {"lr": 0.1}),
    ("AdaGrad", {"lr": 0.1, "eps": 1e-6, "weight_decay": 0.1}, {"lr": 0.1, "eps": 1e-6, "weight_decay": 0.1}),
    ("RMSProp", {"lr": 0.01}, {"lr": 0.01, "alpha": 0.9}),
    ("RMSProp", {"lr": 0.01, "decay": 0.99, "eps": 1e-6}, {"lr": 0.01, "alpha": 0.99, "eps": 1e-6}),
    ("Adam", {}, {}),
    ("Adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.1},
     {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01}, {"lr": 0.01}),
]
TORCH_NAMES = {"SGD": "SGD", "AdaGrad": "Adagrad", "RMSProp": "RMSprop", "Adam": "Adam", "AdamW": "AdamW"}


def _quadratic(seed):
    """A convex quadratic in two parameters (a matrix and a vector) and its gradients."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((5, 5))
    a = a @ a.T / 5 + 0.1 * np.eye(5)
    c = rng.standard_normal(4)
    return lambda p: {"W": p["W"] @ a, "b": p["b"] - c}


@needs_torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, ours, theirs", CONFIGS, ids=lambda v: v if isinstance(v, str) else None)
def test_same_trajectory_as_torch_optim(name, ours, theirs, dtype, target):
    grad_of = _quadratic(0)
    rng = np.random.default_rng(1)
    start = {"W": rng.standard_normal((3, 5)).astype(dtype), "b": rng.standard_normal(4).astype(dtype)}
    params = {k: v.copy() for k, v in start.items()}
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    opt = getattr(gc.optim, name)(**ours, target=target)
    topt = getattr(torch.optim, TORCH_NAMES[name])(list(tparams.values()), **theirs)
    for _ in range(40):
        opt.step(params, grad_of(params))
        grads = grad_of({k: v.detach().numpy() for k, v in tparams.items()})
        for k, v in tparams.items():
            v.grad = torch.tensor(grads[k].astype(dtype))
        topt.step()
        for k in params:
            assert params[k].dtype == np.dtype(dtype)
            tol = dict(rtol=1e-12, atol=1e-13) if dtype == "float64" else dict(rtol=2e-5, atol=2e-6)
            np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), **tol)


@needs_torch
def test_schedule_matches_torch_scheduler_in_a_run():
    grad_of = _quadratic(2)
    start = {"W": np.ones((3, 5)), "b": np.zeros(4)}
    params = {k: v.copy() for k, v in start.items()}
    tparams = [torch.tensor(v, requires_grad=True) for v in start.values()]
    opt = gc.optim.SGD(lr=gc.schedules.step_decay(0.1, every=5, factor=0.5), momentum=0.9)
    topt = torch.optim.SGD(tparams, lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(topt, step_size=5, gamma=0.5)
    for _ in range(20):
        opt.step(params, grad_of(params))
        for t, g in zip(tparams, grad_of({"W": tparams[0].detach().numpy(), "b": tparams[1].detach().numpy()}).values()):
            t.grad = torch.tensor(g)
        topt.step()
        sched.step()
    np.testing.assert_allclose(params["W"], tparams[0].detach().numpy(), rtol=1e-12)


# ---- how step() works -----------------------------------------------------------------------------

def test_update_rule_is_a_compiled_graph_named_like_the_parameters():
    params = {"W1": np.ones((2, 3)), "b1": np.zeros(3)}
    opt = gc.optim.Adam(lr=0.1)
    fn = opt.compile(params)
    assert isinstance(fn, gc.CompiledGraph) and fn.target == "numpy"
    assert fn.inputs == ("W1", "dW1", "m_W1", "v_W1", "b1", "db1", "m_b1", "v_b1",
                         "lr", "beta1", "beta2", "eps", "t")
    assert fn.outputs == ("W1_new", "m_W1_new", "v_W1_new", "b1_new", "m_b1_new", "v_b1_new")
    assert "import numpy" in fn.source and "graphc" not in fn.source.split('"""')[2]
    assert opt.compile(params) is fn                           # once per names and shapes
    assert opt.compile({"W1": np.ones((4, 3)), "b1": np.zeros(3)}) is not fn


def test_odd_parameter_names_fall_back_to_positions():
    params = {"layer1.weight": np.ones(3), "lr": np.ones(2)}
    fn = gc.optim.SGD(lr=0.5).compile(params)
    assert fn.inputs == ("p0", "dp0", "p1", "dp1", "lr")
    gc.optim.SGD(lr=0.5).step(params, (np.ones(3), np.ones(2)))
    np.testing.assert_array_equal(params["layer1.weight"], 0.5)


def test_step_updates_in_place_and_accepts_a_tuple_of_gradients():
    w = np.array([1.0, 2.0])
    params = {"w": w, "s": np.array(3.0), "f": 4.0}
    gc.optim.SGD(lr=0.5).step(params, (np.array([2.0, 2.0]), 2.0, 2.0))
    assert params["w"] is w
    np.testing.assert_array_equal(w, [0.0, 1.0])
    assert float(params["s"]) == 2.0 and params["f"] == 3.0   # a plain number is replaced


def test_a_step_on_the_cpu_calls_the_module_directly(target):
    """Arrays of the rule's dtype and shapes go straight to the generated module (no argument
    binding per step); the cuda target's step keeps the checked path, which moves arrays."""
    params = {"W": np.ones((2, 3), np.float32), "b": np.zeros(2, np.float32), "s": np.array(1.0, np.float32)}
    W = params["W"]
    opt = gc.optim.SGD(lr=0.5, momentum=0.9, target=target)
    fn, calls = opt.compile(params), []
    checked = fn.forward
    fn.forward = lambda *args, **kwargs: calls.append(1) or checked(*args, **kwargs)
    grads = {"W": np.full((2, 3), 2.0, np.float32), "b": np.ones(2, np.float32), "s": np.array(1.0, np.float32)}
    for _ in range(2):
        opt.step(params, grads)
    # v = g, p = p - 0.5 v; then v = 0.9 v + g, p = p - 0.5 v
    np.testing.assert_allclose(gc.to_host(params)["W"], 1 - 0.5 * 2 - 0.5 * 3.8, rtol=1e-6)
    np.testing.assert_allclose(gc.to_host(params)["b"], -0.5 - 0.5 * 1.9, rtol=1e-6)
    np.testing.assert_allclose(gc.to_host(params)["s"], 1 - 0.5 - 0.5 * 1.9, rtol=1e-6)
    np.testing.assert_allclose(gc.to_host(opt.state["W"])["v"], 3.8, rtol=1e-6)
    assert params["W"] is W and opt.t == 2
    assert calls == ([1, 1] if target == "cuda" else [])


def test_arrays_that_do_not_fit_the_rule_take_the_checked_path():
    params = {"w": np.ones(3, np.float32)}
    opt = gc.optim.SGD(lr=0.5)
    opt.step(params, {"w": [2.0, 2.0, 2.0]})        # a list
    opt.step(params, {"w": np.full(3, 2.0)})        # float64 gradients of float32 parameters
    np.testing.assert_array_equal(params["w"], np.full(3, -1.0, np.float32))
    with pytest.raises(gc.GraphError, match="expects shape"):
        opt.step(params, {"w": np.ones(4, np.float32)})
    np.testing.assert_array_equal(params["w"], -1.0)   # the refused step changed nothing
    assert opt.t == 2


def test_an_update_that_is_the_parameter_itself_is_not_copied():
    """A rule that wrote its result into the parameter's array returns that array: step
    skips the copy (a read-only array would refuse it)."""
    from graphc.train.optim import _write
    w = np.ones(2)
    w.flags.writeable = False
    params = {"w": w}
    _write(params, "w", w)
    assert params["w"] is w
    with pytest.raises(ValueError, match="read-only"):
        _write(params, "w", np.zeros(2))      # any other value is copied in


def test_gradients_must_match_the_parameters():
    opt, params = gc.optim.SGD(lr=0.1), {"a": np.ones(2), "b": np.ones(2)}
    with pytest.raises(KeyError, match="missing b"):
        opt.step(params, {"a": np.ones(2)})
    with pytest.raises(KeyError, match="not parameters: c"):
        opt.step(params, {"a": np.ones(2), "b": np.ones(2), "c": np.ones(2)})
    with pytest.raises(ValueError, match="1 gradients for 2 parameters"):
        opt.step(params, (np.ones(2),))
    with pytest.raises(gc.GraphError, match="expects shape"):
        opt.step(params, {"a": np.ones(3), "b": np.ones(2)})


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="Nesterov"):
        gc.optim.SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr must be positive"):
        gc.optim.Adam(lr=0.0)
    with pytest.raises(ValueError, match="beta1"):
        gc.optim.Adam(beta1=1.0)
    with pytest.raises(gc.GraphError, match="unknown target"):
        gc.optim.SGD(lr=0.1, target="fortran").step({"a": np.ones(1)}, (np.ones(1),))


def test_float32_parameters_get_a_float32_rule(target):
    params = {"w": np.ones(3, dtype=np.float32)}
    opt = gc.optim.Adam(lr=0.1, target=target)
    opt.step(params, (np.ones(3, dtype=np.float32),))
    assert opt.compile(params).dtype == "float32"
    assert params["w"].dtype == np.float32 and opt.state["w"]["m"].dtype == np.float32
    np.testing.assert_allclose(params["w"], 0.9, rtol=1e-6)


def test_learning_rate_changes_without_recompiling():
    params, opt = {"w": np.zeros(2)}, gc.optim.SGD(lr=1.0)
    fn = opt.compile(params)
    opt.step(params, (np.ones(2),))
    opt.lr = 0.5
    opt.step(params, (np.ones(2),))
    np.testing.assert_array_equal(params["w"], -1.5)
    assert opt.compile(params) is fn and opt.t == 2


def test_a_schedule_is_evaluated_at_the_step_count():
    params = {"w": np.zeros(1)}
    opt = gc.optim.SGD(lr=gc.schedules.inverse_time_decay(1.0, k=1.0))
    for _ in range(3):
        opt.step(params, (np.ones(1),))
    assert params["w"][0] == pytest.approx(-(1 + 1 / 2 + 1 / 3), abs=1e-15)
    assert opt.learning_rate() == 0.25


def test_zero_state_restarts_the_moments():
    params, opt = {"w": np.zeros(1)}, gc.optim.Adam(lr=0.1)
    opt.step(params, (np.ones(1),))
    opt.zero_state()
    opt.step(params, (np.ones(1),))
    assert params["w"][0] == pytest.approx(-0.2, abs=1e-6)   # two first steps of -lr


# ---- running averages (batch norm) -------------------------------------------------------------------

@gc.graph(wrt=("x", "gamma", "beta"))
def bn_layer(x: gc.Tensor["B", 3], gamma: gc.Tensor[3], beta: gc.Tensor[3], *, train=True):
    return gc.batch_norm(x, gamma, beta, train=train)


def test_running_averages_by_hand():
    running = gc.optim.RunningAverages(bn_layer)
    assert set(running.values) == {"bn1_mean", "bn1_var"}
    np.testing.assert_array_equal(running.values["bn1_var"], 1.0)
    running.update({"bn1_mean": np.array([1.0, 2.0, 3.0]), "bn1_var": np.array([3.0, 3.0, 3.0]), "L": 0})
    np.testing.assert_allclose(running.values["bn1_mean"], [0.1, 0.2, 0.3], rtol=1e-15)
    np.testing.assert_allclose(running.values["bn1_var"], 1.2, rtol=1e-15)
    with pytest.raises(KeyError, match="bn1_var"):
        running.update({"bn1_mean": np.zeros(3)})


@needs_torch
def test_running_averages_match_torch_batch_norm(target):
    fn = gc.compile(bn_layer, target=target)
    rng = np.random.default_rng(0)
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    running = gc.optim.RunningAverages(fn, momentum=0.9, unbiased=True)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for _ in range(5):
        x = 2 * rng.standard_normal((8, 3)) + 1
        running.update(fn.forward(x, gamma, beta), batch_size=8)
        torch.nn.functional.batch_norm(torch.tensor(x), rm, rv, torch.tensor(gamma), torch.tensor(beta),
                                       training=True, momentum=0.1)
    np.testing.assert_allclose(running.values["bn1_mean"], rm.numpy(), rtol=1e-13)
    np.testing.assert_allclose(running.values["bn1_var"], rv.numpy(), rtol=1e-13)
    x = rng.standard_normal((4, 3))
    inference = gc.compile(gc.variant(bn_layer, train=False), target=target).forward(x, gamma, beta, **running.values)
    expected = torch.nn.functional.batch_norm(torch.tensor(x), rm, rv, torch.tensor(gamma), torch.tensor(beta),
                                              training=False)
    np.testing.assert_allclose(inference, expected.numpy(), rtol=1e-12)


# ---- schedules ----------------------------------------------------------------------------------------

def test_schedule_values_by_hand():
    assert gc.schedules.constant(0.1).values(3) == [0.1, 0.1, 0.1]
    assert gc.schedules.step_decay(1.0, every=2, factor=0.1).values(5) == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert gc.schedules.exponential_decay(2.0, k=0.5).values(3) == pytest.approx([2, 2 * math.exp(-0.5), 2 * math.exp(-1)])
    assert gc.schedules.inverse_time_decay(1.0, k=0.5).values(4) == pytest.approx([1, 1 / 1.5, 0.5, 0.4])
    assert gc.schedules.cosine(1.0, period=4, lr_min=0.2).values(6) == pytest.approx(
        [1.0, 0.2 + 0.8 * (1 + math.sqrt(0.5)) / 2, 0.6, 0.2 + 0.8 * (1 - math.sqrt(0.5)) / 2, 0.2, 0.2])
    assert gc.schedules.warmup(1.0, steps=4).values(6) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        gc.schedules.step_decay(1.0, every=0)
    with pytest.raises(ValueError):
        gc.schedules.cosine(1.0, period=10)(-1)
    assert "cosine" in repr(gc.schedules.cosine(1.0, period=10))


@needs_torch
@pytest.mark.parametrize("ours, make", [
    (gc.schedules.step_decay(0.5, every=3, factor=0.3),
     lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.3)),
    (gc.schedules.exponential_decay(0.5, k=0.1),
     lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=math.exp(-0.1))),
    (gc.schedules.cosine(0.5, period=12, lr_min=0.01),
     lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12, eta_min=0.01)),
])
def test_schedules_match_torch_schedulers(ours, make):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched, theirs = make(opt), []
    for _ in range(13):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert ours.values(13) == pytest.approx(theirs, rel=1e-12)
