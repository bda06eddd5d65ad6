"""NumPy's array operations (graph/arrays.py, graph/contract.py) against PyTorch in float64:
min, prod, var, std, cumsum, split, repeat, tile, pad, roll, moveaxis, swapaxes, diagonal,
trace, tril, triu, gelu, einsum, tensordot. Every op's value and gradient on every target,
all of them in one graph (one compile per target: Numba's compiles are what cost); its
tangent (gc.jvp) against central differences; then each op on its own (numpy), prod's
gradient at zeros, the argument errors, and erf where SciPy is missing."""
import inspect
import sys

import numpy as np
import pytest
import torch

import graphc as gc

F = torch.nn.functional
RTOL = 1e-9
SHAPES = {"x": (3, 4), "y": (4, 5), "s": (3, 3), "t": (2, 3, 4), "u": (2, 4, 5), "w": (3, 4, 2),
          "z": (3, 4), "v": (4,)}


def _inputs():
    """Values in (-1.5, 1.5) (no ties: min routes to one entry); z holds zeros for prod, a row
    with one, a row with two and a row with none."""
    rng = np.random.default_rng(11)
    out = {k: rng.uniform(-1.5, 1.5, shape) for k, shape in SHAPES.items()}
    out["z"][0, 1] = out["z"][1, 0] = out["z"][1, 3] = 0.0
    return out


# (graphc, torch) per entry, over the inputs by name; an entry may give a list (split)
PAIRS = [
    (lambda v: gc.min(v["x"], axis=1), lambda v: torch.amin(v["x"], 1)),
    (lambda v: gc.min(v["t"], (0, 2), keepdims=True), lambda v: torch.amin(v["t"], (0, 2), keepdim=True)),
    (lambda v: gc.prod(v["x"]), lambda v: torch.prod(v["x"])),
    (lambda v: gc.prod(v["z"], axis=1), lambda v: torch.prod(v["z"], 1)),
    (lambda v: gc.prod(v["t"], axis=(0, 2), keepdims=True),
     lambda v: torch.prod(torch.prod(v["t"], 2, keepdim=True), 0, keepdim=True)),
    (lambda v: gc.var(v["x"]), lambda v: torch.var(v["x"], correction=0)),
    (lambda v: gc.var(v["t"], axis=(0, 2), ddof=1, keepdims=True),
     lambda v: torch.var(v["t"], (0, 2), correction=1, keepdim=True)),
    (lambda v: gc.std(v["x"], axis=0, ddof=1), lambda v: torch.std(v["x"], 0, correction=1)),
    (lambda v: gc.std(v["t"], axis=-1), lambda v: torch.std(v["t"], -1, correction=0)),
    (lambda v: gc.cumsum(v["t"]), lambda v: torch.cumsum(v["t"].reshape(-1), 0)),
    (lambda v: gc.cumsum(v["t"], axis=1), lambda v: torch.cumsum(v["t"], 1)),
    (lambda v: gc.cumsum(v["x"], axis=-1), lambda v: torch.cumsum(v["x"], -1)),
    (lambda v: gc.split(v["x"], 2, axis=1), lambda v: torch.tensor_split(v["x"], 2, dim=1)),
    (lambda v: gc.split(v["t"], [1, 3], axis=2), lambda v: torch.tensor_split(v["t"], [1, 3], dim=2)),
    (lambda v: gc.repeat(v["x"], 2, axis=0), lambda v: torch.repeat_interleave(v["x"], 2, dim=0)),
    (lambda v: gc.repeat(v["x"], 3), lambda v: torch.repeat_interleave(v["x"], 3)),
    (lambda v: gc.repeat(v["x"], [2, 0, 1, 1], axis=1),
     lambda v: torch.repeat_interleave(v["x"], torch.tensor([2, 0, 1, 1]), dim=1)),
    (lambda v: gc.tile(v["x"], (2, 1, 3)), lambda v: torch.tile(v["x"], (2, 1, 3))),
    (lambda v: gc.tile(v["v"], 2), lambda v: torch.tile(v["v"], (2,))),
    (lambda v: gc.pad(v["x"], ((1, 0), (2, 1)), constant_values=0.5), lambda v: F.pad(v["x"], (2, 1, 1, 0), value=0.5)),
    (lambda v: gc.pad(v["t"], 1), lambda v: F.pad(v["t"], (1, 1) * 3)),
    (lambda v: gc.roll(v["x"], 1, axis=1), lambda v: torch.roll(v["x"], 1, 1)),
    (lambda v: gc.roll(v["t"], 5), lambda v: torch.roll(v["t"], 5)),
    (lambda v: gc.roll(v["t"], (1, -2), (0, 2)), lambda v: torch.roll(v["t"], (1, -2), (0, 2))),
    (lambda v: gc.moveaxis(v["t"], 0, -1), lambda v: torch.movedim(v["t"], 0, -1)),
    (lambda v: gc.moveaxis(v["t"], (0, 1), (2, 0)), lambda v: torch.movedim(v["t"], (0, 1), (2, 0))),
    (lambda v: gc.swapaxes(v["t"], 0, 2), lambda v: torch.swapaxes(v["t"], 0, 2)),
    (lambda v: gc.diagonal(v["x"], 1), lambda v: torch.diagonal(v["x"], 1)),
    (lambda v: gc.diagonal(v["t"], -1, 2, 1), lambda v: torch.diagonal(v["t"], -1, 2, 1)),
    (lambda v: gc.trace(v["s"]), lambda v: torch.trace(v["s"])),
    (lambda v: gc.trace(v["t"], 1, 1, 2), lambda v: torch.diagonal(v["t"], 1, 1, 2).sum(-1)),
    (lambda v: gc.tril(v["x"]), lambda v: torch.tril(v["x"])),
    (lambda v: gc.tril(v["t"], -1), lambda v: torch.tril(v["t"], -1)),
    (lambda v: gc.triu(v["x"], 1), lambda v: torch.triu(v["x"], 1)),
    (lambda v: gc.gelu(v["x"]), lambda v: F.gelu(v["x"])),
    (lambda v: gc.gelu(v["t"], approximate="tanh"), lambda v: F.gelu(v["t"], approximate="tanh")),
    (lambda v: gc.tensordot(v["t"], v["w"]), lambda v: torch.tensordot(v["t"], v["w"], 2)),
    (lambda v: gc.tensordot(v["t"], v["u"], axes=([0, 2], [0, 1])),
     lambda v: torch.tensordot(v["t"], v["u"], dims=([0, 2], [0, 1]))),
    (lambda v: gc.tensordot(v["x"], v["y"], 1), lambda v: torch.tensordot(v["x"], v["y"], 1)),
]
EINSUM = [   # (subscripts, operands)
    ("ij,jk->ik", "xy"), ("ii->i", "s"), ("ii", "s"), ("bij,bjk->bik", "tu"), ("i,j->ij", "vv"),
    ("ijk->kj", "t"), ("ij,ij->", "xz"), ("ij,jk", "xy"), ("ij,jk,bij->bk", "xyt"), ("bij,bik->jk", "tt"),
]
PAIRS += [(lambda v, e=e, ops=ops: gc.einsum(e, *(v[k] for k in ops)),
           lambda v, e=e, ops=ops: torch.einsum(e, *(v[k] for k in ops))) for e, ops in EINSUM]


# Numba's compile time is a few seconds per entry (every entry above in one graph: over 3
# minutes), so the compiled targets take every op once, in its cheapest form here (its printers
# are the primitives'; the other forms are checked on numpy): prod of all of x, with an odd
# length on the way; einsum's diagonal and broadcast-product paths and, by tensordot, its matmul.
COMPILED = [PAIRS[k] for k in (0, 2, 5, 8, 11, 12, 15, 18, 19, 22, 24, 26, 27, 29, 31, 33, 34, 35, 38, 40, 43)]


def _flat(results, cat, reshape):
    """Every result (or each piece of a list of them) flattened, joined into one vector."""
    parts = []
    for r in results:
        parts += [reshape(p) for p in (r if isinstance(r, (list, tuple)) else [r])]
    return cat(parts)


def _graph(pairs, name):
    params = [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gc.Tensor[shape])
              for k, shape in SHAPES.items()]

    def model(*tensors):
        v = dict(zip(SHAPES, tensors))
        return _flat([ours(v) for ours, _ in pairs], gc.concatenate, lambda p: gc.reshape(p, (-1,)))
    model.__signature__ = inspect.Signature(params)
    return gc.graph(model, name=name)


def _torch(pairs, arrays, seed=None):
    v = {k: torch.tensor(a, dtype=torch.float64, requires_grad=True) for k, a in arrays.items()}
    out = _flat([theirs(v) for _, theirs in pairs], torch.cat, lambda p: p.reshape(-1))
    if seed is not None:
        out.backward(torch.tensor(seed))
    grads = {k: (t.grad.numpy() if t.grad is not None else np.zeros(t.shape)) for k, t in v.items()}
    return out.detach().numpy(), grads


@pytest.fixture(scope="module")
def inputs():
    return _inputs()


def _check(fn, pairs, inputs, seed_rng):
    expected, _ = _torch(pairs, inputs)
    seed = np.random.default_rng(seed_rng).standard_normal(expected.shape)
    value, grads = fn.value_and_grad(**inputs, grad_out=seed)
    expected, expected_grads = _torch(pairs, inputs, seed)
    np.testing.assert_allclose(value, expected, rtol=RTOL, atol=1e-12)
    for name, g in zip(fn.wrt, grads):
        np.testing.assert_allclose(g, expected_grads[name], rtol=RTOL, atol=1e-12, err_msg=f"d/d{name}")


def test_every_entry_matches_torch(inputs):
    """Values and gradients of every entry, in one graph (numpy)."""
    _check(gc.compile(_graph(PAIRS, "array_ops")), PAIRS, inputs, 3)


def test_values_and_gradients_match_torch(target, inputs):
    """Every op on every target."""
    _check(gc.compile(_graph(COMPILED, "array_ops_compiled"), target=target), COMPILED, inputs, 4)


def test_each_op_on_its_own(inputs):
    """Entry by entry (numpy): a wrong rule cannot hide in the sum over the entries."""
    for k, pair in enumerate(PAIRS):
        try:
            _check(gc.compile(_graph([pair], f"array_op_{k}")), [pair], inputs, k)
        except AssertionError as e:
            raise AssertionError(f"entry {k} ({inspect.getsource(pair[0]).strip()}): {e}") from None


@pytest.mark.parametrize("jvp_target, pairs", [("numpy", PAIRS), ("cuda", COMPILED)], ids=["numpy", "cuda"])
def test_jvp_matches_central_differences(jvp_target, pairs, inputs):
    """gc.jvp through every op: the tangent against central differences of PyTorch's values
    along a random direction (numpy: every entry; cuda: each op once)."""
    fn = gc.compile(gc.jvp(_graph(pairs, f"array_ops_{len(pairs)}")), target=jvp_target)
    rng = np.random.default_rng(5)
    tangents = {k: rng.standard_normal(a.shape) for k, a in inputs.items()}
    value, tangent = fn.forward(*inputs.values(), *tangents.values())
    h = 1e-6
    moved = lambda s: _torch(pairs, {k: a + s * tangents[k] for k, a in inputs.items()})[0]  # noqa: E731
    np.testing.assert_allclose(value, moved(0.0), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(tangent, (moved(h) - moved(-h)) / (2 * h), rtol=1e-6, atol=1e-7)


# ---- prod at zeros, split, gelu on scalars --------------------------------------------------------

def test_prod_gradient_is_exact_at_zeros():
    """No division: the product of the others, also where one or two entries are 0."""
    @gc.graph
    def f(z: gc.Tensor[4, 5]):
        return gc.prod(z, axis=1)
    z = np.array([[0.0, 2.0, 3.0, -1.0, 0.5], [0.0, 0.0, 2.0, 1.0, 1.0], [1.5, 2.0, -0.5, 3.0, 2.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0]])
    value, (g,) = gc.compile(f).value_and_grad(z, grad_out=np.ones(4))
    tz = torch.tensor(z, requires_grad=True)
    torch.prod(tz, 1).sum().backward()
    np.testing.assert_array_equal(value, np.prod(z, axis=1))
    np.testing.assert_allclose(g, tz.grad.numpy(), rtol=1e-15, atol=0)
    assert g[0, 0] == 2.0 * 3.0 * -1.0 * 0.5 and np.all(g[1, 2:] == 0.0) and np.all(g[3] == 0.0)


def test_split_returns_a_list_of_numpys_pieces():
    x = np.arange(24.0).reshape(4, 6)
    for args in [(3, 1), ([1, 4], 1), ([2], 0), ([-2, 5], 1), (1, 0)]:
        expected = np.split(x, *args)

        def f(x: gc.Tensor[4, 6]):
            pieces = gc.split(x, *args)
            assert isinstance(pieces, list) and len(pieces) == len(expected)
            return gc.concatenate([gc.reshape(p, (-1,)) for p in pieces])
        got = gc.compile(gc.graph(f, name="split")).forward(x)
        np.testing.assert_array_equal(got, np.concatenate([p.ravel() for p in expected]))


def test_gelu_on_the_math_target_matches_torch():
    @gc.graph
    def f(a):
        return gc.gelu(a) + 2.0 * gc.gelu(a, approximate="tanh")
    fn = gc.compile(f, target="math")
    assert "math.erf(" in fn.source
    for a in (-2.5, -0.3, 0.0, 0.7, 3.0):
        ta = torch.tensor(a, dtype=torch.float64, requires_grad=True)
        out = F.gelu(ta) + 2.0 * F.gelu(ta, approximate="tanh")
        out.backward()
        value, (g,) = fn.value_and_grad(a)
        assert value == pytest.approx(out.item(), rel=RTOL, abs=1e-15)
        assert g == pytest.approx(ta.grad.item(), rel=RTOL)


def test_the_numpy_module_computes_erf_without_scipy(monkeypatch, inputs):
    """SciPy is optional: without it, the module's __erf is math.erf element by element."""
    @gc.graph
    def f(x: gc.Tensor[3, 4]):
        return gc.gelu(x)
    fn = gc.compile(f)
    expected_value, expected_grads = fn.value_and_grad(inputs["x"], grad_out=np.ones((3, 4)))
    for dtype in ("float64", "float32"):
        monkeypatch.setitem(sys.modules, "scipy.special", None)   # import scipy.special fails
        namespace = {}
        exec(compile(gc.compile(f, dtype=dtype).source, "gelu_module", "exec"), namespace)  # noqa: S102
        monkeypatch.undo()
        assert not isinstance(namespace["__erf"], np.ufunc)   # not SciPy's
        value, (g,) = namespace["value_and_grad"](inputs["x"].astype(dtype), grad_out=np.ones((3, 4), dtype))
        assert value.dtype == dtype and g.dtype == dtype
        tol = 1e-14 if dtype == "float64" else 1e-6
        np.testing.assert_allclose(value, expected_value, rtol=tol, atol=tol)
        np.testing.assert_allclose(g, expected_grads[0], rtol=tol, atol=tol)


def test_diagrams_evaluate_gelu_and_its_gradient(inputs):
    """The diagrams' NumPy interpreter prints erf as the numpy target does (__erf)."""
    from graphc.diagrams.evaluate import Evaluation

    @gc.graph
    def f(x: gc.Tensor[3, 4]):
        return gc.sum(gc.gelu(x) * x)
    evaluation = Evaluation(f, {"x": inputs["x"]})
    tx = torch.tensor(inputs["x"], requires_grad=True)
    (F.gelu(tx) * tx).sum().backward()
    np.testing.assert_allclose(evaluation.grad(f.inputs[0]), tx.grad.numpy(), rtol=RTOL)


# ---- argument errors -------------------------------------------------------------------------------

ERRORS = [
    (lambda x: gc.min(x, axis=2), r"axis 2 is out of range for shape \(3, 4\)"),
    (lambda x: gc.var(x, ddof=12), r"var of shape \(3, 4\): ddof=12 leaves no degrees of freedom"),
    (lambda x: gc.var(x, ddof=-1), "ddof must be a number 0 or more"),
    (lambda x: gc.cumsum(x, axis=-3), r"cumsum of shape \(3, 4\): axis -3 is out of range"),
    (lambda x: gc.split(x, 3, axis=1), r"split of shape \(3, 4\): 3 sections do not divide axis 1 of size 4"),
    (lambda x: gc.split(x, "2"), "indices_or_sections must be an int or a sequence"),
    (lambda x: gc.repeat(x, -1), "repeats must be 0 or more, got -1"),
    (lambda x: gc.repeat(x, [1, 2], axis=1), r"2 repeats for the 4 entries of axis 1"),
    (lambda x: gc.tile(x, 1.5), "reps must be an int, got 1.5"),
    (lambda x: gc.pad(x, ((1, 2), (3, 4), (5, 6))), r"pad_width .* does not give one \(before, after\) pair per axis"),
    (lambda x: gc.pad(x, -1), "pad_width cannot be negative"),
    (lambda x: gc.pad(x, 1, mode="reflect"), "only mode 'constant' is supported, got 'reflect'"),
    (lambda x: gc.roll(x, (1, 2, 3), (0, 1)), "shift .* and axis .* do not broadcast together"),
    (lambda x: gc.moveaxis(x, (0, 1), 0), "source .* and destination .* differ in length"),
    (lambda x: gc.swapaxes(x, 0, 5), "swapaxes of shape .*: axis 5 is out of range"),
    (lambda x: gc.diagonal(x, 0, 1, -1), r"axis1 and axis2 are the same axis \(1\)"),
    (lambda x: gc.trace(gc.sum(x, 0)), r"diagonal of shape \(4,\): needs at least 2 axes"),
    (lambda x: gc.tril(x, 0.5), "k must be an int, got 0.5"),
    (lambda x: gc.gelu(x, approximate="erf"), "approximate must be 'none' or 'tanh'"),
    (lambda x: gc.einsum("ij,jk->ik", x), r"subscripts 'ij,jk->ik' name 2 operands, got 1"),
    (lambda x: gc.einsum("ijk", x), r"operand 0 of shape \(3, 4\) has 2 axes, its subscripts 'ijk' 3"),
    (lambda x: gc.einsum("ij,ij->i", x, x.T), r"index 'i' has size 3 in one place and 4 in operand 1"),
    (lambda x: gc.einsum("...j->j", x), "an ellipsis"),
    (lambda x: gc.einsum("ij->k", x), "the output's indices must be distinct indices of the operands"),
    (lambda x: gc.einsum("i1", x), "indices are letters"),
    (lambda x: gc.tensordot(x, x, 3), r"tensordot of shapes \(3, 4\) and \(3, 4\): axes=3 is not between 0 and 2"),
    (lambda x: gc.tensordot(x, x, (0, 1)), r"axis 0 \(3\) and axis 1 \(4\) differ"),
    (lambda x: gc.tensordot(x, x, ([0, 0], [1, 1])), "must name as many distinct axes"),
]


@pytest.mark.parametrize("k", range(len(ERRORS)))
def test_argument_errors_are_clear(k):
    build, message = ERRORS[k]
    def f(x: gc.Tensor[3, 4]):
        return build(x)
    with pytest.raises(gc.GraphError, match=message) as e:
        gc.graph(f, name="bad_arguments")
    assert "graph 'bad_arguments'" in str(e.value)


def test_slicing_ops_name_a_symbolic_axis():
    with pytest.raises(gc.GraphError, match=r"roll of shape \(B, 4\): axis 0 has the symbolic size B"):
        @gc.graph
        def f(x: gc.Tensor["B", 4]):
            return gc.roll(x, 1, axis=0)
