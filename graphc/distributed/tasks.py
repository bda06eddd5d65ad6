"""What runs on the workers: one shard's value and gradients, the pairwise sums of the
reduction tree, a minibatch's rows. Top-level functions of graphc, so that Dask sends them
by name (every worker has graphc installed); the compiled function itself arrives pickled
(its module's text, graphc/runtime.py) once per worker.

A shard's part of the result is already weighted (a mean's share of the examples), so that
the tree only adds: its order is fixed by the shards' numbers, whatever worker holds what,
and so are the sums' roundings.
"""
from __future__ import annotations

import ctypes
import functools
import sys
import time

import numpy as np

from .reduction import MEAN, SUM, Rows


def shard_step(fn, shard, common, params, rows, weight, kinds):
    """`fn.value_and_grad` on one shard (its `rows`, or all of it), each output made ready
    for the tree: a mean times `weight`, a sum as it is, rows as a list of pieces; and the
    seconds it took here (the step's time less the slowest shard's is Dask's)."""
    start = time.perf_counter()
    _keep_freed_memory()
    inputs = {name: _as_made_here(v) for part in (common, params) for name, v in part.items()}
    for name, values in shard.items():
        inputs[name] = _as_made_here(values) if rows is None else values[rows]
    value, grads = fn.value_and_grad(**inputs)
    values = as_outputs(fn, value)
    if kinds[0] == MEAN or kinds[0] is None:   # the loss's kind decides the gradients'
        grads = tuple(np.multiply(g, weight) for g in grads)
    parts = tuple(np.multiply(v, weight) if kind == MEAN else [v] if isinstance(kind, Rows) else v
                  for v, kind in zip(values, kinds))
    return parts, grads, time.perf_counter() - start


@functools.lru_cache(maxsize=None)   # once a process
def _keep_freed_memory():
    """Let this process's allocator keep the memory a step frees for the next step.

    Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536, which hands freed memory back
    to the system at once and, as any such setting does, stops glibc from raising its mmap
    threshold: each of a step's large temporaries is then mapped afresh and its pages faulted
    in and zeroed by the kernel, which made the MLP step at batch 2,048 1.3-1.4x slower in a
    plain process, and more with two workers sharing the memory bus. The mmap threshold at
    glibc's own ceiling (32 MiB) and a trim threshold above a step's temporaries give back
    what the dynamic threshold would have. Not glibc: nothing to do."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):   # musl and others have no mallopt
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, 256 << 20)


def _as_made_here(value):
    """An array as the driver's are: aligned and writeable. Dask hands over an array it
    received in place, in its message's buffer, sometimes at an odd address or read-only,
    and Numba types such an array apart: the module would be compiled again, here."""
    if isinstance(value, np.ndarray) and not (value.flags.aligned and value.flags.writeable):
        return np.array(value)
    return value


def combine(a, b, kinds):
    """Two partial results as one: sums added, rows' pieces joined, a batch-independent
    output kept (it is the same on every shard); the slower shard's seconds."""
    (values_a, grads_a, seconds_a), (values_b, grads_b, seconds_b) = a, b
    values = tuple(x + y if kind in (MEAN, SUM) or isinstance(kind, Rows) else x
                   for x, y, kind in zip(values_a, values_b, kinds))
    return values, tuple(np.add(x, y) for x, y in zip(grads_a, grads_b)), max(seconds_a, seconds_b)


def as_outputs(fn, value):
    """A value as fn.value_and_grad returns it, as a tuple of its outputs."""
    if len(fn.outputs) == 1 and not isinstance(value, (tuple, dict)):
        return (value,)
    return tuple(value.values()) if isinstance(value, dict) else tuple(value)


def shard_size(shard):
    return len(next(iter(shard.values())))


def load_shard(loader, k, dtypes):
    """Shard `k` as `loader(k)` gives it (a dict of input name -> array, the examples along
    the first axis), in the compiled function's dtypes."""
    shard = loader(k)
    if not isinstance(shard, dict) or not shard:
        raise TypeError(f"a shard loader returns a dict of input name -> array; loader({k}) returned "
                        f"{type(shard).__name__}")
    return {name: np.ascontiguousarray(values, dtype=dtypes.get(name)) for name, values in shard.items()}
