"""Bad input gets a clear error or a right answer; the cache survives a hostile disk."""
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, SIMULATED_CUDA, example

import graphc as gc
from graphc.codegen import cache

torch = pytest.importorskip("torch")


def run(code, cwd, **env):
    """`code` in a fresh Python process; returns its result (graphc from this checkout)."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=300)


# ---- inputs ------------------------------------------------------------------------------

NOT_NUMBERS = [None, "2.0", [1.0, None], 1 + 2j, [[1.0, 2.0], [3.0]], {"x": 1.0}, object()]


@pytest.mark.parametrize("bad", NOT_NUMBERS, ids=lambda v: type(v).__name__)
def test_what_is_not_a_number_is_refused_by_name(target, bad):
    fn = gc.compile(example("neuron").neuron, target=target)
    for call in (fn.forward, fn.value_and_grad, fn.backward):
        with pytest.raises(gc.GraphError, match=r"graph 'neuron': \w+\(\): input 'x0' "):
            call(2.0, bad, -3.0, -2.0, -3.0)
    if bad is not None:   # grad_out=None is the default seed
        with pytest.raises(gc.GraphError, match="'grad_out'"):
            fn.backward(2.0, -1.0, -3.0, -2.0, -3.0, grad_out=bad)


def test_bools_and_integers_are_numbers(target):
    fn = gc.compile(example("circuit").circuit, target=target)
    assert fn.value_and_grad(True, np.int32(5), -4) == (-24.0, (-4.0, -4.0, 6.0))


def test_an_input_may_be_called_self(target):
    @gc.graph
    def f(self, x):
        return self * gc.exp(x)
    fn = gc.compile(f, target=target)
    assert fn.forward(self=2.0, x=0.0) == 2.0
    assert fn.value_and_grad(x=0.0, self=2.0) == (2.0, (1.0, 2.0))
    assert fn.backward(self=2.0, x=0.0, grad_out=3.0) == (3.0, 6.0)


@pytest.mark.parametrize("name", ["abs", "cuda", "math", "range"])
def test_the_cuda_target_refuses_names_its_code_calls(name):
    g = gc.graph(eval(f"lambda {name}, y: gc.exp({name}) * y"), name="f")
    with pytest.raises(gc.GraphError, match=f"graph 'f': the cuda target's code calls {name}, which a value"):
        gc.compile(g, target="cuda")
    assert gc.compile(g).forward(0.0, 3.0) == 3.0


# ---- results are floats, and right ---------------------------------------------------------

SCALAR_MODELS = {
    "relu": lambda x, y: gc.relu(x) * y,
    "maximum": lambda x, y: gc.maximum(x, y),
    "same_maximum": lambda x, y: gc.maximum(x, x) + y,
    "where": lambda x, y: gc.where(x > y, x, y),
    "stacked_max": lambda x, y: gc.max(gc.stack([x, y])),
    "reshaped": lambda x, y: gc.reshape(gc.reshape(x, (1, 1)) * y, ()),
    "new_axes": lambda x, y: gc.sum(x[None, None] * y),
    "comparison": lambda x, y: x > y,
}


@pytest.mark.parametrize("name", sorted(SCALAR_MODELS))
def test_a_graph_of_scalars_gives_floats(target, name):
    """Values and gradients are Python floats (the module's own too, on numba), equal to
    PyTorch's."""
    g = gc.graph(SCALAR_MODELS[name], name=name)
    fn = gc.compile(g, target=target)
    for x, y in [(2.0, 1.0), (-2.0, 1.5), (0.5, 0.5)]:
        value, grads = fn.value_and_grad(x, y)
        assert all(type(v) is float for v in (value, *grads)), (value, grads)
        tx, ty = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (x, y))
        out = {"relu": lambda: torch.relu(tx) * ty, "maximum": lambda: torch.maximum(tx, ty),
               "same_maximum": lambda: torch.maximum(tx, tx) + ty,
               "where": lambda: torch.where(tx > ty, tx, ty),
               "stacked_max": lambda: torch.stack([tx, ty]).max(),
               "reshaped": lambda: (tx.reshape(1, 1) * ty).reshape(()),
               "new_axes": lambda: (tx[None, None] * ty).sum(),
               "comparison": lambda: (tx > ty).double()}[name]()
        want = torch.autograd.grad(out, (tx, ty), allow_unused=True) if out.requires_grad else (None, None)
        assert value == out.item()
        if name not in ("maximum", "where", "stacked_max", "same_maximum") or x != y:   # ties: ours go to one side
            assert grads == tuple(0.0 if w is None else w.item() for w in want)
        if target == "numba":   # the compiled function itself, called with floats
            raw_value, raw_grads = fn.module.value_and_grad(x, y)
            assert all(isinstance(v, float) for v in (raw_value, *raw_grads)), (raw_value, raw_grads)


def test_softplus_is_exact_at_both_infinities(target):
    @gc.graph
    def f(x: gc.Tensor[6]):
        return gc.sum(gc.softplus(x))
    fn = gc.compile(f, target=target)
    # the CUDA simulator runs kernels as Python, whose math.exp(800) raises (a GPU gives inf)
    big = -40.0 if target == "cuda" and SIMULATED_CUDA else -800.0
    x = np.array([np.inf, -np.inf, 800.0, big, -30.0, 0.0])
    with np.errstate(over="ignore"):
        (grad,) = fn.backward(x)
        want = [1.0, 0.0, 1.0, 1 / (1 + np.exp(-big)), 1 / (1 + np.exp(30.0)), 0.5]
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-14)


def test_cross_entropy_rows_that_are_not_probabilities(target):
    """A row of zeros (an example masked out) adds nothing to the loss and gets no gradient;
    rows of any other mass get the true gradient, softmax(a)*sum(y) - y, as PyTorch's."""
    @gc.graph
    def ce(a: gc.Tensor[4, 3], y: gc.Tensor[4, 3]):
        return gc.softmax_cross_entropy(a, y)
    a = np.random.default_rng(3).standard_normal((4, 3))
    y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.2, 0.3, 0.9], [0.0, 1.0, 0.0]])
    value, (da, dy) = gc.compile(ce, target=target).value_and_grad(a, y)
    ta, ty = torch.tensor(a, requires_grad=True), torch.tensor(y, requires_grad=True)
    loss = -(ty * torch.log_softmax(ta, -1)).sum(-1).mean()
    loss.backward()
    assert value == pytest.approx(loss.item(), rel=1e-13)
    np.testing.assert_allclose(np.asarray(da), ta.grad.numpy(), atol=1e-15, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(dy), ty.grad.numpy(), atol=1e-15, rtol=1e-12)
    assert not np.asarray(da)[1].any()


# ---- optimizers ------------------------------------------------------------------------------

@pytest.mark.parametrize("opt_target", ["numpy", "numba"])
def test_an_optimizer_refuses_parameters_it_cannot_update(opt_target):
    opt = gc.optim.SGD(lr=1.0, target=opt_target)
    with pytest.raises(TypeError, match="parameter 'W' has dtype int64; parameters must be floating-point"):
        opt.step({"W": np.arange(3)}, {"W": 0.3 * np.ones(3)})
    frozen = np.ones(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="parameter 'W' is a read-only array"):
        opt.step({"W": frozen}, {"W": np.ones(3)})
    w = np.ones(3)
    opt.step({"W": w}, {"W": np.full(3, 0.25)})
    np.testing.assert_array_equal(w, 0.75)
    with pytest.raises(ValueError, match="parameter 'W' is a read-only array"):   # arrays it has seen
        opt.step({"W": frozen}, {"W": np.ones(3)})


# ---- the cache -------------------------------------------------------------------------------

def test_an_unwritable_cache_sends_modules_to_a_temporary_directory(tmp_path):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a directory")
    r = run("""
        import graphc as gc
        @gc.graph
        def f(x):
            return gc.exp(x)
        for target in ("numpy", "numba"):
            fn = gc.compile(f, target=target)
            assert fn.forward(0.0) == 1.0 and "graphc-" in str(fn.path), fn.path
        print("ok")
    """, tmp_path, GRAPHC_CACHE_DIR=str(blocked / "cache"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    assert r.stderr.count("cannot write to the cache directory") == 1 and "GRAPHC_CACHE_DIR" in r.stderr


def test_damaged_cache_files_are_rebuilt(tmp_path):
    """A damaged index entry, module or Numba cache file is replaced, in the next process."""
    code = """
        import graphc as gc, sys
        sys.path.insert(0, {examples!r})
        import neuron
        fn = gc.compile(neuron.neuron, target="numba")
        v, g = fn.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
        assert abs(v - 0.7310585786300049) < 1e-15, v
        print(fn.path)
    """.format(examples=str(ROOT / "examples"))
    env = {"GRAPHC_CACHE_DIR": str(tmp_path / "cache")}
    first = run(code, tmp_path, **env)
    assert first.returncode == 0, first.stderr
    module = Path(first.stdout.strip())
    numba_files = sorted((module.parent / "__pycache__").glob("*.nb*"))
    assert numba_files
    for damaged in [*numba_files, *(tmp_path / "cache" / "keys").iterdir()]:
        damaged.write_bytes(b"\xff\xfe" + damaged.read_bytes()[: len(damaged.read_bytes()) // 3])
    again = run(code, tmp_path, **env)
    assert again.returncode == 0, again.stderr
    module.write_bytes(b"\xff\xfe damaged")
    third = run(code, tmp_path, **env)
    assert third.returncode == 0, third.stderr
    assert module.read_bytes() != b"\xff\xfe damaged"


@pytest.mark.parametrize("name", ["n" * 260, "ж" * 120])
def test_a_long_graph_name_fits_in_a_file_name(name):
    g = gc.graph(lambda x: gc.tanh(x) * 2.0, name=name)
    for target in ("numpy", "numba"):
        fn = gc.compile(g, target=target)
        assert fn.forward(0.0) == 0.0 and len(fn.path.name.encode()) < 100 and fn.graph.name == name


def test_no_home_directory_puts_the_cache_in_the_temporary_directory(monkeypatch):
    for var in ("GRAPHC_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)   # and no password entry
    import tempfile
    assert cache.cache_dir().parent == Path(tempfile.gettempdir())
    assert cache.cache_dir().name.startswith("graphc-")


# ---- messages ----------------------------------------------------------------------------------

@pytest.mark.parametrize("line, hint", [
    ("return gc.sigmod(x)", "has no attribute 'sigmod'; did you mean gc.sigmoid?"),
    ("y = x\n    return gc.tanh(yy)", "NameError: name 'yy' is not defined. Did you mean: 'y'?"),
    ("return gc.exp(x) * np.pii", "has no attribute 'pii'. Did you mean: 'pi'?"),
])
def test_a_misspelt_name_in_a_model_file_gets_python_s_hint(tmp_path, line, hint):
    model = tmp_path / "model.py"
    model.write_text(f"import numpy as np\nimport graphc as gc\n\n@gc.graph\ndef f(x):\n    {line}\n")
    r = subprocess.run([sys.executable, "-m", "graphc", "compile", str(model), "-o", "-"], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 2 and hint in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_notebooks_show_a_table_and_the_diagram():
    neuron = example("neuron").neuron
    page = neuron._repr_html_()
    assert "<b>graph neuron</b>" in page and "<code>w0</code>" in page and "<svg" in page
    assert neuron._repr_svg_().lstrip().startswith(("<?xml", "<svg"))
    page = gc.compile(neuron)._repr_html_()
    assert "neuron compiled for numpy (float64)" in page and "input, wrt" in page and "<svg" in page


# ---- empty batches ---------------------------------------------------------------------------

def test_an_empty_batch_gives_what_numpy_and_pytorch_give_on_every_target(target):
    """A mean over no rows is nan with zero gradients (PyTorch's answer); a max over no rows
    is NumPy's error, on every target alike."""
    @gc.graph
    def mean(x: gc.Tensor["B", 3], W: gc.Tensor[3, 2]):
        return gc.mean(x @ W)

    @gc.graph
    def column_max(x: gc.Tensor["B", 3]):
        return gc.sum(gc.max(x, axis=0))

    empty = np.zeros((0, 3))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # NumPy's "Mean of empty slice"
        value, (dx, dW) = gc.compile(mean, target=target).value_and_grad(empty, np.ones((3, 2)))
    assert np.isnan(value) and np.shape(dx) == (0, 3) and not np.asarray(dW).any()
    fn = gc.compile(column_max, target=target)
    for call in (fn.forward, fn.value_and_grad):
        with pytest.raises(ValueError, match="zero-size array to reduction operation maximum"):
            call(empty)


# ---- adversarial ---------------------------------------------------------------------------------

def test_names_that_generated_code_uses_do_not_break_it(target):
    """Inputs named like the module's aliases, loop indices, temporaries and gradients."""
    @gc.graph
    def f(np: gc.Tensor[3], numba: gc.Tensor[3], s0, grad_np, i, j, sched, prange, L_1):
        return gc.sum(gc.tanh(np * numba + s0) * grad_np + i * j * sched * prange - L_1)
    names = f.input_names
    rng = np.random.default_rng(5)
    args = [rng.standard_normal(3), rng.standard_normal(3)] + [float(v) for v in rng.standard_normal(7)]
    want = gc.compile(f).value_and_grad(*args)
    value, grads = gc.compile(f, target=target).value_and_grad(*args)
    assert value == pytest.approx(want[0], rel=1e-12) and len(grads) == len(names)
    for g, w in zip(grads, want[1]):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_complex_and_object_arrays_are_refused_float16_and_ints_converted(target):
    @gc.graph
    def f(x: gc.Tensor[3]):
        return gc.sum(x * x)
    fn = gc.compile(f, target=target)
    for bad in (np.ones(3, dtype=complex), np.array([1.0, "a", 2.0], dtype=object)):
        with pytest.raises(gc.GraphError, match="input 'x' must be a number or an array of numbers"):
            fn.value_and_grad(bad)
    for good in (np.ones(3, dtype=np.float16), np.arange(3), [True, False, True]):
        value, (dx,) = fn.value_and_grad(good)
        np.testing.assert_array_equal(np.asarray(dx), 2 * np.asarray(good, dtype=float))


def test_several_processes_compiling_one_graph_at_once(tmp_path):
    """Four processes compile the same graph into one cache and call it: the module is
    written atomically and Numba's cache files too, so every one gets the right value."""
    code = f"""
        import sys
        sys.path.insert(0, {str(ROOT / "examples")!r})
        import graphc as gc, neuron
        fn = gc.compile(neuron.neuron, target="numba")
        v, g = fn.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
        assert abs(v - 0.7310585786300049) < 1e-15 and abs(g[0] + 0.19661193324148185) < 1e-15
        print("ok")
    """
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "GRAPHC_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=environ, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 and out.strip() == "ok" for p, (out, _) in zip(procs, results)), results
    assert len(list((tmp_path / "cache").glob("neuron_*/neuron_graphc.py"))) == 1
