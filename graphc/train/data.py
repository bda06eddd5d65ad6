"""Small datasets and minibatches: the TensorFlow Playground's 2-D problems (circle,
xor, gaussians) and the lectures' spiral, with noise and a train/test split.

    data = gc.data.spiral(n=300, classes=3, noise=0.2, train_ratio=1.0, seed=0)
    x, y = data.x_train, data.y_train           # (n, 2) floats and integer labels 0..classes-1
    for xb, yb in gc.data.minibatches(x, y, batch_size=32, rng=rng):
        ...

Labels are integers (gc.data.one_hot makes the rows a cross-entropy wants). The
playground's labels +1 / -1 are 1 / 0 here. Points are shuffled before the split.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..graph.ir import concrete_shape
from .device import uniform


class Split(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _split(x, y, train_ratio, rng):
    if not 0 < train_ratio <= 1:
        raise ValueError(f"gc.data: train_ratio must be in (0, 1], got {train_ratio}")
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    cut = int(round(train_ratio * len(x)))
    return Split(x[:cut], y[:cut], x[cut:], y[cut:])


def circle(n=500, noise=0.0, train_ratio=0.5, seed=0):
    """Class 1 inside radius 2.5, class 0 in the ring from 3.5 to 5; `noise` (0 to 0.5, the
    playground's percentage / 100) jitters the point by up to noise * 5 before it is labelled."""
    rng, radius = _rng(seed), 5.0
    half = n // 2
    r = np.concatenate([rng.uniform(0, radius * 0.5, half), rng.uniform(radius * 0.7, radius, n - half)])
    angle = rng.uniform(0, 2 * math.pi, n)
    x = np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1)
    jitter = rng.uniform(-radius, radius, (n, 2)) * noise
    y = (np.hypot(*(x + jitter).T) < radius * 0.5).astype(np.int64)
    return _split(x, y, train_ratio, rng)


def xor(n=500, noise=0.0, train_ratio=0.5, seed=0):
    """Points uniform in [-5, 5]^2 (kept 0.3 away from the axes); class 1 where x * y >= 0
    after a jitter of up to noise * 5."""
    rng = _rng(seed)
    x = rng.uniform(-5, 5, (n, 2))
    x += np.where(x > 0, 0.3, -0.3)
    jitter = rng.uniform(-5, 5, (n, 2)) * noise
    noisy = x + jitter
    y = (noisy[:, 0] * noisy[:, 1] >= 0).astype(np.int64)
    return _split(x, y, train_ratio, rng)


def gaussians(n=500, noise=0.0, train_ratio=0.5, seed=0):
    """Two Gaussian blobs, class 1 around (2, 2) and class 0 around (-2, -2), of variance
    0.5 + 7 * noise (the playground's scale: 0.5 at no noise, 4 at noise 0.5)."""
    rng = _rng(seed)
    half = n // 2
    std = math.sqrt(0.5 + 7.0 * noise)
    centres = np.concatenate([np.full((half, 2), 2.0), np.full((n - half, 2), -2.0)])
    x = centres + std * rng.standard_normal((n, 2))
    y = np.concatenate([np.ones(half, np.int64), np.zeros(n - half, np.int64)])
    return _split(x, y, train_ratio, rng)


def spiral(n=300, classes=3, noise=0.2, train_ratio=1.0, seed=0):
    """The lectures' spiral: `classes` arms of n // classes points; arm j has radius 0 to 1
    and angle from 4j to 4(j + 1) radians, plus N(0, noise**2) on the angle (the lectures'
    noise 0.2; not linearly separable)."""
    rng = _rng(seed)
    per = n // classes
    xs, ys = [], []
    for j in range(classes):
        r = np.linspace(0.0, 1.0, per)
        t = np.linspace(j * 4.0, (j + 1) * 4.0, per) + rng.standard_normal(per) * noise
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(per, j, np.int64))
    return _split(np.concatenate(xs), np.concatenate(ys), train_ratio, rng)


def one_hot(labels, classes=None, dtype="float64"):
    """Rows of the identity: one_hot([2, 0], 3) = [[0, 0, 1], [1, 0, 0]]."""
    labels = np.asarray(labels, dtype=np.int64)
    classes = int(labels.max()) + 1 if classes is None else classes
    return np.eye(classes, dtype=dtype)[labels]


def minibatches(*arrays, batch_size, rng=None, shuffle=True, drop_last=False):
    """One epoch of minibatches: tuples of aligned slices of `arrays` (just the slice for one
    array), in an order shuffled by `rng` (a Generator or a seed; draw each epoch's order
    from the same Generator for a different, reproducible order every epoch)."""
    if not arrays:
        raise ValueError("gc.data.minibatches needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"gc.data.minibatches: the arrays differ in length ({[len(a) for a in arrays]})")
    if batch_size < 1:
        raise ValueError(f"gc.data.minibatches: batch_size must be >= 1, got {batch_size}")
    order = _rng(rng).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        batch = tuple(a[idx] for a in arrays)
        yield batch[0] if len(arrays) == 1 else batch


def noise(fn, rng, **dims):
    """Fresh uniform random numbers in [0, 1) for every input a layer added to `fn`'s graph
    (dropout's noise), as a dict to pass with the other inputs:
    fn.value_and_grad(..., **gc.data.noise(fn, rng, B=64)). `dims` gives the symbolic
    dimensions (the batch size); `rng` is a Generator or a seed, so the noise is
    reproducible.

    For a compiled function of the cuda target the numbers are drawn on the GPU, as
    device arrays of the compiled dtype (nothing crosses the bus): one rng.integers draw
    per input seeds numba.cuda.random's xoroshiro128+ generators, one per thread (see
    gc.device.uniform). They are other numbers than the NumPy ones for the same seed."""
    graph, rng = getattr(fn, "graph", fn), _rng(rng)
    on_device = getattr(getattr(fn, "backend", None), "device_arrays", False)
    out = {}
    for node in graph.inputs:
        if graph.domains.get(node.name) == "uniform":
            try:
                shape = concrete_shape(node.shape, dims)
            except KeyError as e:
                raise KeyError(f"gc.data.noise: input '{node.name}' has shape {node.shape}; "
                               f"give its dimension {e} (e.g. {e.args[0]}=64)") from None
            if on_device and shape != ():   # a scalar goes to the kernels as an argument: host
                out[node.name] = uniform(shape, fn.dtype, int(rng.integers(2 ** 63)))
            else:
                out[node.name] = rng.random(shape)
    return out
