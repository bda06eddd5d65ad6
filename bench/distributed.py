"""Data-parallel training on Dask: the 784-256-128-10 MLP's SGD step over worker processes.

    python bench/distributed.py [--target numba] [--dtype float64] [--examples 60000]
                                [--batch 4096] [--steps 30] [--workers 1,2] [--quick]

Steps per second of synchronous data-parallel SGD with gc.distributed (a LocalCluster of 1,
then 2 worker processes, one thread each, BLAS single-threaded in each; the data scattered
once, each step's minibatch drawn from the shards on the workers by DataParallel.rows, its
gradient reduced on the workers, gc.optim.SGD's update on the driver), beside one process
without Dask running the same step (fn.value_and_grad on the minibatch, the same update),
with BLAS and Numba on 1 thread and on the machine's default threads. Each no-Dask run is a
fresh subprocess (a thread count is fixed when NumPy and Numba load).

The data are synthetic: 60,000 examples of 784 standard normal features, labelled by a
random linear teacher (one-hot), softmax cross-entropy (a mean over the batch, which
DataParallel reduces as a weighted mean of the shards' values and gradients).

Printed: milliseconds and steps per second, the speedup of 2 workers over 1 (the goal is
1.6x at batch 4,096) and the scaling efficiency (speedup / workers), the slowest shard's
time on its worker (DataParallel.stats: measured in the worker, around fn.value_and_grad and
the gathering and weighting of its rows) and the time per step spent in Dask: the step's time
less that, that is scheduling, the parameters' and gradients' transfers and the tree's
additions. The first Dask step's loss is checked against fn.value_and_grad on the same
minibatch in this process.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

# this file has the name of Dask's package: with its folder on sys.path (as a script's is),
# `import distributed` would find this file, here and in Dask's worker processes
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import numpy as np   # noqa: E402
import psutil   # noqa: E402  (a dependency of Dask's distributed)

import graphc as gc   # noqa: E402

_spec = importlib.util.spec_from_file_location("_common", os.path.join(HERE, "_common.py"))
C = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(C)

ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "NUMBA_NUM_THREADS")}


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="numba", choices=sorted(gc.TARGETS))
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--examples", type=int, default=60_000)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    p.add_argument("--workers", default="1,2", help="comma-separated numbers of Dask worker processes")
    p.add_argument("--quick", action="store_true", help="a small run: 4,000 examples, batch 512, 5 steps")
    p.add_argument("--single", type=int, help=argparse.SUPPRESS)   # internal: the no-Dask run, N threads
    args = p.parse_args()
    if args.quick:
        args.examples, args.batch, args.steps = 4_000, 512, 5
    args.workers = [int(k) for k in args.workers.split(",")]
    return args


class Others:
    """How many cores the machine's other processes (not this one, nor its children) used
    while a measurement ran: the machine is shared, and a figure taken beside another
    process's work says little about the scaling."""

    def __init__(self):
        self.start, self.before = time.perf_counter(), _cpu_seconds()

    def cores(self):
        me = psutil.Process()
        mine = {me.pid} | {p.pid for p in me.children(recursive=True)}
        used = sum(t - self.before.get(pid, 0.0) for pid, t in _cpu_seconds().items() if pid not in mine)
        return used / (time.perf_counter() - self.start)


def _cpu_seconds():
    out = {}
    for proc in psutil.process_iter(["cpu_times"]):
        times = proc.info["cpu_times"]
        if times is not None:
            out[proc.pid] = times.user + times.system
    return out


def data(args):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.examples, 784)).astype(args.dtype)
    teacher = rng.standard_normal((784, 10))
    y = np.eye(10, dtype=args.dtype)[np.argmax(x @ teacher, axis=1)]
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip((784, 256, 128), (256, 128, 10)), start=1):
        params[f"W{i}"] = (rng.standard_normal((fan_out, fan_in)) * np.sqrt(2 / fan_in)).astype(args.dtype)
        params[f"b{i}"] = np.zeros(fan_out, dtype=args.dtype)
    return x, y, params


def compiled(args):
    return gc.compile(gc.graph(C.mlp, name="mlp", wrt=C.MLP_PARAMS), target=args.target, dtype=args.dtype)


def batches(n, batch, seed=1):
    """Each step's examples: shuffled epochs, as gc.data.minibatches draws them."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch + 1, batch):
            yield order[start:start + batch]


def single(args):
    """One process, no Dask: seconds per step at the batch and at its shares (batch / workers)."""
    fn, (x, y, params) = compiled(args), data(args)
    out, others = {}, Others()
    for size in sorted({-(-args.batch // k) for k in [1, *args.workers]}):
        opt, rows = gc.optim.SGD(0.1), batches(args.examples, size)

        def step():
            idx = next(rows)
            _, grads = fn.value_and_grad(x[idx], y[idx], **params)
            opt.step(params, grads)
        out[size] = C.median_time(step, max(args.steps, 5), warmup=3)
    out["others"] = others.cores()
    return out


def on_dask(args, workers, fn, x, y, params):
    """(seconds per step, of which the slowest shard's on its worker, (first step's loss, its
    examples), with 1 worker a line on what sending costs) with `workers` processes."""
    params, opt = {k: v.copy() for k, v in params.items()}, gc.optim.SGD(0.1)
    client = gc.distributed.local_client(workers)
    try:
        dp = gc.distributed.DataParallel(fn, client).scatter(x=x, y=y)
        rows = batches(args.examples, args.batch)

        def step():
            idx = next(rows)
            value, grads = dp.value_and_grad(dp.rows(idx), **params)
            opt.step(params, grads)
            return value, idx
        first = step()
        for _ in range(2):
            step()
        before, start, others = dict(dp.stats), time.perf_counter(), Others()
        for _ in range(args.steps):
            step()
        seconds = (time.perf_counter() - start) / args.steps
        compute = (dp.stats["compute"] - before["compute"]) / args.steps
        busy = others.cores()
        measured = link(client, params) if workers == 1 else ""
    finally:
        gc.distributed.close_local(client)
    return seconds, compute, first, measured, busy


def link(client, params):
    """What sending the parameters to a worker and back costs, beside sending nothing: the
    cost model's latency and bandwidth (DESIGN.md)."""
    worker, nbytes = sorted(client.ncores())[0], sum(p.nbytes for p in params.values())

    def there_and_back(value):
        return lambda: client.submit(lambda v: v, client.scatter([value], workers=[worker], hash=False)[0],
                                     workers=[worker], pure=False).result()
    empty, full = (C.median_time(there_and_back(v), 15, warmup=3) for v in ({}, params))
    return (f"Dask here: a round trip driver -> worker -> driver (a scatter, a task, its result) with "
            f"nothing {empty * 1e3:.1f} ms; with the {nbytes / 1e6:.2f} MB of parameters there and back "
            f"{full * 1e3:.1f} ms ({2 * nbytes / max(full - empty, 1e-9) / 1e9:.2f} GB/s)")


def main():
    args = parse()
    if args.single is not None:
        print(C.RESULT_TAG + json.dumps({str(k): v for k, v in single(args).items()}), flush=True)
        return
    fn, (x, y, params) = compiled(args), data(args)
    alone, notes = {}, []
    for threads in (1, None):
        env = {**os.environ, **(ONE_THREAD if threads == 1 else {})}
        argv = [a for a in sys.argv[1:]] + ["--single", str(threads or 0)]
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv], capture_output=True, text=True,
                              env=env)
        lines = [l for l in proc.stdout.splitlines() if l.startswith(C.RESULT_TAG)]
        if proc.returncode or not lines:
            sys.exit(f"the no-Dask run failed:\n{proc.stderr[-2000:]}")
        measured = json.loads(lines[-1][len(C.RESULT_TAG):])
        busy = measured.pop("others")
        alone[threads] = {int(k): v for k, v in measured.items()}
        notes.append(f"other processes used {busy:.2f} cores beside the run without Dask, "
                     f"{'1 thread' if threads == 1 else 'default threads'}")
    dask = {}
    for k in args.workers:
        seconds, compute, (value, idx), note, busy = on_dask(args, k, fn, x, y, params)
        notes += [note] if note else []
        notes.append(f"other processes used {busy:.2f} cores beside the run with {k} worker{'s' if k > 1 else ''}")
        reference, _ = fn.value_and_grad(x[idx], y[idx], **params)
        assert abs(value - reference) <= 1e-9 * abs(reference), (value, reference)
        dask[k] = seconds, compute
    report(args, alone, dask)
    print("\n".join(["", *notes]))


def report(args, alone, dask):
    print(f"Data-parallel SGD step, MLP 784-256-128-10, {args.examples:,} examples, batch {args.batch:,}, "
          f"{args.target} target, {args.dtype} ({C.machine_line()})\n")
    rows = [(f"one process, no Dask, {'1 thread' if t == 1 else 'default threads'}", alone[t][args.batch], None)
            for t in (1, None)]
    rows += [(f"Dask, {k} worker process{'es' if k > 1 else ''}", seconds, compute)
             for k, (seconds, compute) in dask.items()]
    base = dask[1][0] if 1 in dask else None
    C.table(["run", "ms/step", "steps/s", "vs 1 worker", "slowest shard, ms", "in Dask, ms/step"],
            [(label, f"{s * 1e3:.1f}", f"{1 / s:.2f}", f"{base / s:.2f}x" if base and compute is not None else "",
              f"{compute * 1e3:.1f}" if compute is not None else "",
              f"{(s - compute) * 1e3:.1f}" if compute is not None else "") for label, s, compute in rows])
    if base and 2 in dask:
        speedup = base / dask[2][0]
        print(f"\n2 workers: {speedup:.2f}x one worker (goal 1.6x), scaling efficiency {speedup / 2:.0%}; "
              f"against one process without Dask at 1 thread {alone[1][args.batch] / dask[2][0]:.2f}x, "
              f"at default threads {alone[None][args.batch] / dask[2][0]:.2f}x. A shard's compute in a worker "
              f"against the same rows in one process at 1 thread: "
              + ", ".join(f"{compute / alone[1][-(-args.batch // k)]:.2f}x ({k} worker{'s' if k > 1 else ''})"
                          for k, (_, compute) in dask.items()))

if __name__ == "__main__":
    main()
