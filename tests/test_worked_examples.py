"""The worked numbers of DESIGN.md section 4, computed by the example model files."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import example, skip_on_simulated_cuda

import graphc as gc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_FILES = ("circuit", "neuron", "relu_vector", "wx_norm", "gradient_descent",
                 "two_layer_sigmoid", "softmax_ce", "init_table", "mlp")


def test_circuit(target):
    fn = gc.compile(example("circuit").circuit, target=target)
    f, grads = fn.value_and_grad(-2.0, 5.0, -4.0)
    assert f == -12.0
    assert grads == (-4.0, -4.0, 3.0)
    assert fn.backward(x=-2.0, y=5.0, z=-4.0) == (-4.0, -4.0, 3.0)


def test_neuron(target):
    fn = gc.compile(example("neuron").neuron, target=target)
    assert fn.inputs == fn.wrt == ("w0", "x0", "w1", "x1", "w2")
    assert fn.forward(2.0, -1.0, -3.0, -2.0, -3.0) == pytest.approx(0.7310585786300049, abs=1e-15)
    value, grads = fn.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
    assert value == pytest.approx(0.73106, abs=5e-6)
    assert grads == pytest.approx((-0.19661, 0.39322, -0.39322, -0.58984, 0.19661), abs=5e-6)


def test_relu_vector_with_upstream_gradient(target):
    fn = gc.compile(example("relu_vector").relu_vector, target=target)
    x = np.array([1.0, -2.0, 3.0, -1.0])
    (dx,) = fn.backward(x, grad_out=np.array([4.0, -1.0, 5.0, 9.0]))
    np.testing.assert_array_equal(dx, [4.0, 0.0, 5.0, 0.0])
    np.testing.assert_array_equal(fn.forward(x), [1.0, 0.0, 3.0, 0.0])
    with pytest.raises(gc.GraphError, match="grad_out"):
        fn.backward(x)


def test_wx_norm(target):
    fn = gc.compile(example("wx_norm").wx_norm, target=target)
    f, (dW, dx) = fn.value_and_grad(np.array([[0.1, 0.5], [-0.3, 0.8]]), np.array([0.2, 0.4]))
    assert f == pytest.approx(0.116, abs=1e-12)
    np.testing.assert_allclose(dW, [[0.088, 0.176], [0.104, 0.208]], atol=1e-12)
    np.testing.assert_allclose(dx, [-0.112, 0.636], atol=1e-12)


def test_gradient_descent():
    path = example("gradient_descent").descend(w=3.0, lr=0.02, steps=175)
    assert path[0] == pytest.approx(2.68, abs=1e-12)
    assert path[1] == pytest.approx(2.3728, abs=1e-12)
    assert round(path[174], 4) == -4.9937
    assert path[174] == pytest.approx(-5 + 8 * 0.96 ** 175, abs=1e-9)


def test_two_layer_sigmoid(target):
    fn = gc.compile(example("two_layer_sigmoid").two_layer_sigmoid, target=target)
    assert fn.outputs == ("y", "z1", "dsigma_z1")
    outputs, grads = fn.value_and_grad(3.0, 1.0, -2.0, 0.5, 0.7)
    assert outputs["z1"] == 1.0
    assert outputs["dsigma_z1"] == pytest.approx(0.19661, abs=5e-6)
    # backprop multiplies the local gradient in: dy/db1 = dy/dz1 = y(1 - y) * w2 * sigma'(z1)
    y = outputs["y"]
    db1 = dict(zip(fn.wrt, grads))["b1"]
    assert db1 == pytest.approx(y * (1 - y) * 0.5 * outputs["dsigma_z1"], rel=1e-12)


def _softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("rows", [1, 3, 16])
def test_softmax_cross_entropy_gradient_is_p_minus_y(rows, target):
    fn = gc.compile(example("softmax_ce").softmax_ce, target=target)
    assert fn.wrt == ("a",)
    rng = np.random.default_rng(rows)
    a = 3 * rng.standard_normal((rows, 5))
    y = np.eye(5)[rng.integers(0, 5, size=rows)]
    loss, (da,) = fn.value_and_grad(a, y)
    p = _softmax(a)
    assert loss == pytest.approx(-np.mean(np.sum(y * np.log(p), axis=-1)), rel=1e-12)
    np.testing.assert_allclose(da, (p - y) / rows, rtol=1e-12, atol=1e-15)


def test_softmax_cross_entropy_one_row_is_exactly_p_minus_y(target):
    @gc.graph(wrt=("a",))
    def ce(a: gc.Tensor[4], y: gc.Tensor[4]):
        return gc.softmax_cross_entropy(a, y)

    a, y = np.array([1.0, -2.0, 0.5, 3.0]), np.array([0.0, 0.0, 1.0, 0.0])
    (da,) = gc.compile(ce, target=target).backward(a, y)
    np.testing.assert_allclose(da, _softmax(a) - y, rtol=1e-12, atol=1e-15)


def _tanh_gaussian_std(sigma):
    """std of tanh(sigma * Z) for Z ~ N(0, 1), by Gauss-Hermite quadrature."""
    z, w = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sqrt(np.sum(w * np.tanh(sigma * z) ** 2) / np.sum(w)))


@pytest.fixture(scope="module")
def init_table(tmp_path_factory):
    m = example("init_table")
    fn = gc.compile(m.tanh_net, path=tmp_path_factory.mktemp("init") / "tanh_net_graphc.py")
    assert fn.outputs == tuple(f"h{k}" for k in range(1, 11))
    return m.layer_stds(fn, m.small, seed=0), m.layer_stds(fn, m.xavier, seed=0)


def test_init_table_small_weights_vanish(init_table):
    small, _ = init_table
    gain = 0.01 * np.sqrt(500)   # each layer scales the std by about this much
    assert small[0] == pytest.approx(_tanh_gaussian_std(gain), rel=0.05)
    assert small[0] == pytest.approx(0.21, abs=0.01)
    assert small[1] == pytest.approx(0.0477, rel=0.05)
    for k in range(1, 10):
        assert small[k] / small[k - 1] == pytest.approx(gain, rel=0.05)
    assert small[7] < 1e-5 and small[6] > 1e-5


def test_init_table_xavier(init_table):
    _, xavier = init_table
    assert xavier[0] == pytest.approx(_tanh_gaussian_std(1.0), rel=0.05)
    assert xavier[:3] == pytest.approx([0.63, 0.49, 0.41], abs=0.01)
    assert xavier[9] == pytest.approx(0.23, abs=0.01)
    assert all(b < a for a, b in zip(xavier, xavier[1:]))


def test_mlp_symbolic_batch_and_parameter_gradients(target):
    skip_on_simulated_cuda(target, "a 784-256-10 MLP")
    m = example("mlp")
    fn = gc.compile(m.mlp, target=target)
    assert fn.wrt == ("W1", "b1", "W2", "b2")
    rng = np.random.default_rng(0)
    params = m.init_params(rng)
    for batch in (1, 7):
        x = rng.standard_normal((batch, 784))
        y = np.eye(10)[rng.integers(0, 10, size=batch)]
        loss, (dW1, db1, dW2, db2) = fn.value_and_grad(x, y, **params)
        z = x @ params["W1"].T + params["b1"]
        h = np.maximum(z, 0)
        p = _softmax(h @ params["W2"].T + params["b2"])
        assert loss == pytest.approx(-np.mean(np.log(np.sum(p * y, axis=1))), rel=1e-12)
        d_logits = (p - y) / batch
        dh = (d_logits @ params["W2"]) * (z > 0)
        np.testing.assert_allclose(dW2, d_logits.T @ h, atol=1e-12)
        np.testing.assert_allclose(db2, d_logits.sum(0), atol=1e-12)
        np.testing.assert_allclose(dW1, dh.T @ x, atol=1e-12)
        np.testing.assert_allclose(db1, dh.sum(0), atol=1e-12)


def test_mlp_sgd_lowers_the_loss():
    losses = example("mlp").train(steps=5)
    assert all(b < a for a, b in zip(losses, losses[1:]))


@pytest.mark.parametrize("name, graph, inputs", [
    ("circuit", "circuit", (-2.0, 5.0, -4.0)),
    ("neuron", "neuron", (2.0, -1.0, -3.0, -2.0, -3.0)),
    ("wx_norm", "wx_norm", (np.array([[0.1, 0.5], [-0.3, 0.8]]), np.array([0.2, 0.4]))),
    ("two_layer_sigmoid", "two_layer_sigmoid", (3.0, 1.0, -2.0, 0.5, 0.7)),
    ("gradient_descent", "parabola", (3.0,)),
])
def test_lecture_gradients_match_central_differences(name, graph, inputs, target):
    result = gc.gradcheck(gc.compile(getattr(example(name), graph), target=target), inputs)
    assert result.ok, str(result)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_runs_as_a_script(name, tmp_path):
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
