"""Data-parallel training on Dask: the 784-256-128-10 MLP's SGD step over worker processes.

    python bench/distributed.py [--target numba] [--dtype float64] [--examples 60000]
                                [--batch 4096] [--steps 10] [--rounds 3] [--workers 1,2] [--quick]

Steps per second of synchronous data-parallel SGD with gc.distributed (LocalClusters of 1 and
of 2 worker processes, one thread each, BLAS single-threaded in each; the data scattered once,
each step's minibatch drawn from the shards on the workers by DataParallel.rows, its gradient
reduced on the workers, gc.optim.SGD's update on the driver), beside one process without Dask
running the same step (fn.value_and_grad on the minibatch, the same update) with BLAS and
Numba on 1 thread and on the machine's default threads (each such process started once, a
thread count being fixed when NumPy and Numba load, and told what to time through a pipe).

The configurations are timed in turns, `--rounds` times, `--steps` steps each, and each
figure is the median of its steps over all rounds: the machine's speed drifts over minutes,
and turns put each configuration in the same minutes as the others.

The data are synthetic: 60,000 examples of 784 standard normal features, labelled by a
random linear teacher (one-hot), softmax cross-entropy (a mean over the batch, which
DataParallel reduces as a weighted mean of the shards' values and gradients).

Printed: milliseconds and steps per second, the speedup of 2 workers over 1 (the goal is
1.6x at batch 4,096) and the scaling efficiency (speedup / workers), the slowest shard's
time on its worker (DataParallel.stats: measured in the worker, around fn.value_and_grad and
the gathering and weighting of its rows) and the time per step spent in Dask: the step's time
less that, that is scheduling, the parameters' and gradients' transfers and the tree's
additions; a driver-worker round trip with and without the parameters; and how many cores
other processes used meanwhile (the machine is shared). The first Dask step's loss is checked
against fn.value_and_grad on the same minibatch in this process.
"""
import argparse
import importlib.util
import json
import os
import statistics
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
    p.add_argument("--steps", type=int, default=10, help="timed steps per configuration and round")
    p.add_argument("--rounds", type=int, default=3, help="turns over the configurations")
    p.add_argument("--workers", default="1,2", help="comma-separated numbers of Dask worker processes")
    p.add_argument("--quick", action="store_true", help="a small run: 4,000 examples, batch 512, 2 rounds of 3 steps")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)   # internal: a process without Dask
    args = p.parse_args()
    if args.quick:
        args.examples, args.batch, args.steps, args.rounds = 4_000, 512, 3, 2
    args.workers = [int(k) for k in args.workers.split(",")]
    return args


class Others:
    """How many cores the machine's other processes (not this one, nor its children) used
    while a measurement ran: a figure taken beside another process's work says little
    about the scaling."""

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


def timed(step, steps):
    """The seconds of each of `steps` calls of step()."""
    out = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        out.append(time.perf_counter() - start)
    return out


def serve(args):
    """A process without Dask: told "SIZE STEPS" on stdin, it times that many SGD steps at
    batch SIZE and answers with their seconds."""
    fn, (x, y, params) = compiled(args), data(args)
    opt, streams = gc.optim.SGD(0.1), {}

    def step(size):
        idx = next(streams.setdefault(size, batches(args.examples, size)))
        _, grads = fn.value_and_grad(x[idx], y[idx], **params)
        opt.step(params, grads)
    step(args.batch)   # Numba compiles (or loads) here, before anything is timed
    print("ready", flush=True)
    for line in sys.stdin:
        size, steps = map(int, line.split())
        step(size)
        print(json.dumps(timed(lambda: step(size), steps)), flush=True)


class Alone:
    """A process without Dask, with BLAS and Numba on 1 thread or (threads None) the default."""

    def __init__(self, args, threads):
        env = {**os.environ, **(ONE_THREAD if threads == 1 else {})}
        argv = [a for a in sys.argv[1:]] + ["--serve"]
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if self.proc.stdout.readline().strip() != "ready":
            sys.exit("the process without Dask failed to start")

    def time(self, size, steps):
        self.ask(size, steps)
        return self.answer()

    def ask(self, size, steps):
        self.proc.stdin.write(f"{size} {steps}\n")
        self.proc.stdin.flush()

    def answer(self):
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


class OnDask:
    """DataParallel over a LocalCluster of `workers` processes, with its own copy of the
    parameters and its own optimizer."""

    def __init__(self, args, workers, fn, x, y, params):
        self.client = gc.distributed.local_client(workers)
        self.dp = gc.distributed.DataParallel(fn, self.client).scatter(x=x, y=y)
        self.params, self.opt = {k: v.copy() for k, v in params.items()}, gc.optim.SGD(0.1)
        self.rows = batches(args.examples, args.batch)
        self.first = self.step()
        for _ in range(2):
            self.step()

    def step(self):
        idx = next(self.rows)
        value, grads = self.dp.value_and_grad(self.dp.rows(idx), **self.params)
        self.opt.step(self.params, grads)
        return value, idx

    def time(self, steps):
        """(seconds of each step, of which the slowest shard's on its worker)."""
        seconds, compute = [], []
        for _ in range(steps):
            before = self.dp.stats["compute"]
            seconds += timed(self.step, 1)
            compute.append(self.dp.stats["compute"] - before)
        return seconds, compute

    def close(self):
        gc.distributed.close_local(self.client)


def link(client, params):
    """What Dask's messages cost here: a round trip driver -> worker -> driver (a scatter, a
    task, its result) carrying nothing, and carrying 32 MB (there and back: the bandwidth),
    the cost model's latency and bandwidth (DESIGN.md)."""
    worker, nbytes = sorted(client.ncores())[0], sum(p.nbytes for p in params.values())

    def there_and_back(value):
        return lambda: client.submit(lambda v: v, client.scatter([value], workers=[worker], hash=False)[0],
                                     workers=[worker], pure=False).result()
    empty, full = (C.median_time(there_and_back(v), 9, warmup=2) for v in ({}, np.ones(4 << 20)))
    bandwidth = 2 * (32 << 20) / max(full - empty, 1e-9)
    return (f"Dask here: a round trip driver -> worker -> driver (a scatter, a task, its result) carrying "
            f"nothing {empty * 1e3:.1f} ms, carrying 32 MB {full * 1e3:.1f} ms: {bandwidth / 1e9:.2f} GB/s, so "
            f"the {nbytes / 1e6:.2f} MB of parameters (or gradients) take {nbytes / bandwidth * 1e3:.1f} ms a copy")


def main():
    args = parse()
    if args.serve:
        return serve(args)
    fn, (x, y, params) = compiled(args), data(args)
    sizes = sorted({args.batch} | {-(-args.batch // k) for k in args.workers})
    alone = {t: Alone(args, t) for t in (1, None)}
    beside = Alone(args, 1)   # a second process, to run beside the first: the machine's own scaling
    dask = {k: OnDask(args, k, fn, x, y, params) for k in args.workers}
    try:
        for run in dask.values():   # each cluster's first step against this process's
            value, idx = run.first
            reference, _ = fn.value_and_grad(x[idx], y[idx], **params)
            assert abs(value - reference) <= 1e-9 * abs(reference), (value, reference)
        times, loads = {}, []
        for _ in range(args.rounds):
            others = Others()
            for t, proc in alone.items():
                for size in sizes:
                    times.setdefault(("alone", t, size), []).extend(proc.time(size, args.steps))
            half = -(-args.batch // 2)
            for proc in (alone[1], beside):   # both at once, each half the batch
                proc.ask(half, args.steps)
            times["side by side"] = times.get("side by side", []) + [max(a, b) for a, b in zip(
                alone[1].answer(), beside.answer())]
            for k, run in dask.items():
                seconds, compute = run.time(args.steps)
                times.setdefault(("dask", k), []).extend(seconds)
                times.setdefault(("compute", k), []).extend(compute)
            loads.append(others.cores())
        note = link(dask[min(dask)].client, params)
    finally:
        for proc in [*alone.values(), beside, *dask.values()]:
            proc.close()
    report(args, {key: statistics.median(v) for key, v in times.items()}, loads, note)


def report(args, median, loads, note):
    print(f"Data-parallel SGD step, MLP 784-256-128-10, {args.examples:,} examples, batch {args.batch:,}, "
          f"{args.target} target, {args.dtype}, median of {args.rounds} rounds of {args.steps} steps "
          f"({C.machine_line()})\n")
    base = median.get(("dask", 1))
    rows = [(f"one process, no Dask, {'1 thread' if t == 1 else 'default threads'}", median[("alone", t, args.batch)],
             None) for t in (1, None)]
    rows.append(("two processes side by side, no Dask, 1 thread, half the batch each", median["side by side"], None))
    rows += [(f"Dask, {k} worker process{'es' if k > 1 else ''}", median[("dask", k)], median[("compute", k)])
             for k in args.workers]
    C.table(["run", "ms/step", "steps/s", "vs 1 worker", "slowest shard, ms", "in Dask, ms/step"],
            [(label, f"{s * 1e3:.1f}", f"{1 / s:.2f}", f"{base / s:.2f}x" if base and compute is not None else "",
              f"{compute * 1e3:.1f}" if compute is not None else "",
              f"{(s - compute) * 1e3:.1f}" if compute is not None else "") for label, s, compute in rows])
    if base and ("dask", 2) in median:
        two = median[("dask", 2)]
        print(f"\n2 workers: {base / two:.2f}x one worker (goal 1.6x), scaling efficiency {base / two / 2:.0%}; "
              f"against one process without Dask at 1 thread {median[('alone', 1, args.batch)] / two:.2f}x, at "
              f"default threads {median[('alone', None, args.batch)] / two:.2f}x.")
    shares = ", ".join(f"{median[('compute', k)] / median[('alone', 1, -(-args.batch // k))]:.2f}x "
                       f"({k} worker{'s' if k > 1 else ''})" for k in args.workers)
    print(f"A shard's time on its worker against the same rows' step in one process at 1 thread: {shares}.")
    print(f"Two processes side by side, each half the batch: {median[('alone', 1, args.batch)] / median['side by side']:.2f}x "
          "one process at 1 thread on the whole batch, the most two workers could give on this machine's two cores.")
    print(note)
    print("Other processes used " + ", ".join(f"{c:.2f}" for c in loads) + " cores in the rounds.")


if __name__ == "__main__":
    main()
