"""Time to first result: tracing, gc.compile and the first value_and_grad in a fresh process,
with empty caches and with the caches filled, beside JAX jit and torch.compile.

    python bench/compile_time.py [--quick] [--rows chain500,rnn20,...] [--timeout 600] [--memory GB]
                                 [--targets numpy,numba] [--peers torch,jax]

Each cell is a new Python process, which times from before tracing to the first value and
gradients (imports made before are not counted, those made on the way are: graphc's of SymPy,
Jinja2 and Numba; the goals compare with JAX jit both alone and with JAX's import added):
graphc cold (empty GRAPHC_CACHE_DIR and NUMBA_CACHE_DIR: graphc generates the module, Numba
compiles it), graphc warm (a second process, both caches filled), JAX jit
(jax.jit(jax.value_and_grad(loss)), float64 where the row is), torch.compile (the compiled
loss and its backward, an empty Inductor cache). A process that runs past
--timeout seconds or takes more than --memory GB is stopped, and its cell says "> N s" or
"> N GB" (a warm cell after a cold one that did not finish: "-").
The rows (FAMILIES; a row name is a family and its size, so chain30 or rnn3 are rows too):
- chainN: a scalar chain of N ops, y = sin(y)*1.0001 + x repeated N/3 times;
- inputsN: a scalar graph of N inputs, the sum of x_i * sin(x_i+1);
- mixedN: N different small expressions of 8 scalar inputs, summed (little structure repeats);
- micrograd: micrograd's demo MLP 2-16-16-1 (bench/small_models.py);
- rnnN: the vanilla RNN of bench/small_models.py unrolled over N steps by a Python loop;
- scanN: the same RNN with its loop a gc.scan (JAX: lax.scan);
- lenet: LeNet-5 (examples/train_lenet.py's make_lenet), batch 64, float32;
- mlp: the 784-256-128-10 MLP of bench/mlp.py, batch 128, float32.
Below the table: the goals (on graphc's forward graph of 500 nodes or more, numba's cold first
result at most JAX's, its jit alone and with its import added; the MLP step under 3x JAX cold
and 1 s warm; micrograd's MLP under 3 s cold and 1 s warm) and growth, the time of 10x the ops
over the time of the smaller graph.
"""
import argparse
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Callable, NamedTuple

import numpy as np

import _common as C
import graphc as gc
import small_models as S

IMPLS = {"numpy": "numpy", "numba": "numba", "jax": "JAX jit", "torch": "torch.compile"}


class Problem(NamedTuple):
    """One row's graph for every implementation: its inputs' values in the model's order, the
    names differentiated, and the model as graphc traces it and as JAX and PyTorch take it
    (functions of the inputs in that order, returning the loss)."""
    trace: Callable        # () -> a gc.Graph (traced when called, which the time counts)
    values: dict
    wrt: tuple
    dtype: str
    jax: Callable
    torch: Callable


# -- the rows' graphs
def chain(n):
    def model(x, sin):
        y = x
        for _ in range(n // 3):
            y = sin(y) * 1.0001 + x
        return y

    def jax_chain(x):
        import jax.numpy as jnp
        return model(x, jnp.sin)

    def torch_chain(x):
        import torch
        return model(x, torch.sin)
    graphc_chain = lambda x: model(x, gc.sin)  # noqa: E731
    graphc_chain.__name__ = f"chain{n}"
    return Problem(lambda: gc.graph(graphc_chain), {"x": 0.5}, ("x",), "float64", jax_chain, torch_chain)


def inputs(n):
    names = [f"x{i}" for i in range(n)]

    def model(*xs, sin=gc.sin):
        total = xs[0] * sin(xs[1 % n])
        for i in range(1, n):
            total = total + xs[i] * sin(xs[(i + 1) % n])
        return total

    def jax_inputs(*xs):
        import jax.numpy as jnp
        return model(*xs, sin=jnp.sin)

    def torch_inputs(*xs):
        import torch
        return model(*xs, sin=torch.sin)
    model.__name__ = f"inputs{n}"
    model.__signature__ = inspect.Signature(   # what gc.graph reads: n scalar inputs x0, x1, ...
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names])
    values = dict(zip(names, np.random.default_rng(0).uniform(-1, 1, n).tolist()))
    return Problem(lambda: gc.graph(model), values, tuple(names), "float64", jax_inputs, torch_inputs)


def mixed(n):
    """n different small expressions of 8 scalar inputs, summed: each applies 3-7 (unary op,
    binary op with an input) pairs drawn from a seeded generator, so that little repeats."""
    import random
    rnd = random.Random(0)
    plan = [(rnd.randrange(8), [(rnd.randrange(8), rnd.randrange(4), rnd.randrange(8))
                                for _ in range(rnd.randint(3, 7))]) for _ in range(n)]

    def model(xs, m):
        unary = [m.sin, m.cos, m.tanh, lambda v: 1 / (1 + m.exp(-v)), m.exp, lambda v: m.log(1 + v * v),
                 m.relu, lambda v: v * v]
        binary = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b, lambda a, b: a / (1 + b * b)]
        total = 0.0
        for start, steps in plan:
            v = xs[start]
            for u, b, i in steps:
                v = binary[b](unary[u](v), xs[i])
            total = total + v
        return total

    def jax_mixed(*xs):
        import jax
        import jax.numpy as jnp
        return model(xs, SimpleNamespace(sin=jnp.sin, cos=jnp.cos, tanh=jnp.tanh, exp=jnp.exp, log=jnp.log,
                                         relu=jax.nn.relu))

    def torch_mixed(*xs):
        import torch
        return model(xs, torch)
    names = [f"x{i}" for i in range(8)]
    graphc_mixed = lambda x0, x1, x2, x3, x4, x5, x6, x7: model([x0, x1, x2, x3, x4, x5, x6, x7], gc)  # noqa: E731
    graphc_mixed.__name__ = f"mixed{n}"
    values = dict(zip(names, np.random.default_rng(0).uniform(-1, 1, 8).tolist()))
    return Problem(lambda: gc.graph(graphc_mixed), values, tuple(names), "float64", jax_mixed, torch_mixed)


def small_model(name, steps=None):
    """A model of bench/small_models.py; its PyTorch and JAX losses take the parameters as one tuple."""
    rng = np.random.default_rng(S.SEED)
    data, params = S.rnn_data(rng, steps) if steps else S.MODELS[name][2](rng)
    model = S.make_rnn(steps) if steps else S.MODELS[name][1]()
    _, _, _, torch_loss, jax_loss = S.MODELS[name]
    k = len(params)
    return Problem(lambda: gc.graph(model, wrt=tuple(params)), {**params, **data}, tuple(params), "float64",
                   lambda *a: jax_loss(a[:k], *a[k:]), lambda *a: torch_loss(a[:k], *a[k:]))


def scan_rnn(steps):
    """The rnn rows' RNN with its loop a gc.scan (JAX: lax.scan; PyTorch has no scan: its loop)."""
    data, params = S.rnn_data(np.random.default_rng(S.SEED), steps)
    F, H = S.FEATURES, S.HIDDEN

    def model(x: gc.Tensor["B", steps, F], y: gc.Tensor["B", 1], Wx: gc.Tensor[H, F], Wh: gc.Tensor[H, H],
              b: gc.Tensor[H], Wo: gc.Tensor[1, H], bo: gc.Tensor[1]):
        def cell(h, xt):
            return gc.tanh(gc.linear(xt, Wx, b) + h @ Wh.T), None
        h, _ = gc.scan(cell, gc.tanh(gc.linear(x[:, 0, :], Wx, b)), gc.moveaxis(x[:, 1:, :], 1, 0))
        return gc.mse(gc.linear(h, Wo, bo), y)
    model.__name__ = f"scan{steps}"

    def jax_scan(Wx, Wh, b, Wo, bo, x, y):
        import jax
        import jax.numpy as jnp
        cell = lambda h, xt: (jnp.tanh(xt @ Wx.T + b + h @ Wh.T), None)  # noqa: E731
        h, _ = jax.lax.scan(cell, jnp.tanh(x[:, 0, :] @ Wx.T + b), jnp.moveaxis(x[:, 1:, :], 1, 0))
        return jnp.mean((h @ Wo.T + bo - y) ** 2)
    k = len(params)
    return Problem(lambda: gc.graph(model, wrt=tuple(params)), {**params, **data}, tuple(params), "float64",
                   jax_scan, lambda *a: S.rnn_torch(a[:k], *a[k:]))


def lenet():
    L = C.example("train_lenet")
    rng = np.random.default_rng(0)
    values = {"x": rng.random((64, 1, 28, 28)).astype(np.float32), "y": rng.integers(0, L.K, 64),
              **{k: v.astype(np.float32) for k, v in L.init(rng).items()}}

    def jax_lenet(x, y, C1, c1, C2, c2, F1, f1, F2, f2, F3, f3):
        import jax
        import jax.numpy as jnp

        def conv_relu_pool(h, w, b, pad):
            h = jax.lax.conv_general_dilated(h, w, (1, 1), [(pad, pad), (pad, pad)]) + b[None, :, None, None]
            return jax.lax.reduce_window(jax.nn.relu(h), -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = conv_relu_pool(conv_relu_pool(x, C1, c1, 2), C2, c2, 0)
        h = jax.nn.relu(jax.nn.relu(h.reshape(h.shape[0], -1) @ F1.T + f1) @ F2.T + f2)
        return -jnp.mean(jnp.sum(jax.nn.one_hot(y, L.K) * jax.nn.log_softmax(h @ F3.T + f3), axis=1))

    def torch_lenet(x, y, C1, c1, C2, c2, F1, f1, F2, f2, F3, f3):
        import torch
        import torch.nn.functional as F
        h = F.max_pool2d(torch.relu(F.conv2d(x, C1, c1, padding=2)), 2)
        h = F.max_pool2d(torch.relu(F.conv2d(h, C2, c2)), 2)
        h = torch.relu(F.linear(torch.relu(F.linear(torch.flatten(h, 1), F1, f1)), F2, f2))
        return F.cross_entropy(F.linear(h, F3, f3), y)
    return Problem(L.make_lenet, values, L.PARAMS, "float32", jax_lenet, torch_lenet)


def mlp():
    import mlp as M
    x, y, labels, params = M.make_data()

    def jax_mlp(x, y, W1, b1, W2, b2, W3, b3):
        import jax
        import jax.numpy as jnp
        h = jax.nn.relu(jax.nn.relu(x @ W1.T + b1) @ W2.T + b2)
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(h @ W3.T + b3), axis=1))

    def torch_mlp(x, y, W1, b1, W2, b2, W3, b3):
        import torch
        import torch.nn.functional as F
        h = torch.relu(F.linear(torch.relu(F.linear(x, W1, b1)), W2, b2))
        return torch.mean(torch.sum(-y * F.log_softmax(F.linear(h, W3, b3), dim=1), dim=1))
    return Problem(lambda: gc.graph(C.mlp, wrt=C.MLP_PARAMS), {"x": x, "y": y, **params}, C.MLP_PARAMS, "float32",
                   jax_mlp, torch_mlp)


# family: (label, the row's Problem from its size, or from nothing where the family has no size).
# A new family is a line here; a new row is a name in DEFAULT_ROWS.
FAMILIES = {
    "chain": ("scalar chain, {:,} ops", chain),
    "inputs": ("scalar graph, {:,} inputs", inputs),
    "mixed": ("{:,} different scalar expressions", mixed),
    "micrograd": ("micrograd's MLP 2-16-16-1", lambda: small_model("micrograd")),
    "rnn": ("RNN, hidden 16, {:,} steps unrolled", lambda n: small_model("rnn", n)),
    "scan": ("RNN, hidden 16, {:,} steps, gc.scan (JAX: lax.scan)", scan_rnn),
    "lenet": ("LeNet-5, batch 64, float32", lenet),
    "mlp": ("MLP 784-256-128-10, batch 128, float32", mlp),
}
DEFAULT_ROWS = ("chain500", "chain2000", "chain5000", "chain10000", "inputs2000", "mixed80", "mixed320", "micrograd",
                "rnn20", "rnn100", "rnn1000", "scan20", "scan100", "scan1000", "lenet", "mlp")
QUICK_ROWS = ("chain500", "micrograd", "rnn20")


def parse_row(name):
    """(family, size or None) of a row name such as chain500, micrograd or rnn3."""
    match = re.fullmatch(r"([a-z]+)(\d*)", name)
    family, size = (match.group(1), int(match.group(2)) if match.group(2) else None) if match else (None, None)
    if family not in FAMILIES or (size is None) != ("{" not in FAMILIES[family][0]):
        raise SystemExit(f"unknown row {name!r}: a family of {', '.join(FAMILIES)} (chain, inputs, mixed, "
                         "rnn and scan with a size: chain500)")
    return family, size


def problem(name):
    family, size = parse_row(name)
    return FAMILIES[family][1](*([size] if size is not None else []))


def row_label(name):
    family, size = parse_row(name)
    return FAMILIES[family][0].format(size)


# -- in the fresh process: one implementation's first result
def first_graphc(p, target):
    t0 = time.perf_counter()
    graph = p.trace()
    fn = gc.compile(graph, target=target, dtype=p.dtype)
    out, _ = fn.value_and_grad(**p.values)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "value": float(out["loss"] if isinstance(out, dict) else out), "nodes": len(graph.nodes),
            "dtype": p.dtype}


def first_jax(p):
    C.jax_platform(gpu=False)
    t0 = time.perf_counter()
    import jax
    jax.config.update("jax_enable_x64", True)   # float64 where the row is (its float32 arrays stay float32)
    imported = time.perf_counter() - t0
    args = [jax.numpy.asarray(v) for v in p.values.values()]
    argnums = tuple(i for i, name in enumerate(p.values) if name in p.wrt)
    t0 = time.perf_counter()
    value, grads = jax.jit(jax.value_and_grad(p.jax, argnums=argnums))(*args)
    jax.block_until_ready(grads)
    return {"seconds": time.perf_counter() - t0, "import": imported, "value": float(value), "dtype": p.dtype}


def first_torch(p):
    import torch
    args = [(torch.tensor(v) if isinstance(v, float) else torch.from_numpy(v)).requires_grad_(name in p.wrt)
            for name, v in p.values.items()]
    t0 = time.perf_counter()
    loss = torch.compile(p.torch)(*args)
    loss.backward()
    return {"seconds": time.perf_counter() - t0, "value": float(loss), "dtype": p.dtype}


def child(row, impl):
    p = problem(row)
    C.emit(first_jax(p) if impl == "jax" else first_torch(p) if impl == "torch" else first_graphc(p, impl))


# -- the parent: each cell in a fresh process
def run_cell(row, impl, env, args):
    """The child's result; {"timeout": s} where it ran past args.timeout seconds, {"memory": GB}
    where it took more than args.memory GB (stopped before the machine runs out: an unrolled
    RNN of 1,000 steps took Numba 24 GB), {"error": its last line} where it failed."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", row, impl]
    done = C.run_limited(cmd, env, args.timeout, args.memory)
    if isinstance(done, dict):
        return done
    out, err, status = done
    lines = [line for line in out.splitlines() if line.startswith(C.RESULT_TAG)]
    if status != 0 or not lines:
        # the exception's line (PyTorch's errors end with advice), else how the process ended
        errors = [line for line in err.splitlines() if re.match(r"[\w.]+(Error|Exception)\b", line)]
        return {"error": errors[-1] if errors else f"exit status {status}" + (" (a signal)" if status < 0 else "")}
    return json.loads(lines[-1][len(C.RESULT_TAG):])


def run_row(row, args, work):
    """{cell name: result} for one row: each target cold then warm, then each peer."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}   # as a user's Python
    base.setdefault("JAX_PLATFORMS", "cpu")
    cells = {}
    for target in args.targets:
        caches = {"GRAPHC_CACHE_DIR": os.path.join(work, row, target, "graphc"),
                  "NUMBA_CACHE_DIR": os.path.join(work, row, target, "numba")}
        cells[f"{target} cold"] = run_cell(row, target, {**base, **caches}, args)
        if "seconds" in cells[f"{target} cold"]:   # the same caches, filled
            cells[f"{target} warm"] = run_cell(row, target, {**base, **caches}, args)
    for peer in args.peers:
        if importlib.util.find_spec(peer) is None:
            cells[peer] = {"error": f"{peer} is not installed"}
            continue
        inductor = {"TORCHINDUCTOR_CACHE_DIR": os.path.join(work, row, "inductor")}
        cells[peer] = run_cell(row, peer, {**base, **inductor}, args)
    for cell, result in cells.items():
        print(f"{row}, {cell}: {describe(result)}", file=sys.stderr, flush=True)
    return cells


def describe(result):
    if result is None:
        return "-"
    if "timeout" in result:
        return f"> {result['timeout']:g} s"
    if "memory" in result:
        return f"> {result['memory']:g} GB"
    if "error" in result:
        return "failed"
    return f"{result['seconds']:.2f} s"


def seconds(result):
    """A cell's seconds (inf where it ran past the timeout), None where it has none."""
    if result is None or "error" in result or "memory" in result:
        return None
    return float("inf") if "timeout" in result else result["seconds"]


def nodes(cells):
    return next((r["nodes"] for r in cells.values() if r and "nodes" in r), None)


def goals(results):
    """Lines saying whether each goal that the rows measured is met."""
    def verdict(ok):
        return "met" if ok else "NOT met"
    lines = []
    for row, cells in results.items():
        family, _ = parse_row(row)
        numba, warm, jax = (seconds(cells.get(k)) for k in ("numba cold", "numba warm", "jax"))
        n = nodes(cells)
        # graphc's time counts the imports it makes on the way (SymPy, Jinja2, Numba); JAX's
        # is its jit alone, so each comparison is also made with JAX's import added
        with_import = jax + cells["jax"].get("import", 0.0) if jax is not None else None
        if n and n >= 500 and numba is not None and jax is not None:
            lines.append(f"{row} ({n:,} nodes): numba cold {describe(cells['numba cold'])} against JAX jit's "
                         f"{describe(cells['jax'])}, at most JAX's: {verdict(numba <= jax)}; against "
                         f"{with_import:.2f} s with JAX's import: {verdict(numba <= with_import)}")
        if family == "mlp" and numba is not None and jax is not None:
            lines.append(f"{row}: numba cold {numba / jax:.2f}x JAX jit's, under 3x: {verdict(numba < 3 * jax)}; "
                         f"{numba / with_import:.2f}x with JAX's import: {verdict(numba < 3 * with_import)}")
        if family in ("mlp", "micrograd") and warm is not None:
            lines.append(f"{row}: numba warm {describe(cells['numba warm'])}, under 1 s: {verdict(warm < 1)}")
        if family == "micrograd" and numba is not None:
            lines.append(f"{row}: numba cold {describe(cells['numba cold'])}, under 3 s: {verdict(numba < 3)}")
    return lines


def growth(results):
    """Lines with the time of each family's 10x larger row over its smaller one's, per cell."""
    lines = []
    sizes = {parse_row(row): row for row in results}
    for (family, size), small in sizes.items():
        large = sizes.get((family, size * 10)) if size else None
        if large is None:
            continue
        ratios = []
        for cell in results[small]:
            a, b = seconds(results[small][cell]), seconds(results[large].get(cell))
            if a and b is not None:
                ratios.append(f"{IMPLS.get(cell, cell)} {'> ' if b == float('inf') else ''}"
                              f"{(results[large][cell].get('timeout', b)) / a:.1f}x")
        lines.append(f"{small} -> {large} (10x): {', '.join(ratios)} (goal: at most 12x)")
    return lines


def disagreements(results):
    out = []
    for row, cells in results.items():
        values = {cell: r["value"] for cell, r in cells.items() if r and "value" in r}
        if not values:
            continue
        reference = next(iter(values.values()))
        tol = 1e-6 if all(r["dtype"] == "float64" for r in cells.values() if r and "value" in r) else 1e-3
        out += [f"{row}: {IMPLS.get(cell, cell)} gives {v!r}, not {reference!r}" for cell, v in values.items()
                if abs(v - reference) > tol * max(1.0, abs(reference))]
    return out


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_ROWS)}")
    p.add_argument("--rows", help=f"comma-separated rows (default: {','.join(DEFAULT_ROWS)})")
    p.add_argument("--timeout", type=float, default=600, help="seconds a process may run (default 600)")
    p.add_argument("--memory", type=float, default=round(C.physical_gb() / 2, 1),
                   help="GB of memory a process may take (default: half the machine's)")
    p.add_argument("--targets", default="numpy,numba", help="graphc targets (default: numpy,numba)")
    p.add_argument("--peers", default="jax,torch", help="jax, torch, both (default) or '' for none")
    args = p.parse_args(argv)
    args.rows = args.rows.split(",") if args.rows else list(QUICK_ROWS if args.quick else DEFAULT_ROWS)
    args.targets = [t for t in args.targets.split(",") if t]
    args.peers = [t for t in args.peers.split(",") if t]
    for row in args.rows:
        parse_row(row)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(*argv[1:3])
        return 0
    args = parse(argv)
    load, work = C.load_line(), tempfile.mkdtemp(prefix="graphc-compile-time-")
    try:
        results = {row: run_row(row, args, work) for row in args.rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cells = [f"{t} {w}" for t in args.targets for w in ("cold", "warm")] + args.peers
    at = C.checkout()
    print(f"Time to first result in a fresh process ({C.machine_line()}; {load} at the start"
          f"{f'; graphc at {at}' if at else ''})\n")
    C.table(["row", "nodes", *(IMPLS.get(c, c) for c in cells)],
            [[row_label(row), f"{nodes(r):,}" if nodes(r) else "", *(describe(r.get(c)) for c in cells)]
             for row, r in results.items()])
    for row, r in results.items():
        for cell, result in r.items():
            if result and "error" in result:
                print(f"{row}, {IMPLS.get(cell, cell)} failed: {result['error']}")
    print("\n" + "\n".join(goals(results) + growth(results)))
    print("\nMeasured: from before tracing to the first value and gradients, in a fresh process; imports made "
          "before are not counted (graphc's own, about 0.2 s; JAX's and PyTorch's: the goals also compare with "
          "JAX's added), those made on the way are (graphc's of SymPy, Jinja2 and Numba); cold: empty graphc "
          "and Numba caches; warm: a second process, caches filled; nodes: graphc's forward graph.")
    wrong = disagreements(results)
    print("\n".join(wrong) or "Every implementation's first value agrees.")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
