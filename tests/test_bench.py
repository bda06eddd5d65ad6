"""The runtime benchmarks run end to end on every target, at tiny sizes and without peers:
each checks its graphc rows against NumPy by hand before timing them (and returns 1 if they
disagree), so this keeps the code paths of bench/ working, the cuda target's (data and
parameters on the device) included. Nothing here is timed."""
from support import ROOT, script

import graphc as gc

BENCH = ROOT / "bench"


def _load(name, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))   # the scripts import _common
    return script("bench", name)


def _tiny_mlp(x: gc.Tensor["B", 8], y: gc.Tensor["B", 3], W1: gc.Tensor[6, 8], b1: gc.Tensor[6],
              W2: gc.Tensor[4, 6], b2: gc.Tensor[4], W3: gc.Tensor[3, 4], b3: gc.Tensor[3]):
    h1 = gc.relu(x @ W1.T + b1)
    h2 = gc.relu(h1 @ W2.T + b2)
    return gc.softmax_cross_entropy(h2 @ W3.T + b3, y)


def test_the_mlp_benchmark_runs_on_each_target(target, monkeypatch, capsys):
    bench = _load("mlp", monkeypatch)
    monkeypatch.setattr(bench.C, "mlp", _tiny_mlp)
    monkeypatch.setattr(bench, "SIZES", (8, 6, 4, 3))
    monkeypatch.setattr(bench, "BATCH", 5)
    assert bench.main(["--target", target, "--quick", "--peers", ""]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert rows[0] == "implementation" and "NumPy by hand" in rows
    optim = [r for r in rows if r.endswith("with gc.optim.SGD")]
    assert len(optim) == 1 and optim[0].startswith(f"graphc ({target}")
    if target == "cuda":
        assert optim[0] == "graphc (cuda, all on the GPU) with gc.optim.SGD"
    assert "agree to" in out


def test_the_elementwise_benchmark_runs_on_each_target(target, monkeypatch, capsys):
    bench = _load("elementwise", monkeypatch)
    monkeypatch.setattr(bench, "N", 2000)
    assert bench.main(["--target", target, "--quick", "--peers", ""]) == 0
    out = capsys.readouterr().out
    assert f"| graphc ({target})" in out and "agree to" in out


def test_the_hessian_benchmark_checks_graphc_against_numpy(monkeypatch, capsys):
    bench = _load("hessian", monkeypatch)
    monkeypatch.setattr(bench, "N", 7)
    monkeypatch.setattr(bench, "M", 4)
    assert bench.main(["--quick", "--peers", ""]) == 0
    out = capsys.readouterr().out
    assert "| graphc (numpy) gc.hessian" in out and "agrees with NumPy by hand to" in out


def test_peers_say_where_they_ran(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import _common as C
    assert C.peer_label("torch", {"version": "2.0", "device": "cpu", "threads": 2}) == "PyTorch eager 2.0 (2 threads)"
    assert C.peer_label("torch", {"version": "2.0", "device": "cuda", "threads": 2}) == "PyTorch eager 2.0 on the GPU"
    assert C.peer_label("jax", {"version": "0.4", "device": "gpu"}) == "JAX jit 0.4 on the GPU"
    assert C.peer_label("jax", {"version": "0.4", "device": "cpu"}) == "JAX jit 0.4"


def test_the_conv_benchmark_agrees_with_pytorch(monkeypatch, capsys):
    """LeNet-5's step on numpy beside PyTorch: the benchmark returns 1 where graphc's loss at
    step 0 disagrees with PyTorch's (the same weights and data)."""
    bench = _load("conv", monkeypatch)
    assert bench.main(["--target", "numpy", "--quick", "--peers", "torch"]) == 0
    out = capsys.readouterr().out
    assert "| graphc (numpy) with gc.optim.SGD" in out and "| PyTorch eager" in out
    assert "graphc (numpy) / PyTorch eager:" in out and "first result:" in out


def test_the_small_models_benchmark_runs_quiet_and_loaded(monkeypatch, capsys):
    """micrograd's MLP alone, the numpy target measured against itself (Numba's compile of
    the models would take the suite tens of seconds): both conditions, the busy process
    started and stopped."""
    bench = _load("small_models", monkeypatch)
    monkeypatch.setattr(bench, "MODELS", {"micrograd": bench.MODELS["micrograd"]})
    monkeypatch.setattr(bench, "TARGETS", ("numpy", "numpy"))
    assert bench.main(["--quick", "--peers", ""]) == 0
    out = capsys.readouterr().out
    assert out.count("| micrograd's MLP 2-16-16-1, batch 100 ") == 2
    assert "\nquiet (load average " in out and ", then a process spinning on one core beside):" in out
    assert "goal: the numpy target's step at most 0.7x the numpy target's" in out


def test_the_compile_time_benchmark_times_fresh_processes(monkeypatch, capsys):
    """Two tiny chains in fresh processes on numpy, cold and warm; then a timeout too short
    for any process, which the table says rather than waits for."""
    bench = _load("compile_time", monkeypatch)
    monkeypatch.syspath_prepend(str(BENCH))   # the children import the benchmark's modules
    assert bench.main(["--rows", "chain12,chain120", "--targets", "numpy", "--peers", ""]) == 0
    out = capsys.readouterr().out
    assert "| scalar chain, 12 ops " in out and "| scalar chain, 120 ops " in out
    assert "chain12 -> chain120 (10x): numpy cold " in out and "Every implementation's first value agrees." in out
    assert bench.main(["--rows", "mixed4", "--targets", "numpy", "--peers", ""]) == 0   # different expressions
    assert "| 4 different scalar expressions " in capsys.readouterr().out
    assert bench.main(["--rows", "chain12", "--targets", "numpy", "--peers", "", "--timeout", "0.01"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| scalar chain, 12 ops"))
    assert [cell.strip() for cell in row.split("|")[2:-1]] == ["", "> 0.01 s", "-"]


def test_the_compile_time_goals_compare_with_jax_alone_and_with_its_import(monkeypatch):
    # graphc's time counts the imports it makes on the way (Numba's): JAX's jit alone would not
    bench = _load("compile_time", monkeypatch)
    results = {"mlp": {"numba cold": {"seconds": 3.0, "nodes": 33}, "jax": {"seconds": 0.3, "import": 0.9}},
               "chain500": {"numba cold": {"seconds": 1.5, "nodes": 500}, "jax": {"seconds": 0.4, "import": 1.0}}}
    lines = bench.goals(results)
    assert "mlp: numba cold 10.00x JAX jit's, under 3x: NOT met; 2.50x with JAX's import: met" in lines
    assert ("chain500 (500 nodes): numba cold 1.50 s against JAX jit's 0.40 s, at most JAX's: NOT met; "
            "against 1.40 s with JAX's import: NOT met") in lines
