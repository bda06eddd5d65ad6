"""How long graphc takes to compile graphs of growing size.

    python bench/compile_scale.py [--reps N]

For scalar chains of 100, 1,000 and 10,000 operations and a 784-256-128-10 MLP
(ReLU, softmax cross-entropy, symbolic batch), it prints the time to trace the model
function into a graph, to generate the module text (autodiff, lowering, template),
for gc.compile end to end (generation, writing and importing the module), and for
gc.compile of a new trace of a graph compiled before (the compile cache: trace,
fingerprint, import), each the best of a few repetitions, next to the goal.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import graphc as gc
from graphc.autodiff import resolve_wrt
from graphc.compiler import generate
from graphc.backends import TARGETS

import _common as C

GOALS = {"chain": {10_000: 2.0}, "mlp": 0.5}   # seconds for gc.compile end to end


def chain_fn(n):
    """A model function applying n scalar operations in a chain: *w, sin, +w, tanh, ..."""
    def chain(x, w):
        h = x
        for k in range(n):
            step = k % 4
            h = h * w if step == 0 else gc.sin(h) if step == 1 else h + w if step == 2 else gc.tanh(h)
        return h
    chain.__name__ = f"chain{n}"
    return chain


def timed(fn, reps):
    """(first time, best time, result) over `reps` calls of fn."""
    times, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times[0], min(times), result


def measure(label, model, wrt, reps, workdir):
    _, trace_s, graph = timed(lambda: gc.graph(model, wrt=wrt), reps)
    counter = iter(range(reps))
    # a fresh file each time, so that every repetition really writes and imports the module;
    # the first one also pays for the derivatives SymPy works out once per process
    first_s, compile_s, _ = timed(lambda: gc.compile(graph, path=workdir / f"{label}_{next(counter)}" / "m.py"), reps)
    wrt_nodes = resolve_wrt(graph, None)
    _, gen_s, source = timed(lambda: generate(graph, wrt_nodes, TARGETS["numpy"], "float64"), reps)
    gc.compile(gc.graph(model, wrt=wrt))   # into the cache (GRAPHC_CACHE_DIR, set by main)
    _, cached_s, _ = timed(lambda: gc.compile(gc.graph(model, wrt=wrt)), reps)
    return {"label": label, "nodes": len(graph.nodes), "lines": source.count("\n"),
            "trace": trace_s, "generate": gen_s, "compile": compile_s, "first": first_s,
            "cached": cached_s}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the small cases")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ["GRAPHC_CACHE_DIR"] = str(workdir / "cache")
        model, wrt = C.mlp, C.MLP_PARAMS   # first, so that its first compile starts from cold caches
        mlp_row = measure("mlp 784-256-128-10", model, wrt, args.reps, workdir)
        mlp_row["goal"] = GOALS["mlp"]
        for n in (100, 1_000, 10_000):
            reps = args.reps if n < 10_000 else max(1, args.reps - 1)
            row = measure(f"chain{n}", chain_fn(n), None, reps, workdir)
            row["goal"] = GOALS["chain"].get(n)
            rows.append(row)
        rows.append(mlp_row)

    print(f"{'graph':<20} {'nodes':>6} {'lines':>7} {'trace s':>9} {'generate s':>11} "
          f"{'compile s':>10} {'first s':>9} {'cached s':>9} {'goal s':>7}")
    failed = False
    for r in rows:
        goal = "" if r["goal"] is None else f"{r['goal']:.1f}"
        verdict = "" if r["goal"] is None else ("ok" if r["compile"] < r["goal"] else "SLOWER")
        failed |= verdict == "SLOWER"
        print(f"{r['label']:<20} {r['nodes']:>6} {r['lines']:>7} {r['trace']:>9.4f} "
              f"{r['generate']:>11.4f} {r['compile']:>10.4f} {r['first']:>9.4f} {r['cached']:>9.4f} "
              f"{goal:>7}  {verdict}")
    print("\ntrace: @gc.graph; generate: the module text (autodiff, lowering, template); "
          "compile: gc.compile end to end\n(generate, write, import), best of the repetitions; "
          "first: the first gc.compile of that graph in this process;\ncached: gc.compile of a new trace "
          "of a graph compiled before (trace, fingerprint, import of the module found).\n"
          "The goals apply to compile.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
