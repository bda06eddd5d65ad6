"""Weight initialisation, from a seeded generator.

Fan conventions (explicit, since the lectures and the libraries differ):

- layout="out_in" (default): a weight of shape (out, in), as gc.linear(x, W) = x @ W.T and
  PyTorch's Linear use it; fan_in = shape[1], fan_out = shape[0]. Beyond two axes
  (out, in, *kernel): both fans are multiplied by the kernel size, as in PyTorch.
- layout="in_out": a weight of shape (in, out), used as x @ W (the lectures' NumPy code);
  fan_in = shape[0], fan_out = shape[1].
- a vector (a bias, or a 1-D weight): fan_in = fan_out = its length.

`fan_in=` overrides the computed fan-in. Every function returns a new array (float64
unless `dtype=`); `rng` is a numpy Generator or an int seed.
"""
from __future__ import annotations

import math

import numpy as np


def _rng(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"gc.init: pass a seeded generator (np.random.default_rng(seed)) or an int seed, got {rng!r}")


def _shape(shape):
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)


def fans(shape, layout="out_in"):
    """(fan_in, fan_out) of a weight of this shape, by the conventions above."""
    shape = _shape(shape)
    if layout not in ("out_in", "in_out"):
        raise ValueError(f"gc.init: layout is 'out_in' or 'in_out', got {layout!r}")
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    kernel = math.prod(shape[2:])
    out, inn = (shape[0], shape[1]) if layout == "out_in" else (shape[1], shape[0])
    return inn * kernel, out * kernel


def constant(shape, value=0.0, dtype="float64"):
    """Every entry `value` (zeros for biases; ones for batch norm's gamma)."""
    return np.full(_shape(shape), value, dtype=dtype)


def zeros(shape, dtype="float64"):
    return constant(shape, 0.0, dtype)


def ones(shape, dtype="float64"):
    return constant(shape, 1.0, dtype)


def small_random(shape, rng, scale=0.01, dtype="float64"):
    """scale * N(0, 1), scale 0.01: fine for small nets, vanishing activations in deep ones."""
    return (scale * _rng(rng).standard_normal(_shape(shape))).astype(dtype)


def xavier(shape, rng, layout="out_in", fan_in=None, dtype="float64"):
    """The lectures' Xavier: N(0, 1) / sqrt(fan_in), so a linear unit keeps its input's variance."""
    fan_in = fan_in or fans(shape, layout)[0]
    return (_rng(rng).standard_normal(_shape(shape)) / math.sqrt(fan_in)).astype(dtype)


def glorot(shape, rng, distribution="uniform", layout="out_in", gain=1.0, dtype="float64"):
    """Glorot & Bengio (2010): variance gain**2 * 2 / (fan_in + fan_out); "uniform" in
    [-a, a] with a = gain * sqrt(6 / (fan_in + fan_out)), or "normal" (PyTorch's
    xavier_uniform_ and xavier_normal_)."""
    fan_in, fan_out = fans(shape, layout)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    rng = _rng(rng)
    if distribution == "uniform":
        w = rng.uniform(-math.sqrt(3.0) * std, math.sqrt(3.0) * std, size=_shape(shape))
    elif distribution == "normal":
        w = std * rng.standard_normal(_shape(shape))
    else:
        raise ValueError(f"gc.init.glorot: distribution is 'uniform' or 'normal', got {distribution!r}")
    return w.astype(dtype)


def he(shape, rng, layout="out_in", fan_in=None, dtype="float64"):
    """He et al. (2015), for ReLU: N(0, 1) * sqrt(2 / fan_in), the lectures' randn / sqrt(fan_in / 2)
    (PyTorch's kaiming_normal_ with mode="fan_in", nonlinearity="relu")."""
    fan_in = fan_in or fans(shape, layout)[0]
    return (_rng(rng).standard_normal(_shape(shape)) * math.sqrt(2.0 / fan_in)).astype(dtype)
