"""Uniform random numbers drawn on the GPU (gc.data.noise on the cuda target), with
numba.cuda.random's xoroshiro128+ generators, one per thread. Imported by gc.device
on first use, as it needs numba-cuda."""
import warnings

import numpy as np
from numba import cuda
from numba.cuda import uint32, uint64

with warnings.catch_warnings():
    # under the simulator numba-cuda's generators ask Numba for object mode, which it
    # reports as deprecated, once per function; nothing to act on here
    warnings.simplefilter("ignore", DeprecationWarning)
    from numba.cuda.random import (xoroshiro128p_dtype, xoroshiro128p_uniform_float32,
                                   xoroshiro128p_uniform_float64)

_THREADS, _BLOCKS = 256, 1024      # the generated kernels' launch limits
_PER_THREAD = 16                   # numbers each thread draws (at least)


@cuda.jit(device=True)
def _splitmix64(x):
    """Vigna's SplitMix64 finaliser: a well-mixed 64-bit word from a counter."""
    z = uint64(x)
    z = (z ^ (z >> uint32(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint32(27))) * uint64(0x94D049BB133111EB)
    return z ^ (z >> uint32(31))


@cuda.jit(device=True)
def _seed_state(states, i, seed):
    # Thread i's state is the SplitMix64 outputs 2i+1 and 2i+2 of the seed, the seeding
    # xoroshiro's authors recommend, done by each thread on the device. numba's
    # create_xoroshiro128p_states would jump every state on the host and copy the states
    # over at every call (and takes seconds per thousand states in the simulator).
    gamma = uint64(0x9E3779B97F4A7C15)   # SplitMix64's increment
    base = uint64(seed) + uint64(2 * i) * gamma
    states[i]["s0"] = _splitmix64(base + gamma)
    states[i]["s1"] = _splitmix64(base + gamma + gamma)


def _fill_kernel(draw):
    """A kernel filling `out` with numbers from `draw` (one of numba.cuda.random's)."""
    @cuda.jit
    def fill(out, states, seed):
        i = cuda.grid(1)
        _seed_state(states, i, seed)
        for k in range(i, out.shape[0], cuda.gridsize(1)):
            out[k] = draw(states, i)
    return fill


_FILL = {np.dtype(np.float64): _fill_kernel(xoroshiro128p_uniform_float64),
         np.dtype(np.float32): _fill_kernel(xoroshiro128p_uniform_float32)}


def uniform(shape, dtype, seed):
    """See gc.device.uniform."""
    kernel = _FILL.get(dtype)
    if kernel is None:
        raise TypeError(f"the cuda target draws float32 or float64 noise, not {dtype}")
    n = int(np.prod(shape))
    out = cuda.device_array(n, dtype=dtype)
    if n:
        # a grid that depends on n only, so that the numbers do too; each thread draws a
        # few numbers, which pays for seeding its generator (and spares the simulator threads)
        work = (n + _PER_THREAD - 1) // _PER_THREAD
        threads = min(_THREADS, 32 * ((work + 31) // 32))
        blocks = min(_BLOCKS, (work + threads - 1) // threads)
        states = cuda.device_array(blocks * threads, dtype=xoroshiro128p_dtype)
        with warnings.catch_warnings():
            # the simulator runs the generator's uint64 arithmetic as NumPy scalars, which
            # warn at the wraparound it relies on (a GPU wraps silently)
            warnings.simplefilter("ignore", RuntimeWarning)
            kernel[blocks, threads](out, states, np.int64(seed))
    return out.reshape(shape)
