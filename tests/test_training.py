"""Regularisation as graph terms (dropout, batch norm, maxout, l1/l2), training and inference
graphs from one declaration, gc.init, gc.data and gc.diagnostics."""
import functools
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
has_matplotlib = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))


# ---- one declaration, two graphs ---------------------------------------------------------------

def test_keyword_only_arguments_are_trace_time_options():
    def model(x: gc.Tensor[3], *, scale=2.0, square=False):
        return gc.sum(x * x if square else x) * scale

    g = gc.graph(model)
    assert g.input_names == ("x",)
    x = np.array([1.0, 2.0, 3.0])
    assert gc.compile(g).forward(x) == 12.0
    assert gc.compile(gc.graph(model, name="sq", square=True, scale=1.0)).forward(x) == 14.0
    assert gc.compile(gc.graph(functools.partial(model, square=True), name="sq2")).forward(x) == 28.0
    assert gc.compile(gc.variant(g, name="half", scale=0.5)).forward(x) == 3.0
    with pytest.raises(gc.GraphError, match="'colour' is not a keyword-only argument"):
        gc.graph(model, colour=1)
    with pytest.raises(gc.GraphError, match="needs name="):
        gc.variant(g, scale=3.0)

    def needs_value(x, *, mode):
        return x

    with pytest.raises(gc.GraphError, match="'mode' needs a default or a value"):
        gc.graph(needs_value)
    assert gc.graph(needs_value, mode=1).input_names == ("x",)


@gc.graph(wrt=("W", "b", "gamma", "beta"))
def classifier(x: gc.Tensor["B", 4], y: gc.Tensor["B", 3], W: gc.Tensor[6, 4], b: gc.Tensor[6],
               gamma: gc.Tensor[6], beta: gc.Tensor[6], *, train=True):
    h = gc.relu(gc.batch_norm(gc.linear(x, W, b), gamma, beta, train=train))
    h = gc.dropout(h, 0.5, train=train)
    return gc.softmax_cross_entropy(gc.maxout(h, 2), y)


def test_training_and_inference_graphs_from_one_declaration():
    evaluation = gc.variant(classifier, train=False)
    assert evaluation.name == "classifier_eval"
    assert classifier.input_names == ("x", "y", "W", "b", "gamma", "beta", "dropout1")
    assert classifier.output_names == ("L", "bn1_mean", "bn1_var")
    assert classifier.wrt == ("W", "b", "gamma", "beta")                # the noise is no parameter
    assert evaluation.input_names == ("x", "y", "W", "b", "gamma", "beta", "bn1_mean", "bn1_var")
    assert evaluation.output_names == ("L",)
    assert evaluation.wrt == classifier.wrt


def test_layers_added_inputs_are_not_differentiated_by_default():
    @gc.graph
    def net(x: gc.Tensor[5], *, train=True):
        return gc.sum(gc.dropout(x, 0.2, train=train))

    assert net.input_names == ("x", "dropout1") and net.wrt == ("x",)
    assert gc.variant(net, train=False).wrt is None


def test_a_whole_training_step_checks_against_central_differences(target):
    fn = gc.compile(classifier, target=target)
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((5, 4)), "y": gc.data.one_hot(rng.integers(0, 3, 5), 3),
              "W": rng.standard_normal((6, 4)), "b": rng.standard_normal(6),
              "gamma": rng.uniform(0.5, 1.5, 6), "beta": rng.standard_normal(6), **gc.data.noise(fn, rng, B=5)}
    result = gc.gradcheck(fn, inputs)
    assert result.ok, str(result)
    assert set(result.errors) == {"W", "b", "gamma", "beta"}


def test_graphc_check_samples_noise_and_running_averages(tmp_path):
    model = tmp_path / "model.py"
    model.write_text(
        "import graphc as gc\n\n"
        "@gc.graph(wrt=('W', 'gamma', 'beta'))\n"
        "def net(x: gc.Tensor['B', 3], W: gc.Tensor[4, 3], gamma: gc.Tensor[4], beta: gc.Tensor[4], *, train=True):\n"
        "    h = gc.batch_norm(gc.linear(x, W), gamma, beta, train=train)\n"
        "    return gc.sum(gc.tanh(gc.dropout(h, 0.3, train=train)))\n\n"
        "net_eval = gc.variant(net, train=False)\n")
    done = subprocess.run([sys.executable, "-m", "graphc", "check", str(model), "--dim", "B=5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dropout1: uniform in [0, 1)" in done.stdout
    assert "bn1_var: uniform in [0.5, 2)" in done.stdout
    assert done.stdout.count("ok: gradients match") == 2


# ---- dropout ---------------------------------------------------------------------------------------

@gc.graph
def drop(x: gc.Tensor["B", 100], *, train=True):
    return gc.dropout(x, 0.3, train=train)


def test_dropout_mask_statistics(target):
    fn = gc.compile(drop, target=target)
    x = np.ones((200, 100))
    y = fn.forward(x, **gc.data.noise(fn, np.random.default_rng(0), B=200))
    kept = y != 0
    n = kept.size
    assert abs(kept.mean() - 0.7) < 4 * np.sqrt(0.7 * 0.3 / n)      # each unit kept with probability 1 - p
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-15)         # and scaled by 1 / (1 - p)
    assert abs(y.mean() - 1.0) < 4 * np.sqrt(0.3 / 0.7 / n)          # so the mean is unchanged


def test_dropout_gradient_flows_through_kept_units_only(target):
    fn = gc.compile(drop, target=target)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 100))
    noise = gc.data.noise(fn, rng, B=3)
    g = rng.standard_normal((3, 100))
    (dx,) = fn.backward(x, **noise, grad_out=g)
    kept = gc.to_host(noise)["dropout1"] < 0.7      # on cuda the noise is drawn on the device
    np.testing.assert_array_equal(dx[~kept], 0.0)
    np.testing.assert_allclose(dx[kept], g[kept] / 0.7, rtol=1e-15)


def test_dropout_is_the_identity_at_inference_and_reproducible_from_a_seed(target):
    fn, fn_eval = gc.compile(drop, target=target), gc.compile(gc.variant(drop, train=False), target=target)
    x = np.random.default_rng(2).standard_normal((4, 100))
    np.testing.assert_array_equal(fn_eval.forward(x), x)
    first = fn.forward(x, **gc.data.noise(fn, np.random.default_rng(7), B=4))
    again = fn.forward(x, **gc.data.noise(fn, np.random.default_rng(7), B=4))
    other = fn.forward(x, **gc.data.noise(fn, np.random.default_rng(8), B=4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_dropout_arguments():
    def f(x: gc.Tensor[3], *, p=0.5, label=None):
        return gc.sum(gc.dropout(gc.dropout(x, p, name=label), p))

    assert gc.graph(f, p=0.0).input_names == ("x",)
    assert gc.graph(f).input_names == ("x", "dropout1", "dropout2")
    assert gc.graph(f, label="drop_a").input_names == ("x", "drop_a", "dropout1")
    with pytest.raises(gc.GraphError, match="probability of dropping"):
        gc.graph(f, p=1.0)
    with pytest.raises(KeyError, match="B=64"):
        gc.data.noise(drop, np.random.default_rng(0))


# ---- batch norm --------------------------------------------------------------------------------------

def _bn_reference(x, gamma, beta, eps=1e-5):
    mu, var = x.mean(axis=0), x.var(axis=0)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta, mu, var


@gc.graph(wrt=("x", "gamma", "beta"))
def bn(x: gc.Tensor["B", 5], gamma: gc.Tensor[5], beta: gc.Tensor[5], *, train=True):
    return gc.batch_norm(x, gamma, beta, train=train)


def _bn_point(seed=0, rows=8):
    rng = np.random.default_rng(seed)
    return 3 * rng.standard_normal((rows, 5)) + 2, rng.uniform(0.5, 2, 5), rng.standard_normal(5)


def test_batch_norm_forward_uses_the_batch_statistics(target):
    x, gamma, beta = _bn_point()
    out = gc.compile(bn, target=target).forward(x, gamma, beta)
    y, mu, var = _bn_reference(x, gamma, beta)
    np.testing.assert_allclose(out["L"], y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["bn1_mean"], mu, rtol=1e-13)
    np.testing.assert_allclose(out["bn1_var"], var, rtol=1e-13)
    np.testing.assert_allclose(out["L"].mean(axis=0), beta, atol=1e-12)


def test_batch_norm_gradients_against_central_differences(target):
    fn = gc.compile(bn, target=target)
    # every entry (up to 200) on the CPU; a sample of them on the simulated GPU, where each
    # evaluation is a few hundred Python calls (the rule is the same graph on every target)
    checked = 24 if target == "cuda" else 200
    for seed, rows in ((0, 8), (1, 2), (2, 33)):
        x, gamma, beta = _bn_point(seed, rows)
        result = gc.gradcheck(fn, [x, gamma, beta], max_elements=checked)
        assert result.ok, str(result)


def test_batch_norm_inference_uses_the_running_averages(target):
    x, gamma, beta = _bn_point()
    mean, var = np.linspace(-1, 1, 5), np.linspace(0.5, 2, 5)
    out = gc.compile(gc.variant(bn, train=False), target=target).forward(x, gamma, beta, bn1_mean=mean, bn1_var=var)
    np.testing.assert_allclose(out, gamma * (x - mean) / np.sqrt(var + 1e-5) + beta, rtol=1e-13)


@needs_torch
@pytest.mark.parametrize("rows", [2, 16])
def test_batch_norm_matches_torch_in_training_mode(rows, target):
    x, gamma, beta = _bn_point(3, rows)
    upstream = np.random.default_rng(4).standard_normal((rows, 5))
    out, (dx, dgamma, dbeta) = gc.compile(bn, target=target).value_and_grad(x, gamma, beta, grad_out=upstream)
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    ty = torch.nn.functional.batch_norm(tx, None, None, tg, tb, training=True, eps=1e-5)
    ty.backward(torch.tensor(upstream))
    np.testing.assert_allclose(out["L"], ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    for ours, theirs in ((dx, tx), (dgamma, tg), (dbeta, tb)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_two_batch_norms_are_numbered_and_names_can_be_given():
    @gc.graph
    def two(x: gc.Tensor["B", 3], g: gc.Tensor[3], b: gc.Tensor[3], *, train=True):
        h = gc.batch_norm(x, g, b, train=train)
        return gc.sum(gc.batch_norm(gc.tanh(h), g, b, train=train, name="norm"))

    assert two.output_names == ("L", "bn1_mean", "bn1_var", "norm_mean", "norm_var")
    assert gc.variant(two, train=False).input_names[3:] == ("bn1_mean", "bn1_var", "norm_mean", "norm_var")


# ---- maxout and the penalties -------------------------------------------------------------------------

def test_maxout_takes_the_largest_of_each_group_and_routes_its_gradient(target):
    @gc.graph
    def m(z: gc.Tensor["B", 6]):
        return gc.maxout(z, 3)

    fn = gc.compile(m, target=target)
    z = np.array([[1.0, 5.0, 2.0, -1.0, -3.0, -2.0]])
    np.testing.assert_array_equal(fn.forward(z), [[5.0, -1.0]])
    (dz,) = fn.backward(z, grad_out=np.array([[10.0, 20.0]]))
    np.testing.assert_array_equal(dz, [[0, 10.0, 0, 20.0, 0, 0]])
    rng = np.random.default_rng(0)
    assert gc.gradcheck(fn, [rng.standard_normal((4, 6))]).ok

    def bad(z: gc.Tensor[2, 6]):
        return gc.maxout(z, 4)

    with pytest.raises(gc.GraphError, match="4 pieces do not divide"):
        gc.graph(bad)


def test_l2_and_l1_penalties(target):
    @gc.graph
    def penalties(w: gc.Tensor[2, 2]):
        return 0.1 * gc.l2(w) + 0.01 * gc.l1(w)

    w = np.array([[1.0, -2.0], [0.5, -0.25]])
    value, (dw,) = gc.compile(penalties, target=target).value_and_grad(w)
    assert value == pytest.approx(0.1 * 0.5 * np.sum(w * w) + 0.01 * np.sum(np.abs(w)), rel=1e-15)
    np.testing.assert_allclose(dw, 0.1 * w + 0.01 * np.sign(w), rtol=1e-15)

    @gc.graph
    def scaled_twice(w: gc.Tensor[2, 2]):   # constant factors of constant factors
        return 3 * (0.1 * gc.l2(w))

    (dw,) = gc.compile(scaled_twice, target=target).backward(w)
    np.testing.assert_allclose(dw, 0.3 * w, rtol=1e-15)


# ---- gc.init ------------------------------------------------------------------------------------------

def test_fan_conventions():
    assert gc.init.fans((256, 784)) == (784, 256)                      # (out, in), as gc.linear
    assert gc.init.fans((784, 256), layout="in_out") == (784, 256)     # x @ W
    assert gc.init.fans((16, 8, 3, 3)) == (72, 144)                    # (out, in, kernel...)
    assert gc.init.fans(10) == (10, 10)
    with pytest.raises(ValueError):
        gc.init.fans((2, 3), layout="columns")


@pytest.mark.parametrize("init, std", [
    (lambda rng: gc.init.small_random((400, 300), rng), 0.01),
    (lambda rng: gc.init.xavier((400, 300), rng), 1 / np.sqrt(300)),
    (lambda rng: gc.init.xavier((400, 300), rng, layout="in_out"), 1 / np.sqrt(400)),
    (lambda rng: gc.init.he((400, 300), rng), np.sqrt(2 / 300)),
    (lambda rng: gc.init.he((400, 300), rng, fan_in=50), np.sqrt(2 / 50)),
    (lambda rng: gc.init.glorot((400, 300), rng), np.sqrt(2 / 700)),
    (lambda rng: gc.init.glorot((400, 300), rng, distribution="normal"), np.sqrt(2 / 700)),
])
def test_init_scales(init, std):
    w = init(np.random.default_rng(0))
    assert w.shape == (400, 300) and w.dtype == np.float64
    assert abs(w.mean()) < 4 * std / np.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=0.01)


def test_init_is_reproducible_from_a_seed():
    a = gc.init.he((3, 4), np.random.default_rng(5))
    np.testing.assert_array_equal(a, gc.init.he((3, 4), 5))
    assert not np.array_equal(a, gc.init.he((3, 4), 6))
    limit = np.sqrt(6 / 7)
    assert np.all(np.abs(gc.init.glorot((3, 4), 0)) <= limit)
    assert gc.init.xavier((3, 4), 0, dtype="float32").dtype == np.float32
    np.testing.assert_array_equal(gc.init.constant((2,), 0.5), [0.5, 0.5])
    np.testing.assert_array_equal(gc.init.ones(2), [1.0, 1.0])
    with pytest.raises(TypeError, match="seeded generator"):
        gc.init.he((3, 4), None)


# ---- gc.data -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [gc.data.circle, gc.data.xor, gc.data.gaussians])
def test_playground_datasets(make):
    data = make(n=400, noise=0.1, train_ratio=0.75, seed=3)
    assert data.x_train.shape == (300, 2) and data.x_test.shape == (100, 2)
    assert set(np.unique(np.concatenate([data.y_train, data.y_test]))) == {0, 1}
    again = make(n=400, noise=0.1, train_ratio=0.75, seed=3)
    np.testing.assert_array_equal(data.x_train, again.x_train)
    assert np.all(np.abs(data.x_train) < 12)


def test_noise_free_playground_labels_follow_the_rule():
    x, y, *_ = gc.data.circle(n=300, train_ratio=1.0)
    np.testing.assert_array_equal(y, np.hypot(x[:, 0], x[:, 1]) < 2.5)
    x, y, *_ = gc.data.xor(n=300, train_ratio=1.0)
    np.testing.assert_array_equal(y, x[:, 0] * x[:, 1] >= 0)
    assert np.all(np.abs(x) >= 0.3)
    x, y, *_ = gc.data.gaussians(n=2000, train_ratio=1.0)
    assert x[y == 1].mean(axis=0) == pytest.approx([2, 2], abs=0.1)
    assert x[y == 0].std() == pytest.approx(np.sqrt(0.5), rel=0.05)


def test_spiral():
    data = gc.data.spiral(n=300, classes=3, noise=0.0, seed=0)
    assert data.x_train.shape == (300, 2) and len(data.x_test) == 0
    assert np.bincount(data.y_train).tolist() == [100, 100, 100]
    r = np.hypot(*data.x_train.T)
    assert r.max() == pytest.approx(1.0) and r.min() == 0.0


def test_minibatches_cover_every_example_once():
    x, y = np.arange(10.0)[:, None], np.arange(10)
    batches = list(gc.data.minibatches(x, y, batch_size=4, rng=np.random.default_rng(0)))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen) == list(range(10)) and list(seen) != list(range(10))
    for bx, by in batches:
        np.testing.assert_array_equal(bx[:, 0], by)
    assert [len(b) for b in gc.data.minibatches(y, batch_size=4, rng=0, drop_last=True)] == [4, 4]
    assert [list(b) for b in gc.data.minibatches(y[:4], batch_size=3, shuffle=False)] == [[0, 1, 2], [3]]
    with pytest.raises(ValueError, match="differ in length"):
        list(gc.data.minibatches(x, y[:3], batch_size=2))


def test_one_hot():
    np.testing.assert_array_equal(gc.data.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])


# ---- gc.diagnostics --------------------------------------------------------------------------------------

def test_update_ratios_and_accuracy():
    before = gc.diagnostics.snapshot({"w": np.array([3.0, 4.0]), "z": np.zeros(2)})
    after = {"w": np.array([3.0, 4.005]), "z": np.zeros(2)}
    assert gc.diagnostics.update_ratios(before, after) == pytest.approx({"w": 1e-3, "z": 0.0})
    assert gc.diagnostics.accuracy([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [1, 1, 1]) == pytest.approx(2 / 3)
    assert gc.diagnostics.accuracy([[0.1, 0.9]], [[0.0, 1.0]]) == 1.0


def test_activation_statistics_and_dead_relus():
    h = np.array([[0.0, 1.0, 0.0, 2.0], [0.0, 3.0, 0.0, 0.0]])
    assert gc.diagnostics.dead_fraction(h) == 0.5
    stats = gc.diagnostics.activation_stats({"h1": h})["h1"]
    assert stats.mean == pytest.approx(0.75) and stats.std == pytest.approx(np.std(h)) and stats.dead == 0.5


def test_moving_averages():
    np.testing.assert_allclose(gc.diagnostics.ema([1.0, 2.0], beta=0.5), [1.0, (0.25 + 1.0) / 0.75])
    np.testing.assert_allclose(gc.diagnostics.ema([5.0] * 10, beta=0.9), 5.0)
    np.testing.assert_allclose(gc.diagnostics.moving_average([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])


def test_history():
    h = gc.diagnostics.History()
    for step in range(3):
        h.log(step * 10, loss=1.0 / (step + 1))
    h.log(acc=0.5)
    assert h.steps("loss").tolist() == [0, 10, 20] and h.last("loss") == pytest.approx(1 / 3)
    assert "acc" in h and h.steps("acc").tolist() == [0]


@pytest.mark.skipif(not has_matplotlib, reason="matplotlib is not installed")
def test_plots_are_png_files(tmp_path):
    h = gc.diagnostics.History()
    for step in range(50):
        h.log(step, loss=np.exp(-step / 10) + 0.01 * np.sin(step), train_acc=step / 50)
    assert h.plot(tmp_path / "curves.png") == tmp_path / "curves.png"
    gc.diagnostics.plot_activations({"h1": np.random.default_rng(0).standard_normal((50, 5)),
                                     "h2": np.zeros((50, 5))}, tmp_path / "act.png")
    for name in ("curves.png", "act.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_is_the_loop_itself_when_disabled():
    items = [1, 2, 3]
    assert gc.diagnostics.progress(items, disable=True) is items
    assert list(gc.diagnostics.progress(items)) == items


def test_the_core_imports_no_optional_extra():
    code = ("import sys, graphc; "
            "print(sorted(m for m in ('matplotlib', 'tqdm', 'sklearn', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr
