"""Training state on the GPU (the cuda target): parameters, optimizer state, batch norm's
running averages and dropout's noise kept in device memory between steps.

    params = gc.to_device(params)          # a dict of NumPy arrays -> device arrays
    for ...:
        out, grads = fn.value_and_grad(xb, yb, **params, **gc.data.noise(fn, rng, B=64))
        opt.step(params, grads)            # updated on the device, in place
    params = gc.to_host(params)            # NumPy arrays again

numba.cuda is imported on first use only: the other targets never need numba-cuda.
"""
from __future__ import annotations

import numpy as np

from ..backends import TARGETS
from ..runtime import is_device_array


def _cuda(what):
    """numba.cuda, or an error that names the extra that installs it."""
    try:
        from numba import cuda
    except ImportError as e:
        raise ImportError(f"{what} needs numba-cuda (the cuda target): "
                          f"pip install 'graphc[cuda]' ({e})") from None
    return cuda


def on_device(target):
    """Whether the target named `target` keeps its arrays, and so the training state, in
    device memory (the cuda target)."""
    backend = TARGETS.get(target)
    return backend is not None and backend.device_arrays


def _as_numba(cuda, value):
    """A numba-cuda view of a device array (no copy), for its copy methods."""
    return value if hasattr(value, "copy_to_host") else cuda.as_cuda_array(value)


def to_device(params, dtype=None):
    """A new dict with each array of `params` copied to the GPU (`dtype=` converts on the
    way). Device arrays are kept as they are; Python numbers and 0-d arrays too, as the
    cuda target takes scalars on the host (kernel arguments, no copy)."""
    cuda = _cuda("gc.to_device")
    out = {}
    for name, value in params.items():
        if is_device_array(value) or np.ndim(value) == 0:
            out[name] = value
        else:
            out[name] = cuda.to_device(np.ascontiguousarray(value, dtype=dtype))
    return out


def to_host(params):
    """A new dict with each device array of `params` copied back as a NumPy array; other
    values are kept as they are."""
    if not any(is_device_array(v) for v in params.values()):
        return dict(params)
    cuda = _cuda("gc.to_host")
    return {name: _as_numba(cuda, v).copy_to_host() if is_device_array(v) else v
            for name, v in params.items()}


def full(shape, value, dtype):
    """A device array of `shape` holding `value` (filled on the host, copied once)."""
    return _cuda("graphc's cuda training state").to_device(np.full(shape, value, dtype=dtype))


def write(target, value):
    """Copy `value` into the array `target`, wherever each lives: device to device stays
    on the device; a host value goes up, a device value comes down. Nothing when they
    are one array (a rule that updated its input in place)."""
    if value is target:
        return
    if is_device_array(target):
        cuda = _cuda("an update of a device array")
        target = _as_numba(cuda, target)
        if np.ndim(value) == 0:   # a broadcast scalar: there is no device fill method
            value = np.full(target.shape, value, dtype=target.dtype)
        target.copy_to_device(_as_numba(cuda, value) if is_device_array(value) else
                              np.ascontiguousarray(value, dtype=target.dtype))
    elif is_device_array(value):
        target[...] = _as_numba(_cuda("an update from a device array"), value).copy_to_host()
    else:
        target[...] = value


# ---- uniform random numbers on the device (dropout's noise) ------------------------------

def uniform(shape, dtype, seed):
    """A device array of `shape` and `dtype` (float32 or float64) of uniform numbers in
    [0, 1), drawn on the GPU from `seed` (an int in [0, 2**63)): the same seed, shape and
    dtype give the same numbers."""
    _cuda("gc.data.noise on the cuda target")
    from ..backends.cuda.noise import uniform as draw   # kernels: imported with numba.cuda only
    return draw(shape, np.dtype(dtype), seed)
