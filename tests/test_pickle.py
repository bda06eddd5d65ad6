"""Graphs and compiled functions pickle: a graph by its nodes (ops by name, a user's
elementwise op by its formulas), a compiled function by its module's text, which the
receiver writes into its own cache and imports (on numba, Numba's cache of it then serves
every process of the machine)."""
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sympy as sp

import graphc as gc
from graphc.graph.ops import REGISTRY
from graphc.graph.structural import with_vjp
from support import example

MODEL = textwrap.dedent("""
    import graphc as gc

    @gc.graph(wrt=("W", "b"))
    def classify(x: gc.Tensor["B", 3], y: gc.IntTensor["B"], W: gc.Tensor[4, 3], b: gc.Tensor[4]):
        scores = gc.tanh(x @ W.T + b)
        return {"loss": gc.softmax_cross_entropy(scores, y), "scores": scores}
""")


@pytest.fixture
def classify(tmp_path):
    """MODEL's graph, from a module that only this process can import."""
    (tmp_path / "classify.py").write_text(MODEL)
    sys.path.insert(0, str(tmp_path))
    try:
        import classify
        yield classify.classify
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("classify", None)


def inputs(rng=0):
    rng = np.random.default_rng(rng)
    return {"x": rng.standard_normal((5, 3)), "y": rng.integers(0, 4, 5), "W": rng.standard_normal((4, 3)),
            "b": rng.standard_normal(4)}


def test_a_graph_pickles_and_compiles_to_the_same_module(classify):
    mlp = example("mlp").mlp
    for graph in (mlp, gc.grad(mlp), gc.jvp(mlp, wrt="W1")):   # adjoint and tangent records travel too
        again = pickle.loads(pickle.dumps(graph))
        assert str(again) == str(graph) and len(again.nodes) == len(graph.nodes)
        assert (len(again.adjoints), len(again.tangents)) == (len(graph.adjoints), len(graph.tangents))
        assert gc.compile(again).source == gc.compile(graph).source
    again = pickle.loads(pickle.dumps(classify))
    assert again.traced[0] is classify.traced[0]   # @gc.graph's function, found by the graph's name
    assert pickle.loads(pickle.dumps(mlp)).traced is None   # a module imported by path: not found by name


def test_a_deep_graph_pickles_without_recursion():
    @gc.graph
    def chain(x):
        for _ in range(3000):   # deeper than pickle's recursion limit, were each node its inputs' child
            x = gc.sin(x) * 1.01
        return x
    again = pickle.loads(pickle.dumps(chain))
    assert gc.compile(again).forward(0.5) == gc.compile(chain).forward(0.5)


def test_a_users_elementwise_op_travels_by_its_formulas(monkeypatch):
    squash = gc.elementwise("squash_travels", lambda x, a=2.0: x / (a + sp.Abs(x)))

    @gc.graph
    def model(x: gc.Tensor[3]):
        return gc.sum(squash(x, a=3.0))
    data = pickle.dumps(model)
    monkeypatch.delitem(REGISTRY, "squash_travels")   # as in a process that never declared it
    again = pickle.loads(data)
    assert REGISTRY["squash_travels"] is again.nodes[1].op is not model.nodes[1].op
    x = np.array([-1.0, 0.5, 2.0])
    value, (grad,) = gc.compile(again).value_and_grad(x)
    assert value == pytest.approx(np.sum(x / (3 + abs(x))))
    assert grad == pytest.approx(3 / (3 + abs(x)) ** 2)   # derived again from the formula


def test_a_lambda_as_gradient_rule_cannot_travel_and_the_error_names_it():
    def model(x: gc.Tensor[3]):
        return gc.sum(with_vjp(x * x, (x,), lambda g, x: (g * 2 * x,), "square"))
    graph = gc.graph(model)
    with pytest.raises(gc.GraphError, match=r"cannot be pickled: the custom_vjp at .*test_pickle.py:\d+ holds "
                                            r".*<lambda> as its 'rule'.*define it with `def`"):
        pickle.dumps(graph)
    pickle.dumps(gc.compile(graph))   # its compiled function travels: the module is text


def run(script, cache):
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def test_a_compiled_function_works_in_a_fresh_process_with_an_empty_cache(classify, tmp_path):
    """The module's text travels and nothing else: the receiver never sees the model's file,
    and it writes and imports the module without generating it (no Jinja2)."""
    fn = gc.compile(classify)
    (tmp_path / "fn.pkl").write_bytes(pickle.dumps(fn))
    np.savez(tmp_path / "inputs.npz", **inputs())
    empty = tmp_path / "empty"
    out = run(f"""
        import pickle, sys
        import numpy as np
        fn = pickle.loads(open({str(tmp_path / 'fn.pkl')!r}, "rb").read())
        value, grads = fn.value_and_grad(**np.load({str(tmp_path / 'inputs.npz')!r}))
        np.savez({str(tmp_path / 'out.npz')!r}, loss=value["loss"], scores=value["scores"], *grads)
        print("jinja2" in sys.modules, "classify" in sys.modules, fn.path)
    """, empty)
    assert out[:2] == ["False", "False"]
    assert out[2].startswith(str(empty)) and open(out[2]).read() == fn.source
    value, grads = fn.value_and_grad(**inputs())
    with np.load(tmp_path / "out.npz") as got:
        assert got["loss"] == value["loss"] and np.array_equal(got["scores"], value["scores"])
        assert all(np.array_equal(got[f"arr_{k}"], g) for k, g in enumerate(grads))


@pytest.mark.skipif("numba" not in gc.TARGETS, reason="the numba target is not installed")
def test_a_numba_function_compiles_once_per_machine(classify, tmp_path):
    """Two fresh processes receive the function with the same cache directory: the first
    compiles it and writes Numba's cache beside the module, the second loads that."""
    (tmp_path / "fn.pkl").write_bytes(pickle.dumps(gc.compile(classify, target="numba")))
    np.savez(tmp_path / "inputs.npz", **inputs())
    script = f"""
        import pickle
        import numpy as np
        fn = pickle.loads(open({str(tmp_path / 'fn.pkl')!r}, "rb").read())
        value, grads = fn.value_and_grad(**np.load({str(tmp_path / 'inputs.npz')!r}))
        stats = fn.module.__dict__["__value_and_grad"].stats
        print(repr(value["loss"]), sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
    """
    first, second = run(script, tmp_path / "cache"), run(script, tmp_path / "cache")
    assert first[0] == second[0]
    assert first[1:] == ["0", "1"] and second[1:] == ["1", "0"]


def test_an_unpickled_function_has_no_graph_and_says_so():
    fn = pickle.loads(pickle.dumps(gc.compile(example("mlp").mlp)))
    assert repr(fn).startswith("<graphc.CompiledGraph mlp(x, y, W1")
    with pytest.raises(gc.GraphError, match="graph 'mlp': this compiled function was unpickled"):
        fn.graph
    with pytest.raises(gc.GraphError, match=r"input 'W1' expects shape \(256, 784\)"):
        fn.forward(np.ones((2, 784)), np.ones((2, 10)), np.ones((3, 3)), np.ones(256), np.ones((10, 256)),
                   np.ones(10))   # the checks travel with the function
