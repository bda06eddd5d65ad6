"""The generated module: golden text, determinism, hostile names, extreme inputs."""
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "neuron_graphc.py"
NEURON_ARGS = (2.0, -1.0, -3.0, -2.0, -3.0)   # w0, x0, w1, x1, w2 of the lecture


def load_model(path):
    spec = importlib.util.spec_from_file_location(f"model_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def neuron():
    return load_model(ROOT / "examples" / "neuron.py").neuron


def test_golden_neuron_module(neuron):
    """Regenerate after an intended change with:
    graphc compile examples/neuron.py -o tests/golden/neuron_graphc.py"""
    assert gc.compile(neuron).source == GOLDEN.read_text()


def test_golden_module_reads_like_the_lecture():
    text = GOLDEN.read_text()
    assert "grad_s3 = L*(1 - L)" in text                 # the sigmoid gate, via its output
    assert "grad_w2 = grad_s3" in text and "add gate distributes" in text
    assert "grad_w0 = grad_s0*x0" in text and "mul gate swaps its inputs" in text
    assert "graphc" not in text.split('"""')[2]           # the code itself never imports graphc


def test_same_graph_same_bytes_in_another_process(neuron, tmp_path):
    script = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("m", {str(ROOT / 'examples' / 'neuron.py')!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        import graphc as gc
        sys.stdout.write(gc.compile(m.neuron, path={str(tmp_path / 'other.py')!r}).source)
    """)
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"}).stdout
    assert other == gc.compile(neuron).source
    assert gc.compile(neuron, path=tmp_path / "a.py").source == gc.compile(neuron, path=tmp_path / "b.py").source


def test_neuron_numbers_from_the_module(neuron):
    fn = gc.compile(neuron)
    value, grads = fn.value_and_grad(*NEURON_ARGS)
    assert value == pytest.approx(0.73106, abs=1e-5)
    assert grads == pytest.approx((-0.19661, 0.39322, -0.39322, -0.58984, 0.19661), abs=1e-5)
    assert fn.forward(*NEURON_ARGS) == value
    assert fn.backward(*NEURON_ARGS) == pytest.approx(grads)
    assert fn.backward(*NEURON_ARGS, grad_out=2.0) == pytest.approx(tuple(2 * g for g in grads))
    assert fn.value_and_grad(w0=2.0, x0=-1.0, w1=-3.0, x1=-2.0, w2=-3.0) == (value, grads)
    assert fn.inputs == fn.wrt == ("w0", "x0", "w1", "x1", "w2") and fn.outputs == ("L",)


def test_module_runs_without_graphc(neuron, tmp_path):
    path = tmp_path / "neuron_graphc.py"
    gc.compile(neuron, path=path)
    script = ("import sys; sys.modules['graphc'] = None\n"
              "import neuron_graphc as m\n"
              "v, g = m.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)\n"
              "print(round(float(v), 5), [round(float(x), 5) for x in g], m.INPUTS, m.WRT, m.OUTPUTS)")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == ("0.73106 [-0.19661, 0.39322, -0.39322, -0.58984, 0.19661] "
                           "('w0', 'x0', 'w1', 'x1', 'w2') ('w0', 'x0', 'w1', 'x1', 'w2') ('L',)")


HOSTILE = ("np", "math", "s0", "s1", "grad_s0", "grad_np", "L", "grad_L", "INPUTS", "forward",
           "value_and_grad", "np_1", "exp", "where", "x")


def test_names_that_collide_with_generated_ones():
    @gc.graph
    def clash(np, math, s0, s1, grad_s0, grad_np, L, grad_L, INPUTS, forward,
              value_and_grad, np_1, exp, where, x):
        a = gc.tanh(np * math + s0) * grad_s0 + s1 * x
        b = gc.exp(a) + grad_np + L * grad_L
        c = gc.sigmoid(INPUTS - forward) * value_and_grad + np_1 ** 2 + gc.where(x > 0, exp, where)
        return b * c

    def reference(np_, math, s0, s1, grad_s0, grad_np, L, grad_L, INPUTS, forward,
                  value_and_grad, np_1, exp, where, x):
        a = np.tanh(np_ * math + s0) * grad_s0 + s1 * x
        b = np.exp(a) + grad_np + L * grad_L
        c = 1 / (1 + np.exp(-(INPUTS - forward))) * value_and_grad + np_1 ** 2 + (exp if x > 0 else where)
        return b * c

    rng = np.random.default_rng(1)
    values = rng.uniform(0.2, 0.9, len(HOSTILE))
    fn = gc.compile(clash)
    assert fn.inputs == HOSTILE
    assert fn.forward(*values) == pytest.approx(reference(*values), rel=1e-12)
    assert fn.value_and_grad(**dict(zip(HOSTILE, values)))[0] == pytest.approx(reference(*values))
    assert gc.gradcheck(fn, values).ok
    compile(fn.source, "clash", "exec")   # and it is valid Python


def test_named_values_keep_their_names():
    @gc.graph
    def circuit(x, y, z):
        q = (x + y).named("q")
        return (q * z).named("f")
    fn = gc.compile(circuit)
    assert "q = x + y" in fn.source and "f = q * z" in fn.source and "grad_q = grad_f*z" in fn.source
    assert fn.outputs == ("f",)
    assert fn.value_and_grad(-2.0, 5.0, -4.0) == (-12.0, (-4.0, -4.0, 3.0))


@pytest.mark.parametrize("name", ["1x", "a-b", "lambda", "None", "__init__", "grad_out", "x y"])
def test_invalid_names_are_refused(name):
    with pytest.raises(gc.GraphError, match="cannot name"):
        @gc.graph
        def f(x):
            return (x * 2).named(name)


def test_dict_outputs_need_valid_names():
    with pytest.raises(gc.GraphError, match="cannot name an output"):
        @gc.graph
        def f(x):
            return {"not valid": x * 2}


def test_logits_of_a_thousand_give_exact_gradients():
    @gc.graph(wrt=("a",))
    def ce(a: gc.Tensor[2, 3], y: gc.Tensor[2, 3]):
        return gc.softmax_cross_entropy(a, y)
    a = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]])
    y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    value, (grad,) = gc.compile(ce).value_and_grad(a, y)
    shifted = a - a.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    expected_loss = -np.mean(np.sum(y * (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))), axis=1))
    assert np.isfinite(value) and value == pytest.approx(expected_loss)   # 0.5 * (0 + 1 + log(1 + e^-1)) ...
    np.testing.assert_allclose(grad, (p - y) / 2, atol=1e-15)


def test_softmax_and_log_softmax_stay_finite():
    @gc.graph
    def f(a: gc.Tensor[4]):
        return gc.sum(gc.softmax(a) * gc.log_softmax(a)), gc.logsumexp(a)
    fn = gc.compile(f)
    a = np.array([1000.0, -1000.0, 500.0, 1000.0])
    (value, lse), (grad,) = fn.value_and_grad(a)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert lse == pytest.approx(1000.0 + np.log(2.0))


@pytest.mark.parametrize("op", [gc.sigmoid, gc.tanh, gc.softplus, gc.exp])
def test_saturating_functions_do_not_give_nan(op):
    @gc.graph
    def f(x: gc.Tensor[4]):
        return gc.sum(op(x))
    with np.errstate(over="ignore"):
        value, (grad,) = gc.compile(f).value_and_grad(np.array([-1000.0, -40.0, 40.0, 700.0]))
    assert not np.isnan(value) and not np.any(np.isnan(grad))


def test_softplus_is_exact_at_extremes():
    @gc.graph
    def f(x: gc.Tensor[3]):
        return gc.sum(gc.softplus(x))
    _, (grad,) = gc.compile(f).value_and_grad(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(grad, [0.0, 0.5, 1.0])   # sigmoid, the derivative of softplus


def test_binary_cross_entropy_with_logits_is_stable():
    @gc.graph(wrt=("x",))
    def f(x: gc.Tensor[4], y: gc.Tensor[4]):
        return gc.binary_cross_entropy_with_logits(x, y)
    x = np.array([-1000.0, 1000.0, 2.0, -3.0])
    y = np.array([0.0, 1.0, 1.0, 0.0])
    value, (grad,) = gc.compile(f).value_and_grad(x, y)
    sig = 1 / (1 + np.exp(-x[2:]))
    expected = np.mean(np.r_[0.0, 0.0, -np.log(sig[0]), -np.log(1 - sig[1])])
    assert value == pytest.approx(expected)
    np.testing.assert_allclose(grad, (np.r_[0.0, 1.0, sig] - y) / 4, atol=1e-15)


def test_float32_stays_float32():
    @gc.graph(wrt=("W",))
    def f(x: gc.Tensor["B", 3], W: gc.Tensor[2, 3]):
        return gc.mean(gc.sigmoid(x @ W.T) * 0.5 + gc.relu(x @ W.T) ** 2)
    fn = gc.compile(f, dtype="float32")
    x = np.ones((4, 3))
    value, (grad,) = fn.value_and_grad(x, np.full((2, 3), 0.1))
    assert isinstance(value, np.float32) and grad.dtype == np.float32
    m = fn.module.value_and_grad(x.astype(np.float32), np.full((2, 3), 0.1, np.float32))
    assert m[1][0].dtype == np.float32


def test_one_module_serves_every_batch_size():
    @gc.graph(wrt=("W",))
    def f(x: gc.Tensor["B", 3], W: gc.Tensor[2, 3]):
        return gc.mean(gc.tanh(x @ W.T))
    fn = gc.compile(f)
    W = np.arange(6.0).reshape(2, 3) / 10
    for batch in (1, 5, 17):
        x = np.linspace(-1, 1, batch * 3).reshape(batch, 3)
        value, (grad,) = fn.value_and_grad(x, W)
        assert value == pytest.approx(np.mean(np.tanh(x @ W.T)))
        np.testing.assert_allclose(grad, ((1 - np.tanh(x @ W.T) ** 2) / (batch * 2)).T @ x)
