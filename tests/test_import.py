"""`import graphc` imports none of the heavy libraries: SymPy, Jinja2 and Numba come when a graph
needs them (building, differentiating, compiling), SciPy, Graphviz and Dask when a feature that
uses them runs. Each check runs in a fresh process, since this one has imported them all. The
time it takes is bench/import_time.py's to measure, not a test's."""
import json
import subprocess
import sys

from support import ROOT, script

HEAVY = ("sympy", "jinja2", "numba", "scipy", "graphviz", "dask", "distributed")


def fresh(code):
    """What `code` prints in a new Python process, run from the checkout."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_graphc_imports_no_heavy_library():
    out = fresh(f"import graphc, sys, json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert json.loads(out) == []


def test_what_is_imported_on_first_use_works_in_a_fresh_process():
    """gc.compile, gc.optim, gc.TARGETS ... are imported when first read, and listed by dir()."""
    out = fresh("""
import json, sys
import graphc as gc
names = ["compile", "CompiledGraph", "TARGETS", "optim", "schedules", "init", "data", "diagnostics",
         "gradcheck", "to_device", "to_host", "distributed"]
listed = [n for n in names if n in dir(gc)]

@gc.graph
def neuron(w0, x0, w1, x1, w2):
    return gc.sigmoid(w0 * x0 + w1 * x1 + w2)

fn = gc.compile(neuron)
value, grads = fn.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
print(json.dumps({"listed": listed, "value": value, "grads": grads, "compiled": isinstance(fn, gc.CompiledGraph),
                  "optim": gc.optim.SGD.__name__, "targets": sorted(gc.TARGETS), "sympy": "sympy" in sys.modules}))
""")
    result = json.loads(out)
    assert len(result["listed"]) == 12 and result["compiled"] and result["optim"] == "SGD"
    assert "numpy" in result["targets"] and result["sympy"]   # compiling a graph brings SymPy in
    assert abs(result["value"] - 0.7310585786300049) < 1e-12
    assert all(abs(g - want) < 1e-12 for g, want in zip(result["grads"], [-0.19661193324148185, 0.3932238664829637,
                                                                        -0.3932238664829637, -0.5898357997244456,
                                                                        0.19661193324148185]))


def test_an_elementwise_op_builds_its_formulas_on_first_use():
    """graphc's own ops hold their SymPy formulas unbuilt until a graph uses them; a user's op
    builds them at once, so that a formula that is not SymPy's fails on its line."""
    out = fresh("""
import json, sys
import graphc as gc
built = lambda op: "_built" in vars(op)
before = [name for name, op in gc.REGISTRY.items() if built(op)]
formula = str(gc.mod.op.formula)
print(json.dumps({"before": before, "mod": built(gc.mod.op), "exp": built(gc.exp.op), "formula": formula}))
""")
    result = json.loads(out)
    assert result["before"] == [] and result["mod"] and not result["exp"]
    assert result["formula"] == "_a0 - _a1*floor(_a0/_a1)"


def test_the_import_benchmark_runs(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))   # it imports _common
    bench = script("bench", "import_time")
    assert bench.main(["--runs", "1", "--peers", ""]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert rows == ["import", "import numpy", "import graphc"]
    assert "`import graphc` imported none of sympy" in out
