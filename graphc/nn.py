"""Losses and layers built from the primitives, in their numerically stable forms."""
from __future__ import annotations

import sympy as sp

from . import ops, symbolic
from .ir import size_of
from .primitives import abs, exp, log, softplus
from .sampling import note_domain
from .structural import max, mean, reshape, stop_gradient, sum, with_vjp


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
    """Mean over the rows of -sum(y * log_softmax(logits)); the rows of y are
    probability vectors (one-hot labels). Its gradient is (softmax(logits) - y) / rows."""
    note_domain(y, "one_hot")
    loss = -sum(y * log_softmax(logits), axis=-1)
    if loss.ndim:
        loss = mean(loss)
    return with_vjp(loss, (logits, y), _softmax_cross_entropy_vjp,
                    "softmax_cross_entropy gate: (softmax(a) - y) / rows")


def _softmax_cross_entropy_vjp(g, logits, y):
    rows = size_of(logits.shape[:-1])
    a0, a1, a2 = symbolic.ARGS[:3]
    d_logits = ops.expr((a0 - a1) * a2 / rows, softmax(logits), y, g)
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
    return sp.Rational(1, 2) * sum(w * w)


def l1(w):
    return sum(abs(w))


def linear(x, w, b=None):
    """x @ w.T + b, with w of shape (out, in) as in the lectures."""
    y = x @ w.T
    return y if b is None else y + b
