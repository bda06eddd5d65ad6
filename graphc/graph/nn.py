"""Losses and layers built from the primitives, in their numerically stable forms."""
from __future__ import annotations

from . import ops, symbolic
from .ir import GraphError, format_shape, size_of
from .integers import one_hot_labels
from .lazy import sp
from .names import Namer, check_name
from .ops import note_domain
from .primitives import abs, exp, less, log, softplus, sqrt
from .structural import max, mean, reshape, stop_gradient, sum, with_vjp
from .tensor import Tensor


def logsumexp(a, axis=-1, keepdims=False):
    """log(sum(exp(a))) without overflow: the max is shifted out (no gradient through it)."""
    m = stop_gradient(max(a, axis, keepdims=True))
    out = log(sum(exp(a - m), axis, keepdims=True)) + m
    return out if keepdims else reshape(out, _drop_axis(out.shape, axis))


def _drop_axis(shape, axis):
    axis %= len(shape)
    return shape[:axis] + shape[axis + 1:]


def log_softmax(a, axis=-1):
    return a - logsumexp(a, axis, keepdims=True)


def softmax(a, axis=-1):
    e = exp(a - stop_gradient(max(a, axis, keepdims=True)))
    return e / sum(e, axis, keepdims=True)


def softmax_cross_entropy(logits, y):
    """Mean over the rows of -sum(y * log_softmax(logits)); the rows of y are usually
    probability vectors (one-hot labels). Its gradient is (softmax(logits)*sum(y) - y) / rows,
    the row's sum taken over its classes: (softmax(logits) - y) / rows for a probability row,
    and 0 for a row of zeros (an example masked out). y may also be integer class labels of
    shape logits.shape[:-1] (as PyTorch's cross_entropy takes them), one-hot encoded here (a
    label outside [0, classes) masks its example out)."""
    if isinstance(y, Tensor) and y.dtype == "int":
        y = one_hot_labels(logits, y)
    note_domain(y, "one_hot")
    loss = -sum(y * log_softmax(logits), axis=-1)
    if loss.ndim:
        loss = mean(loss)
    return with_vjp(loss, (logits, y), _softmax_cross_entropy_vjp,
                    "softmax_cross_entropy gate: (softmax(a)*sum(y) - y) / rows")


def _softmax_cross_entropy_vjp(g, logits, y):
    rows = size_of(logits.shape[:-1])
    a0, a1, a2, a3 = symbolic.ARGS[:4]
    mass = sum(y, axis=-1, keepdims=True)   # 1 for a probability row: the lecture's p - y
    d_logits = ops.expr((a0 * a3 - a1) * a2 / rows, softmax(logits), y, g, mass)
    d_y = ops.expr(-a0 * a1 / rows, log_softmax(logits), g)
    return d_logits, d_y


def mse(pred, target):
    """Mean squared error over every element."""
    d = pred - target
    return mean(d * d)


def binary_cross_entropy(p, y):
    """-mean(y log p + (1 - y) log(1 - p)) on probabilities p (the textbook form; it
    overflows where p reaches 0 or 1: prefer binary_cross_entropy_with_logits)."""
    note_domain(p, "unit")
    note_domain(y, "unit")
    return -mean(y * log(p) + (1 - y) * log(1 - p))


def binary_cross_entropy_with_logits(x, y):
    """binary_cross_entropy(sigmoid(x), y) as mean(softplus(x) - x*y): stable for any x."""
    note_domain(y, "unit")
    return mean(softplus(x) - x * y)


def l2(w):
    """0.5 * sum(w**2): the weight-decay penalty, whose gradient is w itself."""
    return sum(w * w) * sp.Rational(1, 2)   # Tensor first: SymPy's * would try float(w)


def l1(w):
    return sum(abs(w))


def linear(x, w, b=None):
    """x @ w.T + b, with w of shape (out, in) as in the lectures."""
    y = x @ w.T
    return y if b is None else y + b


# ---- training layers: dropout, batch norm, maxout ------------------------------------
# One declaration gives the training and the inference graph: the layers take a
# `train` flag, a Python value fixed while tracing (declare `*, train=True` in the
# model function and trace it again with gc.variant(graph, train=False)).

def _fresh(graph, base, suffixes=("",)):
    """base1, base2, ...: the first that no input, named value or running average uses."""
    taken = {n.name for n in graph.nodes if n.name} | set(graph.running) | set(graph.output_names)
    return Namer(taken).numbered(base, suffixes)


def _layer_input(x, name, shape, domain):
    """A graph input that a layer adds (after the declared ones), in `domain`."""
    check_name(x.graph, name, "an input")
    if any(n.name == name for n in x.graph.nodes):
        raise GraphError(f"graph '{x.graph.name}': the name '{name}' is already used")
    t = Tensor(x.graph, ops.add_input(x.graph, name, shape))
    if domain:
        note_domain(t, domain)
    return t


def dropout(x, p, train=True, name=None, noise=None):
    """Inverted dropout: while training each unit of x is kept with probability 1 - p and
    scaled by 1 / (1 - p), so that inference (train=False) is the identity.

    The randomness is an input: the graph gets an input `name` (default dropout1,
    dropout2, ...) of x's shape, to be filled with uniform random numbers in [0, 1)
    from a seeded generator (gc.data.noise does it); a unit is kept where its number is
    below 1 - p. `noise=` passes such numbers as a graph value instead. The gradient
    flows through the kept units only (the mask is a comparison, which has none)."""
    if not 0 <= p < 1:
        raise GraphError(f"dropout: p is the probability of dropping a unit, in [0, 1); got {p!r}")
    if not train or p == 0:
        return x
    keep = 1 - p
    u = noise if noise is not None else _layer_input(x, name or _fresh(x.graph, "dropout"), x.shape, "uniform")
    return x * less(u, keep) * (1 / keep)


def batch_norm(x, gamma, beta, eps=1e-5, train=True, name=None, axis=-1):
    """Batch normalisation of x's features (axis `axis`: the last by default, 1 for the channels
    of NCHW images, PyTorch's BatchNorm2d) over all its other axes (the batch, and the pixels):
    gamma * (x - mean) / sqrt(var + eps) + beta, with gamma and beta one per feature.

    Training (train=True) uses the batch mean and (biased) variance and adds them to the
    graph's outputs as `<name>_mean` and `<name>_var` (name: bn1, bn2, ...), so the
    forward pass returns a dict. Inference (train=False) takes the running averages as
    inputs of the same names. gc.optim.RunningAverages keeps those averages between the two."""
    name = name or _fresh(x.graph, "bn", ("_mean", "_var"))
    axis = _feature_axis(x, axis, "batch_norm")
    features = x.shape[axis:axis + 1]
    axes = tuple(k for k in range(x.ndim) if k != axis)
    # one value per feature, lined up with x's axes (C -> (C, 1, 1) for NCHW)
    per_feature = (lambda v: v) if axis == x.ndim - 1 else \
        (lambda v: reshape(v, features + (1,) * (x.ndim - 1 - axis)))
    if train:
        mu = mean(x, axes)
        centred = x - per_feature(mu)
        var = mean(centred * centred, axes)
        x.graph.running[f"{name}_mean"] = ("mean", mu.node)
        x.graph.running[f"{name}_var"] = ("var", var.node)
    else:
        mu = _layer_input(x, f"{name}_mean", features, None)
        var = _layer_input(x, f"{name}_var", features, "positive")
        x.graph.running[f"{name}_mean"] = ("mean", None)
        x.graph.running[f"{name}_var"] = ("var", None)
        centred = x - per_feature(mu)
    xhat = centred / per_feature(sqrt(var + eps))
    if xhat.node.name is None and not any(n.name == f"{name}_xhat" for n in x.graph.nodes):
        xhat.named(f"{name}_xhat")
    return per_feature(gamma) * xhat + per_feature(beta)


def _feature_axis(x, axis, fn):
    if not isinstance(axis, int) or not -x.ndim <= axis < x.ndim:
        raise GraphError(f"graph '{x.graph.name}': {fn}: axis {axis!r} is out of range for shape "
                         f"{format_shape(x.shape)}")
    return axis % x.ndim


def layer_norm(x, gamma, beta, eps=1e-5):
    """Layer normalisation (Ba et al., 2016; PyTorch's layer_norm over the last axis): each
    row normalised by its own mean and (biased) variance, then gamma * xhat + beta. No
    running averages: training and inference are the same graph."""
    mu = mean(x, -1, keepdims=True)
    centred = x - mu
    var = mean(centred * centred, -1, keepdims=True)
    return gamma * (centred / sqrt(var + eps)) + beta


def maxout(x, pieces, axis=-1):
    """Maxout (Goodfellow et al., 2013): the largest of each group of `pieces` consecutive
    entries of x along `axis`, so (..., D * pieces) becomes (..., D). With x = linear(h, W, b)
    and W of shape (D * pieces, in) this is a maxout layer of D units; the gradient is
    routed to the largest piece of each group."""
    axis %= x.ndim
    d = x.shape[axis]
    if not isinstance(pieces, int) or pieces < 1 or not isinstance(d, int) or d % pieces:
        raise GraphError(f"graph '{x.graph.name}': maxout: {pieces!r} pieces do not divide axis {axis} "
                         f"of size {d} into groups")
    grouped = reshape(x, x.shape[:axis] + (d // pieces, pieces) + x.shape[axis + 1:])
    return max(grouped, axis + 1)
