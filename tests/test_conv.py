"""Convolution and pooling against PyTorch in float64 (values and gradients, rtol 1e-9) on
every target: strides, paddings ("same" with an even kernel pads one more after),
dilations, groups and odd sizes, in two graphs.
Then spatial batch norm and layer norm, the shapes and errors, and the generated code."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from conftest import TARGETS

RTOL = 1e-9
# PyTorch warns that it copies the input for padding='same' with an even kernel
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")
N = 2

# (name, layer) over x (N, 4, 7, 6), x1 (N, 4, 11) and the weights below
LAYERS = [
    ("plain", lambda v, m: m.conv2d(v["x"], v["w"], v["b"])),
    ("strided_dilated", lambda v, m: m.conv2d(v["x"], v["w"], stride=2, padding=1, dilation=2)),
    ("grouped_same", lambda v, m: m.conv2d(v["x"], v["wg"], v["bg"], padding="same", groups=2)),
    ("pairs", lambda v, m: m.conv2d(v["x"], v["wp"], stride=(2, 1), padding=(1, 0))),
    ("conv1d", lambda v, m: m.conv1d(v["x1"], v["w1"], v["b1"], stride=2, padding=1, dilation=2, groups=2)),
    ("conv1d_same", lambda v, m: m.conv1d(v["x1"], v["w1"], padding="same", groups=2)),
    ("max_pool", lambda v, m: m.max_pool2d(v["x"], 3, stride=2, padding=1)),
    ("max_pool_odd", lambda v, m: m.max_pool2d(v["x"], 2)),
    ("avg_pool", lambda v, m: m.avg_pool2d(v["x"], 3, stride=1, padding=1)),
    ("avg_pool_pairs", lambda v, m: m.avg_pool2d(v["x"], (2, 3), stride=(1, 2))),
    ("flatten", lambda v, m: m.flatten(v["x"], 2)),
]
SHAPES = {"x": (N, 4, 7, 6), "w": (3, 4, 3, 3), "b": (3,), "wg": (4, 2, 2, 4), "bg": (4,), "wp": (5, 4, 3, 2),
          "x1": (N, 4, 11), "w1": (6, 2, 3), "b1": (6,)}


class Torch:
    """torch.nn.functional under graphc's names, so one lambda describes both."""
    conv2d, conv1d, max_pool2d, avg_pool2d, flatten = F.conv2d, F.conv1d, F.max_pool2d, F.avg_pool2d, torch.flatten


def _values():
    rng = np.random.default_rng(3)
    values = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    # distinct entries, so that a max over a window has one winner (the gradient is unique)
    values["x"] = (rng.permutation(np.prod(SHAPES["x"])) * 0.01 - 1.0).reshape(SHAPES["x"])
    return values


def _torch(values, layers):
    t = {k: torch.tensor(v, requires_grad=True) for k, v in values.items()}
    outs = [f(t, Torch) for _, f in layers]
    rng = np.random.default_rng(4)
    seeds = [torch.tensor(rng.normal(size=tuple(o.shape))) for o in outs]
    loss = sum((o * s).sum() for o, s in zip(outs, seeds))
    loss.backward()
    return outs, [s.numpy() for s in seeds], {k: np.zeros(v.shape) if v.grad is None else v.grad.numpy()
                                              for k, v in t.items()}


def _graph(layers, seed_shapes):
    names = list(SHAPES)

    def model(**kw):
        v = {k: kw[k] for k in names}
        outs = [f(v, gc) for _, f in layers]
        loss = gc.sum(gc.stack([gc.sum(o * kw[f"seed{k}"]) for k, o in enumerate(outs)]))
        return (loss, *outs)

    params = [f"{k}: gc.Tensor[{SHAPES[k]!r}]" for k in names] + \
        [f"seed{k}: gc.Tensor[{s!r}]" for k, s in enumerate(seed_shapes)]
    scope = {"gc": gc, "model": model}
    exec(f"def conv_layers({', '.join(params)}):\n    return model(**locals())", scope)
    return gc.graph(scope["conv_layers"], wrt=tuple(names))


# Two graphs, each compiled on every target but one: Numba takes a minute per graph, so on
# numba the second half's windows (strides, dilation, odd sizes) are left to tests/test_ops.py's
# rows for patches and unpatches, which run every target, and LeNet's step to the examples' tests
HALVES = [(target, half) for target in TARGETS for half in (0, 1) if (target, half) != ("numba", 1)]


@pytest.mark.parametrize("target, half", HALVES)
def test_conv_and_pooling_match_pytorch(target, half):
    layers, values = LAYERS[half::2], _values()
    outs, seeds, grads = _torch(values, layers)
    fn = gc.compile(_graph(layers, [s.shape for s in seeds]), target=target)
    args = [values[k] for k in SHAPES] + seeds
    (loss, *ours), gr = fn.value_and_grad(*args)
    for (name, _), mine, theirs in zip(layers, ours, outs):
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=RTOL, atol=1e-12, err_msg=name)
    for name, mine in zip(SHAPES, gr):
        np.testing.assert_allclose(mine, grads[name], rtol=RTOL, atol=1e-12, err_msg=name)


def test_spatial_batch_norm_and_layer_norm_match_pytorch(target):
    """batch_norm(axis=1) normalises each channel of NCHW over the batch and the pixels
    (BatchNorm2d in training mode); layer_norm normalises each row of the last axis."""
    @gc.graph
    def norms(x: gc.Tensor["B", 3, 4, 5], g: gc.Tensor[3], b: gc.Tensor[3], g2: gc.Tensor[5], b2: gc.Tensor[5],
              s: gc.Tensor["B", 3, 4, 5]):
        return gc.sum(gc.layer_norm(gc.batch_norm(x, g, b, axis=1), g2, b2) * s)
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(6, 3, 4, 5)), rng.normal(size=3), rng.normal(size=3), rng.normal(size=5),
              rng.normal(size=5), rng.normal(size=(6, 3, 4, 5))]
    out, grads = gc.compile(norms, target=target, wrt=("x", "g", "b", "g2", "b2")).value_and_grad(*values)
    t = [torch.tensor(v, requires_grad=True) for v in values]
    y = F.batch_norm(t[0], None, None, t[1], t[2], training=True)
    loss = (F.layer_norm(y, (5,), t[3], t[4]) * t[5]).sum()
    loss.backward()
    np.testing.assert_allclose(out["L"], loss.item(), rtol=RTOL)
    np.testing.assert_allclose(out["bn1_mean"], values[0].mean(axis=(0, 2, 3)), rtol=RTOL)
    for mine, theirs in zip(grads, t):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=RTOL, atol=1e-12)


def test_the_generated_code_is_im2col_and_says_what_the_backward_is():
    @gc.graph
    def layer(x: gc.Tensor["B", 1, 6, 6], w: gc.Tensor[2, 1, 3, 3]):
        return gc.sum(gc.max_pool2d(gc.conv2d(x, w, padding=1), 2))
    source = gc.compile(layer).source
    assert "np.lib.stride_tricks.sliding_window_view(s0, (3, 3), axis=(2, 3))" in source
    assert "a convolution's VJP is a convolution" in source
    assert "col2im: each kernel offset adds its window back" in source


@pytest.mark.parametrize("build, words", [
    (lambda x, w: gc.conv2d(x, w[:, :1]), ["conv2d", "(B, 2, 6, 6)", "groups=1"]),
    (lambda x, w: gc.conv2d(x, w, stride=2, padding="same"), ["padding='same' needs stride 1"]),
    (lambda x, w: gc.conv2d(x, w, padding="full"), ["'same' or 'valid'", "'full'"]),
    (lambda x, w: gc.conv2d(x, w, stride=0), ["stride must be an int >= 1", "0"]),
    (lambda x, w: gc.conv2d(x[:, :, 0], w), ["conv2d", "(N, C, H, W)", "(B, 2, 6)"]),
    (lambda x, w: gc.max_pool2d(x, 2, padding=2), ["max_pool2d", "at most half the kernel"]),
    (lambda x, w: gc.conv2d(x, w, dilation=4), ["does not fit", "(B, 2, 6, 6)"]),
    (lambda x, w: gc.flatten(x, 3, 1), ["flatten", "start_dim 3 comes after end_dim 1"]),
    (lambda x, w: gc.batch_norm(x, w[0, 0, 0], w[0, 0, 0], axis=4), ["batch_norm", "axis 4"]),
])
def test_bad_arguments_say_what_is_wrong(build, words):
    def model(x: gc.Tensor["B", 2, 6, 6], w: gc.Tensor[3, 2, 3, 3]):
        return gc.sum(build(x, w))
    with pytest.raises(gc.GraphError) as e:
        gc.graph(model)
    for word in words:
        assert word in str(e.value), (word, str(e.value))


def test_the_readme_conv_net_compiles_to_the_lines_it_shows():
    """README's "Convolutional networks": its model, and the generated lines it quotes."""
    from support import ROOT
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Convolutional networks"):readme.index("### Integer inputs")]
    blocks = section.split("```python\n")[1:]
    model, quoted = blocks[0].split("```")[0], blocks[1].split("```")[0]
    scope = {}
    exec("import graphc as gc\n" + model, scope)
    source = gc.compile(scope["cnn"]).source
    lines = [line for line in quoted.splitlines() if line.strip() and line.strip() != "..."]
    assert len(lines) >= 8
    for line in lines:
        assert line in source, line


def test_graphc_check_on_the_lenet_model_file():
    """`graphc check` on a CNN model file: every parameter's gradient against central differences."""
    import subprocess
    import sys

    from support import ROOT
    done = subprocess.run([sys.executable, "-m", "graphc", "check", str(ROOT / "examples" / "train_lenet.py"),
                           "--dim", "B=2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lenet (" in done.stdout and "ok: gradients match central differences" in done.stdout
    for name in ("C1", "c1", "C2", "c2", "F1", "F3"):
        assert any(line.split()[:1] == [name] and line.rstrip().endswith("ok") for line in done.stdout.splitlines()), name
