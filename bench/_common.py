"""Shared pieces of the runtime benchmarks: timing, peers in fresh subprocesses, tables."""
import argparse
import contextlib
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

import graphc as gc
from graphc.backends import TARGETS

PEERS = {"torch": ("PyTorch eager", "torch"), "jax": ("JAX jit", "jax")}   # name: (label, module)
RESULT_TAG = "BENCH-RESULT "


def parser(doc):
    p = argparse.ArgumentParser(description=doc.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    p.add_argument("--target", default="numpy", choices=sorted(TARGETS),
                   help="graphc target passed to gc.compile (default: numpy)")
    p.add_argument("--quick", action="store_true", help="a few-second run with fewer repetitions")
    p.add_argument("--peers", default="torch,jax",
                   help="comma-separated peers to run in subprocesses (default: torch,jax; '' for none)")
    p.add_argument("--peer", choices=sorted(PEERS), help=argparse.SUPPRESS)   # internal: run one peer here
    return p


def median_time(fn, reps, warmup=3, number=1):
    """Median seconds per call over `reps` samples of `number` calls each, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


def calibrate(fn, target_s=0.002):
    """Calls per timing sample so that one sample lasts about target_s (for sub-millisecond calls)."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 >= target_s or n >= 1 << 20:
            return n
        n *= 2


def run_peers(script, args, argv):
    """Run each requested peer as `python script --peer NAME ...` in a fresh interpreter.
    Returns {name: result dict} and {name: reason} for those skipped or failed."""
    results, skipped = {}, {}
    wanted = [p for p in args.peers.split(",") if p]
    for name in wanted:
        if name not in PEERS:
            skipped[name] = "unknown peer"
            continue
        label, module = PEERS[name]
        if importlib.util.find_spec(module) is None:
            skipped[name] = f"{module} is not installed"
            continue
        forwarded = _without_option(argv, "--peers")
        cmd = [sys.executable, os.path.abspath(script), "--peer", name, *forwarded]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT_TAG)]
        if proc.returncode != 0 or not lines:
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            skipped[name] = f"failed: {err}"
            continue
        results[name] = json.loads(lines[-1][len(RESULT_TAG):])
    return results, skipped


def example(name):
    """A model file of examples/ (train_spiral, train_lenet), imported once."""
    if name not in sys.modules:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", f"{name}.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


def jax_platform(gpu):
    """Call in a peer before importing JAX, which takes a GPU wherever it finds one: a peer
    measured against graphc on the CPU is told to use the CPU."""
    if not gpu:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")


def torch_device(gpu):
    """'cuda' where a GPU is wanted and PyTorch sees one, else 'cpu'."""
    import torch
    return "cuda" if gpu and torch.cuda.is_available() else "cpu"


def peer_label(name, result):
    """A peer's row label: its name and version, and where it ran (a GPU, or how many threads)."""
    label = f"{PEERS[name][0]} {result['version']}"
    device = result.get("device", "cpu")
    if device != "cpu":   # PyTorch says cuda, JAX gpu
        return f"{label} on the {'GPU' if device in ('cuda', 'gpu') else device.upper()}"
    return f"{label} ({result['threads']} threads)" if "threads" in result else label


def _without_option(argv, option):
    """argv without `option VALUE` or `option=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


@contextlib.contextmanager
def busy_process():
    """A loaded machine: another process spinning on one core (a Python loop) while the block
    runs, started here and killed on leaving it."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)   # running before anything is timed
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def physical_gb():
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def resident_gb(pid):
    """The memory a process holds (Linux's /proc; 0 where there is none to read)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 2**20
    except (OSError, StopIteration):
        return 0.0


def run_limited(cmd, env, timeout, memory):
    """Run cmd: (stdout, stderr, exit status), or {"timeout": timeout} where it ran past
    `timeout` seconds, {"memory": memory} where it took more than `memory` GB; either stops
    it and the processes it started (its own process group)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    start = time.monotonic()
    while True:
        try:
            out, err = proc.communicate(timeout=0.5)
            return out, err, proc.returncode
        except subprocess.TimeoutExpired:
            over = ({"timeout": timeout} if time.monotonic() - start > timeout
                    else {"memory": memory} if resident_gb(proc.pid) > memory else None)
            if over:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return over


def emit(result):
    """How a peer subprocess hands its result back."""
    print(RESULT_TAG + json.dumps(result), flush=True)


def answer_as_peer(args, peers, reps):
    """In a peer subprocess (--peer NAME): run that peer (given the repetitions and --target,
    which says where it runs), hand its result back, True."""
    if not args.peer:
        return False
    emit(peers[args.peer](reps, args.target))
    return True


def torch_sgd_step(loss_fn, params, lr):
    """A PyTorch eager SGD step: loss_fn() -> the loss, whose backward fills params' .grad;
    each parameter then moves by -lr * its gradient in place. The step returns the loss."""
    import torch

    def step():
        loss = loss_fn()
        loss.backward()
        with torch.no_grad():
            for t in params:
                t -= lr * t.grad
                t.grad = None
        return loss
    return step


def jax_sgd_step(loss_fn, params, data, lr, reps):
    """JAX jit's SGD step on loss_fn(params, *data) (params a tuple): (seconds per step, loss at step 0)."""
    import jax

    @jax.jit
    def step(p, *data):
        loss, g = jax.value_and_grad(loss_fn)(p, *data)
        return loss, tuple(a - lr * b for a, b in zip(p, g))

    state = {"p": params}

    def run():
        loss, state["p"] = step(state["p"], *data)
        jax.block_until_ready(state["p"])
        return loss
    loss0 = float(run())
    return median_time(run, reps, warmup=10), loss0


MLP_PARAMS = ("W1", "b1", "W2", "b2", "W3", "b3")


def mlp(x: gc.Tensor["B", 784], y: gc.Tensor["B", 10],
        W1: gc.Tensor[256, 784], b1: gc.Tensor[256],
        W2: gc.Tensor[128, 256], b2: gc.Tensor[128],
        W3: gc.Tensor[10, 128], b3: gc.Tensor[10]):
    """The benchmarks' 784-256-128-10 MLP (ReLU, softmax cross-entropy), to trace with gc.graph."""
    h1 = gc.relu(x @ W1.T + b1)
    h2 = gc.relu(h1 @ W2.T + b2)
    return gc.softmax_cross_entropy(h2 @ W3.T + b3, y)


def machine_line():
    import numpy
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"NumPy {numpy.__version__}")


def checkout():
    """The checkout's commit (and whether files differ from it), where graphc runs from one."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True)
    except OSError:
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def load_line():
    """The machine's load average over the last minute (processes running or waiting for a
    core), as `uptime` says: another user's work shows there."""
    return f"load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "load average unknown"


def table(headers, rows, aligns=None):
    """Print a Markdown-style table (readable as text and pasteable into RESULTS.md)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    aligns = aligns or ["<"] + [">"] * (len(headers) - 1)
    fmt = lambda r: "| " + " | ".join(f"{c:{a}{w}}" for c, a, w in zip(r, aligns, widths)) + " |"
    print(fmt(headers))
    print("|" + "|".join(("-" * (w + 1) + ":") if a == ">" else ("-" * (w + 2)) for a, w in zip(aligns, widths)) + "|")
    for r in cells:
        print(fmt(r))


def fmt_time(seconds):
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds:.3f} s"


def max_rel_diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
