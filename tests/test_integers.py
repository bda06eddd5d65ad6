"""Integer inputs (gc.IntTensor) and the ops on them, against PyTorch in float64 on every
target: gathers (x[idx], gc.take along an axis; their gradient accumulates at repeated
indices), one_hot, argmax and argmin, cross-entropy with integer labels, sort with its
gradient routed through the permutation, forward mode through them, float32 modules,
an MLP classifier trained on integer labels, and the clear errors around them.

Numba's compiles dominate: one graph holds every op, and each target compiles it once
per variant (float64, float32, forward mode), plus the MLP."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc.cli.main import main as cli_main
from graphc.cli.sampling import sample_inputs

RTOL = 1e-9


def ops_model(W: gc.Tensor[6, 3], X: gc.Tensor["B", 5], Z: gc.Tensor["B", 6], idx: gc.IntTensor[5],
              cols: gc.IntTensor[2, 3], labels: gc.IntTensor["B"], Gw: gc.Tensor[5, 3],
              Gt: gc.Tensor["B", 2, 3], Gs: gc.Tensor["B", 6]):
    """Every integer op at once: a scalar L (each value projected on a seed G*) to
    differentiate, and the values themselves as further outputs."""
    gathered = W[idx]                               # rows of W, repeated and counted from the end
    taken = gc.take(X, cols, axis=1)                # (B, 2, 3)
    ce = gc.softmax_cross_entropy(X, labels)
    ordered = gc.sort(Z, axis=1)
    masked = gc.sum((labels == 2) * X[:, 0])        # an integer compared: a float mask
    L = gc.sum(Gw * gathered) + gc.sum(Gt * taken) + ce + gc.sum(Gs * ordered) + masked
    return {"L": L, "gathered": gathered, "taken": taken, "onehot": gc.one_hot(labels, 5),
            "amax": gc.argmax(X, axis=1), "amin": gc.argmin(X, axis=0), "flat": gc.argmax(X),
            "ce": ce, "sorted": ordered, "picked": X[:, idx]}


OPS = gc.graph(ops_model, wrt=("W", "X", "Z"))


def ops_inputs(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4, 5))
    X[1, 1] = X[1, 3] = 3.0        # a tie for argmax: the first wins
    X[2, 0] = X[3, 0] = -3.0       # and for argmin along axis 0
    Z = rng.integers(0, 3, (4, 6)).astype(np.float64)   # ties: a stable sort keeps their order
    Z[0] = rng.standard_normal(6)
    return {"W": rng.standard_normal((6, 3)), "X": X, "Z": Z,
            "idx": np.array([1, 4, 1, -1, 1]), "cols": np.array([[0, 4, 4], [-2, 1, 0]]),
            "labels": np.array([2, 0, 4, 2]), "Gw": rng.standard_normal((5, 3)),
            "Gt": rng.standard_normal((4, 2, 3)), "Gs": rng.standard_normal((4, 6))}


def torch_ops(v):
    """The same values and dL/d(W, X, Z) by PyTorch."""
    t = {k: torch.tensor(a, requires_grad=k in ("W", "X", "Z")) for k, a in v.items()}
    W, X, Z, idx, cols, labels = (t[k] for k in ("W", "X", "Z", "idx", "cols", "labels"))
    gathered = torch.index_select(W, 0, idx % 6)
    taken = X[:, cols]
    ce = F.cross_entropy(X, labels)
    ordered = torch.sort(Z, dim=1, stable=True).values
    masked = ((labels == 2).double() * X[:, 0]).sum()
    L = (t["Gw"] * gathered).sum() + (t["Gt"] * taken).sum() + ce + (t["Gs"] * ordered).sum() + masked
    L.backward()
    out = {"L": L, "gathered": gathered, "taken": taken, "onehot": F.one_hot(labels, 5).double(),
           "amax": torch.argmax(X, dim=1), "amin": torch.argmin(X, dim=0), "flat": torch.argmax(X),
           "ce": ce, "sorted": ordered, "picked": X[:, idx % 5]}
    return {k: o.detach().numpy() for k, o in out.items()}, [t[k].grad.numpy() for k in ("W", "X", "Z")]


@pytest.fixture(scope="module")
def compiled_ops():
    cache = {}

    def get(target, dtype="float64"):
        if (target, dtype) not in cache:
            cache[target, dtype] = gc.compile(OPS, target=target, dtype=dtype)
        return cache[target, dtype]
    return get


def test_every_op_matches_torch(target, compiled_ops):
    fn = compiled_ops(target)
    assert fn.wrt == ("W", "X", "Z")
    v = ops_inputs()
    values, grads = fn.value_and_grad(**v)
    expected, expected_grads = torch_ops(v)
    assert set(values) == set(expected)
    for name, want in expected.items():
        got = values[name]
        assert np.shape(got) == np.shape(want), name
        if want.dtype.kind == "i":   # argmax and argmin: exact, and integers
            assert np.asarray(got).dtype == np.int64, name
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-12, err_msg=name)
    assert isinstance(values["flat"], int)
    for name, g, want in zip(fn.wrt, grads, expected_grads):
        np.testing.assert_allclose(g, want, rtol=RTOL, atol=1e-12, err_msg=f"dL/d{name}")
    # the repeated row 1 of W collects three seeds' rows; a stable sort's tied entries keep their places
    np.testing.assert_allclose(grads[0][1], v["Gw"][[0, 2, 4]].sum(axis=0), rtol=RTOL)


def test_float32_module_keeps_integers_int64(target, compiled_ops):
    fn = compiled_ops(target, "float32")
    v = ops_inputs(1)
    values, grads = fn.value_and_grad(**v)
    expected, expected_grads = torch_ops(v)
    for name, want in expected.items():
        got = np.asarray(values[name])
        assert got.dtype == (np.int64 if want.dtype.kind == "i" else np.float32), (name, got.dtype)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
    for name, g, want in zip(fn.wrt, grads, expected_grads):
        assert np.asarray(g).dtype == np.float32
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5, err_msg=f"dL/d{name}")
    if target != "numpy":   # the compiled code types the indices int64, not the module's float32
        assert "int64" in fn.source


def test_forward_mode_through_the_gathers(target):
    """gc.jvp: the tangent of a gather is the gather of the tangent, of sort the tangent
    permuted as the values are; integer outputs get a zero tangent."""
    g = gc.jvp(OPS, wrt=["W", "X", "Z"])
    fn = gc.compile(g, target=target)
    v = ops_inputs(2)
    rng = np.random.default_rng(5)
    tangents = {f"tangent_{k}": rng.standard_normal(v[k].shape) for k in ("W", "X", "Z")}
    out = dict(zip(fn.outputs, fn.forward(**v, **tangents)))
    primals = [torch.tensor(v[k]) for k in ("W", "X", "Z")]
    for name in ("L", "gathered", "taken", "sorted", "picked", "ce"):
        def f(W, X, Z, name=name):
            return _torch_value(name, {**v, "W": W, "X": X, "Z": Z})
        _, want = torch.autograd.functional.jvp(f, tuple(primals), tuple(torch.tensor(tangents[f"tangent_{k}"])
                                                                        for k in "WXZ"))
        np.testing.assert_allclose(out[f"tangent_{name}"], want.numpy(), rtol=RTOL, atol=1e-12, err_msg=name)
    for name in ("amax", "amin", "flat", "onehot"):
        assert np.all(np.asarray(out[f"tangent_{name}"]) == 0), name


@pytest.mark.parametrize("target", ["numpy", "cuda"])   # numba prints the same ops for the tests above
def test_hessian_through_gathers_sort_and_labels(target):
    """Forward over reverse: the tangents of take's scatter-add, of unsort and of the
    cross-entropy's rule, a whole basis at once (a batch of tangents)."""
    @gc.graph(wrt="W")
    def f(W: gc.Tensor[4, 2], idx: gc.IntTensor[3], y: gc.IntTensor[3], G: gc.Tensor[3, 2]):
        picked = W[idx]
        return gc.sum(G * gc.sin(gc.sort(picked, axis=0))) + gc.softmax_cross_entropy(picked * picked, y)

    rng = np.random.default_rng(4)
    W, G = rng.standard_normal((4, 2)), rng.standard_normal((3, 2))
    idx, y = np.array([1, 3, 1]), np.array([0, 1, 1])   # row 1 twice: tied in the sort
    got = gc.compile(gc.hessian(f), target=target).forward(W, idx, y, G)

    def loss(W):
        picked = W[torch.tensor(idx)]
        return ((torch.tensor(G) * torch.sin(torch.sort(picked, dim=0, stable=True).values)).sum()
                + F.cross_entropy(picked * picked, torch.tensor(y)))
    want = torch.autograd.functional.hessian(loss, torch.tensor(W)).numpy()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-12)


def _torch_value(name, t):
    """One value of ops_model by PyTorch, differentiable in W, X, Z (for its jvp)."""
    idx, cols, labels = (torch.tensor(t[k]) for k in ("idx", "cols", "labels"))
    W, X, Z = t["W"], t["X"], t["Z"]
    parts = {"gathered": lambda: torch.index_select(W, 0, idx % 6), "taken": lambda: X[:, cols],
             "ce": lambda: F.cross_entropy(X, labels), "picked": lambda: X[:, idx % 5],
             "sorted": lambda: torch.sort(Z, dim=1, stable=True).values}
    if name != "L":
        return parts[name]()
    G = {k: torch.tensor(t[k]) for k in ("Gw", "Gt", "Gs")}
    return ((G["Gw"] * parts["gathered"]()).sum() + (G["Gt"] * parts["taken"]()).sum() + parts["ce"]()
            + (G["Gs"] * parts["sorted"]()).sum() + ((labels == 2).double() * X[:, 0]).sum())


# ---- an MLP classifier on integer labels ------------------------------------------------------

@gc.graph(wrt=("W1", "b1", "W2", "b2"))
def classifier(x: gc.Tensor["B", 4], y: gc.IntTensor["B"], W1: gc.Tensor[8, 4], b1: gc.Tensor[8],
               W2: gc.Tensor[3, 8], b2: gc.Tensor[3]):
    logits = gc.linear(gc.tanh(gc.linear(x, W1, b1)), W2, b2)
    accuracy = gc.mean(gc.argmax(logits, axis=1) == y)
    return gc.softmax_cross_entropy(logits, y), accuracy


def test_mlp_classifier_trains_as_torch(target):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 4))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)   # three classes
    params = {"W1": 0.5 * rng.standard_normal((8, 4)), "b1": np.zeros(8),
              "W2": 0.5 * rng.standard_normal((3, 8)), "b2": np.zeros(3)}
    torch_params = {k: torch.tensor(p, requires_grad=True) for k, p in params.items()}
    opt = torch.optim.SGD(list(torch_params.values()), lr=0.5)
    fn = gc.compile(classifier, target=target)
    ours = gc.optim.SGD(lr=0.5)
    for step in range(4):
        (loss, accuracy), grads = fn.value_and_grad(x, y, **params)
        opt.zero_grad()
        W1, b1, W2, b2 = torch_params.values()
        logits = torch.tanh(torch.tensor(x) @ W1.T + b1) @ W2.T + b2
        expected = F.cross_entropy(logits, torch.tensor(y))
        expected.backward()
        assert loss == pytest.approx(expected.item(), rel=RTOL)
        assert accuracy == pytest.approx((logits.argmax(dim=1).numpy() == y).mean(), rel=RTOL)
        for name, g in zip(fn.wrt, grads):
            np.testing.assert_allclose(g, torch_params[name].grad.numpy(), rtol=RTOL, atol=1e-12, err_msg=name)
        opt.step()
        ours.step(params, dict(zip(fn.wrt, grads)))
    for name, p in params.items():
        np.testing.assert_allclose(p, torch_params[name].detach().numpy(), rtol=RTOL, atol=1e-12)
    assert loss < 0.9 * np.log(3)


# ---- errors and the runtime ----------------------------------------------------------------

def test_the_runtime_takes_integers_only_and_in_range():
    fn = gc.compile(OPS)   # numpy
    v = ops_inputs()
    with pytest.raises(gc.GraphError, match=r"input 'idx' is declared gc.IntTensor \(int64\): it takes "
                                            r"integers, got float64 values"):
        fn.forward(**{**v, "idx": v["idx"].astype(np.float64)})   # whole numbers, but floats
    with pytest.raises(gc.GraphError, match="input 'labels' .* got bool"):
        fn.forward(**{**v, "labels": np.array([True, False, True, True])})
    with pytest.raises(gc.GraphError, match=r"input 'idx' indexes an axis of size 5: its values lie in "
                                            r"\[-5, 5\), got 6"):
        fn.forward(**{**v, "idx": np.array([1, 6, 1, 1, 1])})
    with pytest.raises(gc.GraphError, match=r"input 'cols' indexes an axis of size 5: .* got -6"):
        fn.forward(**{**v, "cols": np.array([[0, 1, 2], [-6, 1, 0]])})
    # an int32 or uint8 array is an integer array: converted to int64; a Python list of ints too
    values = fn.forward(**{**v, "idx": v["idx"].astype(np.int32), "labels": list(v["labels"])})
    np.testing.assert_allclose(values["gathered"], v["W"][v["idx"]])


def test_a_label_out_of_range_masks_its_example():
    """one_hot of an index outside [0, n) is a row of zeros: with softmax_cross_entropy, an
    example that contributes nothing (and gets no gradient), as a float row of zeros does."""
    @gc.graph
    def ce(logits: gc.Tensor[3, 4], y: gc.IntTensor[3]):
        return gc.softmax_cross_entropy(logits, y)

    logits = np.random.default_rng(0).standard_normal((3, 4))
    value, (g,) = gc.compile(ce).value_and_grad(logits, np.array([1, -1, 3]))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert value == pytest.approx(-(np.log(p[0, 1]) + np.log(p[2, 3])) / 3, rel=1e-12)
    np.testing.assert_array_equal(g[1], 0.0)


def test_integers_are_never_differentiated():
    @gc.graph
    def f(x: gc.Tensor[4], k: gc.IntTensor[2]):
        return gc.sum(x[k])

    assert f.default_wrt() == ("x",)
    assert gc.grad(f).output_names == ("grad_x",)
    assert gc.jvp(f).input_names == ("x", "k", "tangent_x")
    assert gc.compile(f).wrt == ("x",)
    for transform in (gc.grad, gc.jvp, gc.jacobian, gc.hessian):
        with pytest.raises(gc.GraphError, match="cannot differentiate with respect to 'k': an integer input "
                                                r"\(gc.IntTensor\) has no gradient"):
            transform(f, wrt=["x", "k"])
    with pytest.raises(gc.GraphError, match="'k': an integer input"):
        gc.compile(f, wrt="k")
    jac = gc.compile(gc.jacobian(f))   # jacobian and hessian skip k
    np.testing.assert_allclose(jac.forward(np.arange(4.0), np.array([1, 1])), [0.0, 2.0, 0.0, 0.0])


@pytest.mark.parametrize("build, message", [
    (lambda x, k: k + 1.0, r"add with input shapes k \(3,\), \(\): input 0 \(k\) holds integers \(int64\), "
                           r"and add takes floats: compare integers"),
    (lambda x, k: gc.exp(k), r"exp with input shapes k \(3,\): input 0 \(k\) holds integers"),
    (lambda x, k: gc.sum(k), r"sum with input shapes k \(3,\): input 0 \(k\) holds integers"),
    (lambda x, k: gc.concatenate([x, k]), r"concatenate with input shapes x \(3,\), k \(3,\): mixes integer and float"),
    (lambda x, k: x[x], r"take: the indices \(3,\) are floats; declare them gc.IntTensor"),
    (lambda x, k: gc.one_hot(x, 3), r"one_hot: the indices \(3,\) are floats"),
    (lambda x, k: gc.one_hot(k, 0), r"one_hot: n is the number of classes, a positive int; got 0"),
    (lambda x, k: x[k, 0], r"indexing \(3,\) with a graph value: index one axis with it"),
    (lambda x, k: gc.take(x, k, axis=1), r"take: axis 1 is out of range for shape \(3,\)"),
    (lambda x, k: gc.softmax_cross_entropy(gc.reshape(x, (1, 3)), k),
     r"integer labels have shape \(3,\); logits of shape \(1, 3\) need one per row, shape \(1,\)"),
    (lambda x, k: gc.sort(gc.sum(x)), r"sort of a scalar"),
])
def test_clear_errors_while_tracing(build, message):
    def model(x: gc.Tensor[3], k: gc.IntTensor[3]):
        return build(x, k)
    with pytest.raises(gc.GraphError, match=message):
        gc.graph(model)


def test_integer_values_move_and_compare():
    """Reshapes, indexing, transposes and broadcasts keep an integer an integer; a
    comparison of integers is a float mask."""
    @gc.graph
    def f(x: gc.Tensor[2, 3], k: gc.IntTensor[3, 2]):
        moved = gc.broadcast_to(k.T.reshape(6)[1:5], (2, 4))
        return gc.sum(x * (k.T == 1)), moved, gc.concatenate([k[0], k[1]]), gc.stop_gradient(k)

    assert [n.dtype for _, n in f.outputs] == ["float", "int", "int", "int"]
    fn = gc.compile(f)
    k = np.array([[0, 1], [1, 2], [1, 0]])
    (value, moved, joined, same), (g,) = fn.value_and_grad(np.ones((2, 3)), k)
    assert value == 3.0 and moved.dtype == joined.dtype == same.dtype == np.int64
    np.testing.assert_array_equal(moved, np.broadcast_to(k.T.reshape(6)[1:5], (2, 4)))
    np.testing.assert_array_equal(g, (k.T == 1).astype(float))


def test_check_samples_indices_in_range(tmp_path, capsys):
    """graphc check draws an integer input in [0, n) where it indexes an axis of size n."""
    shapes = {"B": 7}
    inputs = sample_inputs(OPS, np.random.default_rng(0), shapes)
    assert inputs["idx"].dtype.kind == "i" and inputs["idx"].min() >= 0 and inputs["idx"].max() < 5
    assert inputs["cols"].max() < 5 and inputs["labels"].max() < 5 and inputs["labels"].shape == (7,)
    model = tmp_path / "model.py"
    model.write_text("import graphc as gc\n\n\n@gc.graph\n"
                     "def pick(W: gc.Tensor[6, 3], idx: gc.IntTensor['B'], k: gc.IntTensor[2]):\n"
                     "    return gc.sum(gc.sin(W[idx])) + gc.sum(k == 1) * gc.sum(W)\n")
    assert cli_main(["check", str(model)]) == 0
    out = capsys.readouterr().out
    assert "idx: integers in [0, 6)" in out and "k: integers in [0, 5)" in out and "ok" in out
