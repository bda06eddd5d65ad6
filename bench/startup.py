"""Time to first result: one MLP training step in a fresh process, cold and warm caches.

    python bench/startup.py [--target numba] [--quick] [--peers torch,jax]

Each row is a new Python process, timed from its spawning to the loss of the first step of the
784-256-128-10 MLP (batch 128, float32; forward and backward; bench/mlp.py's model and data).
The process prints the wall clock when it has the loss: the time Python then takes to tear its
modules down (0.1-0.3 s with Numba or PyTorch loaded) is shown apart, not counted. The rows:
- graphc, cold: an empty cache directory (GRAPHC_CACHE_DIR), so graphc traces, differentiates,
  generates and writes the module and the target compiles it (Numba: to machine code);
- graphc, warm: the same again, with the module and Numba's compiled code on disk;
- the generated module imported on its own (warm): what a deployed training script pays, with
  no graphc, SymPy or Jinja2 imported;
- a one-line `@numba.njit(cache=True)` function (a sum), warm: what any program pays to reach
  the result of a cached Numba function (Python, NumPy, Numba, and Numba loading its cached code);
- torch.compile (cold and warm Inductor cache) and JAX jit, where installed;
- `python -c "import numpy"`: the floor every row pays.
Rows are medians of several runs (a cold row empties its cache before each run). The children
write Python's bytecode caches (PYTHONDONTWRITEBYTECODE is dropped from their environment): like
Numba's cache and graphc's, they are part of a warm start.
"""
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")


def child(mode, target):
    """In the fresh process: build and run one step, print the loss. Only what the row
    measures is imported (the data comes from a .npz file the parent wrote)."""
    import numpy as np
    data = np.load(os.environ["BENCH_DATA"])
    x, y, labels = data["x"], data["y"], data["labels"]
    params = {n: data[n] for n in NAMES}
    if mode == "graphc":
        sys.path.insert(0, HERE)
        import _common as C
        import graphc as gc
        fn = gc.compile(gc.graph(C.mlp, wrt=NAMES), target=target, dtype="float32")
        loss, grads = fn.value_and_grad(x, y, **params)
        print(fn.path, fn.module.__name__)
    elif mode == "module":
        import importlib.util
        # under the name graphc gave it: Numba's cache records the module's name
        path, name = os.environ["BENCH_MODULE"].split()
        spec = importlib.util.spec_from_file_location(name, path)
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loss, grads = module.value_and_grad(x, y, *(params[n] for n in NAMES))
    elif mode == "torch":
        import torch
        import torch.nn.functional as F
        xt, lt = torch.from_numpy(x), torch.from_numpy(labels)
        p = [torch.from_numpy(params[n].copy()).requires_grad_() for n in NAMES]

        @torch.compile
        def loss_fn(W1, b1, W2, b2, W3, b3):
            h1 = torch.relu(F.linear(xt, W1, b1))
            h2 = torch.relu(F.linear(h1, W2, b2))
            return F.cross_entropy(F.linear(h2, W3, b3), lt)
        out = loss_fn(*p)
        out.backward()
        loss = float(out)
    elif mode == "jax":
        import jax
        import jax.numpy as jnp

        def loss_fn(p, x, y):
            W1, b1, W2, b2, W3, b3 = p
            h1 = jax.nn.relu(x @ W1.T + b1)
            h2 = jax.nn.relu(h1 @ W2.T + b2)
            return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(h2 @ W3.T + b3), axis=1))
        loss, grads = jax.jit(jax.value_and_grad(loss_fn))([params[n] for n in NAMES], x, y)
        loss = float(loss)
    elif mode == "njit":
        sys.path.insert(0, os.path.dirname(os.environ["BENCH_DATA"]))
        import numba_floor
        loss = numba_floor.total(x)
    elif mode == "numpy":
        loss = 0.0
    print(f"loss {float(loss):.5f}")
    print(f"stamp {time.time()!r}", flush=True)   # the wall clock at the first result


NUMBA_FLOOR = """import numba


@numba.njit(cache=True)
def total(x):
    return x.sum()
"""


def timed(mode, target, env, runs, before=None):
    """Median wall seconds of `runs` fresh processes (calling `before` ahead of each): to the
    first result, and to the process's exit."""
    results, exits, out = [], [], ""
    for _ in range(runs):
        if before:
            before()
        cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--target", target]
        if mode == "numpy":
            cmd = [sys.executable, "-c", "import numpy, time; print(f'stamp {time.time()!r}')"]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        exits.append(time.time() - t0)
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1])
        out = proc.stdout
        results.append(float(out.split("stamp ")[-1]) - t0)
    return (statistics.median(results), statistics.median(exits)), out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], argv[3] if len(argv) > 3 else "numba")
        return 0
    import numpy as np
    sys.path.insert(0, HERE)
    import _common as C
    import mlp as M
    p = C.parser(__doc__)
    p.set_defaults(target="numba")
    args = p.parse_args(argv)
    runs = 1 if args.quick else 3
    work = tempfile.mkdtemp(prefix="graphc-startup-")
    cache = os.path.join(work, "graphc")
    x, y, labels, params = M.make_data()
    np.savez(os.path.join(work, "data.npz"), x=x, y=y, labels=labels, **params)
    # Python's bytecode caches are part of a warm start: the children write them, as Python
    # does unless PYTHONDONTWRITEBYTECODE says otherwise
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(GRAPHC_CACHE_DIR=cache, BENCH_DATA=os.path.join(work, "data.npz"))
    with open(os.path.join(work, "numba_floor.py"), "w") as f:
        f.write(NUMBA_FLOOR)

    def empty(path):
        return lambda: shutil.rmtree(path, ignore_errors=True)

    rows, notes = [], []
    try:
        t, _ = timed("numpy", args.target, env, runs)
        rows.append(("python -c 'import numpy' (the floor)", t))
        t, _ = timed("graphc", args.target, env, runs, before=empty(cache))
        rows.append((f"graphc ({args.target}), cold cache", t))
        t, out = timed("graphc", args.target, env, runs)
        rows.append((f"graphc ({args.target}), warm cache", t))
        t, _ = timed("module", args.target, {**env, "BENCH_MODULE": out.splitlines()[0]}, runs)
        rows.append((f"generated module imported alone ({args.target}), warm cache", t))
        if args.target == "numba":
            timed("njit", args.target, env, 1)   # fills Numba's cache
            t, _ = timed("njit", args.target, env, runs)
            rows.append(("a one-line @numba.njit(cache=True) function, warm cache", t))
        for name in [p for p in args.peers.split(",") if p]:
            label, module = C.PEERS.get(name, (name, name))
            if importlib.util.find_spec(module) is None:
                notes.append(f"skipped {label}: {module} is not installed")
                continue
            try:
                if name == "torch":
                    inductor = {"TORCHINDUCTOR_CACHE_DIR": os.path.join(work, "inductor")}
                    inductor.update(env)
                    t, _ = timed("torch", args.target, inductor, runs, before=empty(inductor["TORCHINDUCTOR_CACHE_DIR"]))
                    rows.append(("torch.compile, cold Inductor cache", t))
                    t, _ = timed("torch", args.target, inductor, runs)
                    rows.append(("torch.compile, warm Inductor cache", t))
                else:
                    # JAX takes a GPU wherever it finds one: the CPU targets compare with its CPU
                    cpu = {} if args.target == "cuda" else {"JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
                    t, _ = timed("jax", args.target, {**env, **cpu}, runs)
                    rows.append(("JAX jit", t))
            except RuntimeError as e:
                notes.append(f"skipped {label}: failed: {e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"Time to the first training step of the 784-256-128-10 MLP in a fresh process ({C.machine_line()})\n")
    warm = rows[2][1][0]
    C.table(["process", "s to first loss", "vs graphc warm", "s to exit"],
            [[label, f"{t:.2f}", f"{t / warm:.2f}x", f"{end:.2f}"] for label, (t, end) in rows])
    for note in notes:
        print(note)
    print(f"\nMeasured: median wall time of {runs} fresh process(es) per row, from spawning Python to the "
          "first loss (forward and backward), as the process's clock stamps it; s to exit adds Python's teardown.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
