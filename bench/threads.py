"""Where sharing work between threads starts to pay on the numba target: matrix products by
size for each BLAS, and a fused loop by its number of elements.

    python bench/threads.py [--quick] [--busy]

Products: the numba target's module for `a @ b`, with MKL's cblas_?gemm (where MKL is
installed) and with Numba's `@`, which calls SciPy's OpenBLAS; float64 and float32; shapes
from 32x16 @ 16x16 to 256x256 @ 256x256 (square ones and a layer's batch x width shapes),
each timed on one thread (threadpoolctl's limit) and on every core. MKL_NUM_THREADS is set to
the core count, so that the module leaves every product to MKL's own choice, as it does where
a user sets it. Loops: value_and_grad of sum(tanh(sigmoid(x*a + b)*x)**2) over n float64
elements, the module's function against its parallel twin (Numba's threads).
The two sides are timed in alternation, so that a change in the machine's load meets both;
each table gives their medians and all/one, and below it the smallest size from which every
larger one ran at least 10% faster on all the cores, beside the size from which graphc (or
the BLAS itself) shares the work out. --busy measures beside another process that keeps a
core busy: there, sharing rarely pays.
"""
import contextlib
import os
import statistics
import sys
import time

import numpy as np

import _common as C

CORES = os.cpu_count() or 1
SHAPES = [(32, 16, 16), (100, 16, 16), (32, 32, 32), (100, 32, 32), (32, 64, 64), (64, 64, 64), (100, 64, 64),
          (80, 80, 80), (128, 64, 64), (96, 96, 96), (128, 128, 64), (100, 128, 128), (128, 128, 128),
          (160, 160, 160), (100, 256, 256), (192, 192, 192), (256, 256, 256)]
ELEMENTS = [4096, 16384, 65536, 131072, 262144, 524288, 1048576]
PAYS = 0.9   # all the cores pay where they take at most this much of one thread's time
# OpenBLAS runs a product of m*n*k <= 65536 * GEMM_MULTITHREAD_THRESHOLD (4) on one thread
# (interface/gemm.c); the numba target's products through numba_xxgemm (as Numba's @) leave it that choice
OPENBLAS_ONE_THREAD_UP_TO = 262144


def alternately(sides, reps):
    """Median seconds per call of each side, (context, fn): samples of about 2 ms each, the
    sides in turn."""
    number = max(C.calibrate(fn) for _, fn in sides)
    samples = [[] for _ in sides]
    for _ in range(reps):
        for (context, fn), out in zip(sides, samples):
            with context():
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                out.append((time.perf_counter() - t0) / number)
    return [statistics.median(s) for s in samples]


@contextlib.contextmanager
def environment(**values):
    """os.environ with these values inside the block, as it was after it."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def products(blas, dtype, reps):
    """[(label, m*n*k, one thread s, all cores s)] for the module's products through `blas`,
    and the size below which the module runs them on one thread (None: the BLAS decides)."""
    import graphc as gc
    from threadpoolctl import threadpool_limits

    @gc.graph
    def product(a: gc.Tensor["M", "K"], b: gc.Tensor["K", "N"]):
        return a @ b
    with environment(GRAPHC_BLAS=blas):
        module = gc.compile(product, target="numba", dtype=dtype).module
    rng = np.random.default_rng(0)
    rows = []
    for m, n, k in SHAPES:
        a, b = (rng.standard_normal(s).astype(dtype) for s in ((m, k), (k, n)))
        one, many = alternately([(lambda: threadpool_limits(limits=1, user_api="blas"), lambda: module.forward(a, b)),
                                 (contextlib.nullcontext, lambda: module.forward(a, b))], reps)
        rows.append((f"{m}x{k} @ {k}x{n}", m * n * k, one, many))
    return rows, getattr(module, "__ONE_THREAD_BELOW", None)


def loops(reps):
    """[(label, n, one thread s, all cores s)] for a fused loop of n elements."""
    import graphc as gc

    @gc.graph(wrt=("a", "b"))
    def loop(x: gc.Tensor["N"], a, b):
        return gc.sum(gc.tanh(gc.sigmoid(x * a + b) * x) ** 2)
    module = gc.compile(loop, target="numba").module
    one, many = getattr(module, "__value_and_grad"), getattr(module, "__value_and_grad_threads")
    rng = np.random.default_rng(0)
    rows = []
    for n in ELEMENTS:
        x = rng.standard_normal(n)
        times = alternately([(contextlib.nullcontext, lambda: one(x, 0.5, 0.1)),
                             (contextlib.nullcontext, lambda: many(x, 0.5, 0.1))], reps)
        rows.append((f"{n:,} elements", n, *times))
    return rows


def pays_from(rows):
    """The smallest size from which every larger row ran at least 10% faster on all the cores."""
    size = None
    for _, n, one, many in reversed(rows):
        if many > PAYS * one:
            break
        size = n
    return size


def report(title, rows, graphc_says):
    print(f"\n{title}\n")
    C.table(["work", "size", "one thread", "all cores", "all/one"],
            [[label, f"{n:,}", C.fmt_time(one), C.fmt_time(many), f"{many / one:.2f}"] for label, n, one, many in rows])
    size = pays_from(rows)
    print(f"all the cores pay from: {'never here' if size is None else f'{size:,}'}; {graphc_says}")


def main(argv=None):
    p = C.parser(__doc__)
    p.add_argument("--busy", action="store_true", help="measure beside a process that keeps a core busy")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    from graphc.backends.numba import blas
    reps = 3 if args.quick else 15
    print(f"One thread against all {CORES} cores ({C.machine_line()}; {C.load_line()} at the start"
          f"{'; beside a busy process' if args.busy else ''})")
    # the module leaves every product to MKL where MKL_NUM_THREADS is set (read as they run)
    with environment(MKL_NUM_THREADS=str(CORES)), C.busy_process() if args.busy else contextlib.nullcontext():
        for name in (["mkl"] if blas.mkl_library() else []) + ["scipy"]:
            label = "MKL" if name == "mkl" else "SciPy's OpenBLAS"
            for dtype in ("float64", "float32"):
                rows, below = products(name, dtype, reps)
                says = (f"graphc runs products of m*n*k below {below:,} on one thread" if below
                        else f"OpenBLAS runs products of m*n*k up to {OPENBLAS_ONE_THREAD_UP_TO:,} on one thread")
                report(f"matrix products, {label}, {dtype} (size: m*n*k)", rows, says)
        from graphc.backends.numba import loops as numba_loops
        report("a fused loop, float64 (size: elements)", loops(reps),
               f"graphc shares loops of {numba_loops.PARALLEL_MIN:,} elements or more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
