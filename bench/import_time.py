"""Time to `import graphc` in a fresh process, beside `import numpy` alone and the peers' imports.

    python bench/import_time.py [--runs 20] [--quick] [--peers torch,jax]

Each run starts a new Python process per module, the modules in turn (the machine's speed
drifts over minutes); the child times the import statement itself, so Python's own start-up,
the same for every row, is not counted (the whole process's wall clock, start-up and teardown
included, is shown beside). Rows: `import numpy` (the floor every row pays: graphc imports
it), `import graphc`, and `import torch` and `import jax` where installed. The last column is
graphc's median over the row's. The children run from this checkout and write Python's
bytecode caches (PYTHONDONTWRITEBYTECODE is dropped from their environment), as an installed
package has them; a first, uncounted run of each row writes them.

Each graphc child also says which of the libraries graphc imports only when a graph needs them
(SymPy, Jinja2, Numba; SciPy, Graphviz, Dask) `import graphc` brought in: none is the goal.
The goal (issue 13): `import graphc` under 0.25 s.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import _common as C

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOAL = 0.25   # seconds, the median of `import graphc`
HEAVY = ("sympy", "jinja2", "numba", "scipy", "graphviz", "dask", "distributed")
CHILD = ("import time; t0 = time.perf_counter(); import {module}; seconds = time.perf_counter() - t0; "
         "import json, sys; print(json.dumps([seconds, [m for m in {heavy!r} if m in sys.modules]]))")


def import_once(module):
    """(seconds the import statement took, whole process's seconds, heavy modules it imported)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD.format(module=module, heavy=HEAVY)], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"import {module} failed:\n{out.stderr}")
    seconds, heavy = json.loads(out.stdout.splitlines()[-1])
    return seconds, wall, heavy


def measure(modules, runs):
    """{module: ([import seconds], [process seconds], heavy modules)} over `runs` rounds."""
    for m in modules:
        import_once(m)   # writes the bytecode caches; not counted
    times = {m: ([], [], set()) for m in modules}
    for _ in range(runs):
        for m in modules:
            seconds, wall, heavy = import_once(m)
            times[m][0].append(seconds)
            times[m][1].append(wall)
            times[m][2].update(heavy)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--runs", type=int, default=20, help="fresh processes per module (default 20)")
    p.add_argument("--quick", action="store_true", help="3 runs")
    p.add_argument("--peers", default="torch,jax", help="peers whose import is timed too ('' for none)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    runs = 3 if args.quick else args.runs
    peers = [name for name in args.peers.split(",") if name]
    missing = [name for name in peers if importlib.util.find_spec(C.PEERS[name][1]) is None]
    modules = ["numpy", "graphc", *(C.PEERS[name][1] for name in peers if name not in missing)]
    times = measure(modules, runs)
    graphc = statistics.median(times["graphc"][0])
    print(f"Time to import, fresh processes ({C.machine_line()}; {C.load_line()}; graphc at {C.checkout()})\n")
    C.table(["import", "median", "min", "max", "whole process (median)", "graphc / this"],
            [[f"import {m}", C.fmt_time(statistics.median(t)), C.fmt_time(min(t)), C.fmt_time(max(t)),
              C.fmt_time(statistics.median(wall)), f"{graphc / statistics.median(t):.2f}x"]
             for m, (t, wall, _) in times.items()])
    for name in missing:
        print(f"skipped {C.PEERS[name][0]}: not installed")
    heavy = sorted(times["graphc"][2])
    print(f"\n`import graphc` imported {', '.join(heavy) if heavy else 'none'} of {', '.join(HEAVY)}")
    print(f"goal: `import graphc` under {GOAL} s (median): {'met' if graphc < GOAL and not heavy else 'not met'} "
          f"({C.fmt_time(graphc)})")
    print(f"Measured: {runs} fresh processes per row, the rows in turn; the import statement alone "
          "(perf_counter in the child), after a first run that writes the bytecode caches.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
