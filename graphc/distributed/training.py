"""Synchronous data-parallel training: each step's gradient from every shard (DataParallel),
the update on the driver by any gc.optim optimizer, and checkpoints from which a run
interrupted anywhere resumes with the same loss curve.

A checkpoint is one .npz: the parameters, the optimizer's state and step count, the
training step and the loss curve so far, written to a temporary file beside it and renamed
over it (a rename is atomic: a run killed while writing leaves the previous checkpoint
whole). A step's minibatch is a function of the seed and the step alone (epoch e is the
permutation drawn by default_rng([seed, e])), so a resumed run draws the batches the
uninterrupted one would have.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..train.diagnostics import progress as progress_bar


@dataclass
class Training:
    """What train returns: the parameters (the dict given, updated in place), the optimizer,
    the loss at each step from the first (a resumed run's curve includes the steps before),
    and the step it started from (0, or the checkpoint's)."""
    params: dict
    optimizer: object
    curve: np.ndarray
    resumed_from: int


def train(dp, params, optimizer, steps, batch_size=None, seed=0, checkpoint=None, every=10,
          progress=True, callback=None):
    """`steps` steps of synchronous data-parallel training of `dp`'s function: each step's
    loss and gradients over the whole data set (batch_size=None) or a minibatch drawn from
    the shards, then `optimizer.step` on the driver. `params`: every input not scattered,
    updated in place (those in the function's wrt are trained). With `checkpoint` (a path),
    a checkpoint is written every `every` steps and at the end, and a run finding one there
    resumes from it. `callback(step, value)` is called after each step (the loss and any
    other outputs, as value_and_grad returns them)."""
    wrt = dp.fn.wrt
    start, curve = 0, []
    if checkpoint is not None and Path(checkpoint).exists():
        start, curve = load_checkpoint(checkpoint, params, optimizer)
    bar = progress_bar(range(start, steps), total=steps - start, desc="training", disable=not progress)
    epoch_order = (None, None)
    for step in bar:
        rows = None
        if batch_size is not None:
            epoch_order = _order(dp.size, batch_size, seed, step, epoch_order)
            j = step % -(-dp.size // batch_size)
            rows = dp.rows(epoch_order[1][j * batch_size:(j + 1) * batch_size])
        value, grads = dp.value_and_grad(rows, **params)
        trained = {k: params[k] for k in wrt}
        optimizer.step(trained, dict(zip(wrt, grads)))
        params.update(trained)   # a parameter that is a plain number gets its new value
        curve.append(float(_loss(value)))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{curve[-1]:.4g}")
        if checkpoint is not None and ((step + 1) % every == 0 or step + 1 == steps):
            save_checkpoint(checkpoint, params, optimizer, step + 1, curve)
        if callback is not None:
            callback(step, value)
    return Training(params, optimizer, np.array(curve), start)


def _loss(value):
    """The first output, as value_and_grad returns the outputs (one, a tuple or a dict)."""
    if isinstance(value, dict):
        return next(iter(value.values()))
    return value[0] if isinstance(value, tuple) else value


def _order(n, batch_size, seed, step, cached):
    """(epoch, its permutation of the examples) for `step`, drawn once per epoch."""
    epoch = step // -(-n // batch_size)
    if cached[0] == epoch:
        return cached
    return epoch, np.random.default_rng([seed, epoch]).permutation(n)


def save_checkpoint(path, params, optimizer, step, curve=()):
    """Parameters, optimizer state and step count, training step and loss curve in one .npz,
    written atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    arrays = {"step": np.int64(step), "t": np.int64(optimizer.t), "curve": np.asarray(curve, dtype=np.float64),
              "optimizer": np.str_(type(optimizer).__name__)}
    arrays.update((f"param/{k}", np.asarray(v)) for k, v in params.items())
    for name, slots in optimizer.state.items():
        arrays.update((f"state/{name}/{slot}", np.asarray(v)) for slot, v in slots.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path, params, optimizer):
    """Restore a checkpoint into `params` (in place) and `optimizer`; returns (step, curve)."""
    with np.load(path, allow_pickle=False) as data:
        kind = str(data["optimizer"])
        if kind != type(optimizer).__name__:
            raise ValueError(f"checkpoint {path} holds the state of a {kind} optimizer, not a "
                             f"{type(optimizer).__name__}")
        missing = [k for k in params if f"param/{k}" not in data]
        if missing:
            raise KeyError(f"checkpoint {path} has no parameter {', '.join(missing)}")
        for name in params:
            value = data[f"param/{name}"]
            if isinstance(params[name], np.ndarray) and params[name].shape == value.shape:
                params[name][...] = value
            else:
                params[name] = value[()] if value.ndim == 0 else value
        optimizer.state = {}
        for key in data.files:
            if key.startswith("state/"):
                _, name, slot = key.split("/", 2)
                optimizer.state.setdefault(name, {})[slot] = data[key]
        optimizer.t = int(data["t"])
        return int(data["step"]), [float(v) for v in data["curve"]]
