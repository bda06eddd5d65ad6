"""The training examples, at reduced sizes, with the accuracies they reach."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import example, skip_on_simulated_cuda

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
has = {name: importlib.util.find_spec(name) is not None for name in ("sklearn", "matplotlib")}


def test_spiral_two_layer_relu_net_reaches_97_percent(target):
    skip_on_simulated_cuda(target, "1,000 training steps")
    result = example("train_spiral").train(steps=1000, optimizer="momentum", target=target)
    assert result["train_acc"] >= 0.97
    assert result["loss"][-1] < 0.35 < result["loss"][0]
    assert 0 <= result["dead_relu"] < 1
    assert all(1e-6 < r < 1e-1 for r in result["update_ratios"].values())


def test_spiral_with_adam():
    assert example("train_spiral").train(steps=600, optimizer="adam")["train_acc"] >= 0.97


@pytest.mark.skipif(not has["sklearn"], reason="scikit-learn is not installed")
def test_digits_mlp_reaches_96_percent_test_accuracy(target):
    skip_on_simulated_cuda(target, "10 epochs of training")
    result = example("train_digits").train(epochs=10, target=target)
    assert result["test_acc"] >= 0.96
    assert result["seconds_per_epoch"] > 0


def test_spiral_at_a_tiny_size_runs_on_every_target(target):
    # two steps on 30 points: the cuda target's kernels at the simulator's pace, end to end
    result = example("train_spiral").train(steps=2, points=30, target=target)
    reference = example("train_spiral").train(steps=2, points=30)
    np.testing.assert_allclose(result["loss"], reference["loss"], rtol=1e-12)
    assert result["train_acc"] == reference["train_acc"]


@pytest.mark.skipif(not has["sklearn"], reason="scikit-learn is not installed")
def test_digits_at_a_tiny_size_runs_on_every_target(target):
    # batch norm, dropout noise drawn for the target, Adam, running averages, the inference graph
    result = example("train_digits").train(epochs=1, batch_size=16, images=16, target=target)
    loss = np.asarray(result["history"]["loss"])
    assert loss.shape == (1,) and np.isfinite(loss).all() and 0 <= result["test_acc"] <= 1
    if target != "cuda":   # the same noise from the same seed: the same run as NumPy's
        reference = example("train_digits").train(epochs=1, batch_size=16, images=16)
        np.testing.assert_allclose(loss, reference["history"]["loss"], rtol=1e-12)
        assert result["test_acc"] == reference["test_acc"]


@pytest.mark.skipif(not has["sklearn"], reason="scikit-learn is not installed")
def test_lenet_reaches_98_percent_test_accuracy():
    """LeNet-5 on the upsampled digits, the example's defaults (15 epochs, numpy)."""
    result = example("train_lenet").train()
    assert result["test_acc"] >= 0.98, result["test_acc"]


@pytest.mark.skipif(not has["sklearn"], reason="scikit-learn is not installed")
def test_lenet_at_a_tiny_size_runs_on_every_target(target):
    """One step of LeNet-5 on every target: 8 images of 28x28 (12x12 on the simulated GPU,
    where each element is a Python call); the same loss as NumPy's."""
    size, images = (12, 2) if target == "cuda" else (28, 8)
    run = lambda t: example("train_lenet").train(epochs=1, batch_size=images, images=images, size=size,  # noqa: E731
                                                 target=t)
    result, reference = run(target), run("numpy")
    np.testing.assert_allclose(result["history"]["loss"], reference["history"]["loss"], rtol=1e-9)
    assert result["test_acc"] == reference["test_acc"]


@pytest.mark.skipif(not has["sklearn"], reason="scikit-learn is not installed")
def test_digits_mlp_with_dropout_only():
    assert example("train_digits").train(epochs=10, bn=False, dropout=0.1)["test_acc"] >= 0.96


def test_init_demo_reproduces_the_lecture_table():
    m = example("init_demo")
    import graphc as gc
    table = m.table(gc.compile(m.tanh_net))
    small, xavier, he = table["0.01*N(0,1)"], table["Xavier"], table["He"]
    assert small[0] == pytest.approx(0.21, abs=0.01) and small[1] == pytest.approx(0.0477, rel=0.05)
    assert small[7] < 1e-5 < small[6]
    assert xavier[:3] == pytest.approx([0.63, 0.49, 0.41], abs=0.01)
    assert xavier[9] == pytest.approx(0.23, abs=0.01)
    assert all(h > x for h, x in zip(he, xavier)) and he[9] > 0.5


def test_init_demo_relu_he_keeps_the_scale():
    m = example("init_demo")
    import graphc as gc
    table = m.table(gc.compile(m.relu_net))
    assert table["Xavier"][9] < 0.05 < 0.5 < table["He"][9]


def test_optimizers_on_rosenbrock():
    m = example("optimizers")
    results = m.run(steps=1000)
    start = (1 - m.START[0]) ** 2 + 100 * (m.START[1] - m.START[0] ** 2) ** 2
    for name, (points, loss) in results.items():
        assert np.all(np.isfinite(points)) and loss < start, name
    for name in ("Momentum", "Nesterov", "Adam"):
        assert results[name][1] < 1e-2, name
    assert results["Adam"][1] < 1e-5
    assert results["SGD"][1] > results["Momentum"][1]


@pytest.mark.parametrize("name, args", [
    ("train_spiral", ["--steps", "30", "--no-progress"]),
    ("init_demo", []),
    ("optimizers", ["--steps", "20"]),
    pytest.param("train_digits", ["--epochs", "1", "--no-progress"],
                 marks=pytest.mark.skipif(not has["sklearn"], reason="scikit-learn is not installed")),
    pytest.param("train_lenet", ["--epochs", "1", "--images", "64", "--no-progress"],
                 marks=pytest.mark.skipif(not has["sklearn"], reason="scikit-learn is not installed")),
    # the steps run on numpy while Numba compiles in another process, which is stopped at the end
    pytest.param("train_lenet", ["--epochs", "1", "--images", "64", "--no-progress", "--target", "numba", "--tiered"],
                 marks=pytest.mark.skipif(not has["sklearn"], reason="scikit-learn is not installed")),
])
def test_example_runs_as_a_script(name, args, tmp_path):
    if has["matplotlib"] and name != "init_demo":
        args = args + ["--plot", str(tmp_path / "plot.png")]
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    if "--tiered" in args:
        assert "steps run on each target: numpy 1" in done.stdout
    if "--plot" in args:
        assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
