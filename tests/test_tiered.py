"""gc.compile(..., tiered=True): the numpy target answers while Numba compiles in another
process; each function then switches to Numba's machine code, which this process loads from
Numba's cache; a failed compilation is a warning, and the calls go on on numpy."""
import pickle
import types

import numpy as np
import pytest

import graphc as gc
from graphc.graph.ir import GraphError


@gc.graph
def tiered_mlp(x: gc.Tensor["B", 3], y: gc.Tensor["B"], W: gc.Tensor[4, 3], b: gc.Tensor[4], v: gc.Tensor[4]):
    # a graph of this file alone: no other test has its module in the session's caches
    return gc.mean((gc.tanh(gc.linear(x, W, b)) @ v - y) ** 2) + 0.01 * gc.sum(W * W)


def data(seed=0, batch=9):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, 3)), "y": rng.standard_normal(batch), "W": rng.standard_normal((4, 3)),
            "b": rng.standard_normal(4), "v": rng.standard_normal(4)}


def test_calls_run_on_numpy_until_numba_has_compiled_then_on_numba():
    fn = gc.compile(tiered_mlp, target="numba", tiered=True)
    assert fn.tiered and "(tiered)" in repr(fn)
    numpy_fn, numba_fn = gc.compile(tiered_mlp, target="numpy"), gc.compile(tiered_mlp, target="numba")
    args = data()
    first = fn.value_and_grad(**args)
    # the other process takes a second or more to start and compile: this call and the next are numpy's
    assert fn.serving("value_and_grad") == "numpy"
    expected = numpy_fn.value_and_grad(**args)
    assert first[0] == expected[0] and all(np.array_equal(g, e) for g, e in zip(first[1], expected[1]))
    assert fn.wait(timeout=300)
    assert fn.serving("value_and_grad") == "numba" and fn.serving("forward") == "numpy"   # each by itself
    compiled = fn.module._compiled.__dict__["__value_and_grad"]
    # this process loaded what the other compiled: a hit in Numba's cache, no compile here
    assert sum(compiled.stats.cache_hits.values()) == 1 and sum(compiled.stats.cache_misses.values()) == 0
    for seed in (1, 2):
        args = data(seed, batch=5)
        value, grads = fn.value_and_grad(**args)
        ref_value, ref_grads = numba_fn.value_and_grad(**args)
        assert value == pytest.approx(ref_value, rel=1e-12)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)


def test_forward_switches_by_itself_and_a_pickled_function_arrives_untiered():
    fn = gc.compile(tiered_mlp, target="numba", tiered=True)
    args = data(3)
    out = fn.forward(**args)
    assert fn.wait(timeout=300) and fn.serving("forward") == "numba"
    assert fn.forward(**args) == pytest.approx(out, rel=1e-12)
    copy = pickle.loads(pickle.dumps(fn))
    assert not copy.tiered and copy.serving("forward") == "numba"
    assert copy.forward(**args) == pytest.approx(out, rel=1e-12)


def test_a_failed_compilation_is_a_warning_and_the_calls_go_on_on_numpy():
    fn = gc.compile(tiered_mlp, target="numba", tiered=True)

    def broken(*args, **kwargs):
        raise RuntimeError("no machine code today")
    fn.module._compiled = types.SimpleNamespace(value_and_grad=broken)
    args = data(4)
    expected = gc.compile(tiered_mlp, target="numpy").value_and_grad(**args)
    fn.value_and_grad(**args)
    with pytest.warns(RuntimeWarning, match="tiered_mlp.*could not compile value_and_grad.*no machine code today"):
        fn.wait(timeout=300)
    assert fn.serving("value_and_grad") == "numpy"
    assert fn.value_and_grad(**args)[0] == expected[0]


def test_tiered_takes_the_numba_target_and_untiered_functions_answer_plainly():
    with pytest.raises(GraphError, match="the numpy target has nothing to wait for: choose numba"):
        gc.compile(tiered_mlp, target="numpy", tiered=True)
    fn = gc.compile(tiered_mlp, target="numpy")
    assert not fn.tiered and fn.serving() == "numpy" and fn.wait()
    with pytest.raises(GraphError, match="'grad' is not a function"):
        fn.serving("grad")
