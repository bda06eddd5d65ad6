"""NumPy's other elementwise functions (log1p ... arctan2, hypot, sign, mod, clip, logaddexp,
not_equal) against PyTorch in float64: values and gradients on every target, several ops to
a graph (one compile per target). Then attributes given by position, as PyTorch takes them
(gc.leaky_relu(x, 0.1)), and `x == y` / `x != y` as masks."""
import numpy as np
import pytest
import torch

import graphc as gc

N = 8
RTOL = 1e-9


def _inputs():
    """x, y: general values (y away from 0, x/y away from the integers where mod jumps);
    u in (-0.9, 0.9); p in (1.2, 3); c: x's values 0.1 or more from clip's ends -0.5, 0.5."""
    rng = np.random.default_rng(7)
    y = rng.choice([-1.0, 1.0], N) * rng.uniform(0.6, 1.5, N)
    x = y * (rng.integers(-2, 2, N) + rng.uniform(0.1, 0.9, N))
    u = rng.uniform(-0.9, 0.9, N)
    p = rng.uniform(1.2, 3.0, N)
    c = rng.choice([-1.0, 1.0], N) * np.where(rng.random(N) < 0.5, rng.uniform(0.0, 0.4, N), rng.uniform(0.6, 1.5, N))
    return {"x": x, "y": y, "u": u, "p": p, "c": c}


# (graphc, torch) per row of the stacked output, over the inputs x, y, u, p, c
PAIRS = [
    (lambda v: gc.log1p(v["u"]), lambda v: torch.log1p(v["u"])),
    (lambda v: gc.expm1(v["x"]), lambda v: torch.special.expm1(v["x"])),
    (lambda v: gc.log2(v["p"]), lambda v: torch.log2(v["p"])),
    (lambda v: gc.log10(v["p"]), lambda v: torch.log10(v["p"])),
    (lambda v: gc.tan(v["u"]), lambda v: torch.tan(v["u"])),
    (lambda v: gc.sinh(v["x"]), lambda v: torch.sinh(v["x"])),
    (lambda v: gc.cosh(v["x"]), lambda v: torch.cosh(v["x"])),
    (lambda v: gc.arcsin(v["u"]), lambda v: torch.asin(v["u"])),
    (lambda v: gc.arccos(v["u"]), lambda v: torch.acos(v["u"])),
    (lambda v: gc.arctan(v["x"]), lambda v: torch.atan(v["x"])),
    (lambda v: gc.arcsinh(v["x"]), lambda v: torch.asinh(v["x"])),
    (lambda v: gc.arccosh(v["p"]), lambda v: torch.acosh(v["p"])),
    (lambda v: gc.arctanh(v["u"]), lambda v: torch.atanh(v["u"])),
    (lambda v: gc.arctan2(v["x"], v["y"]), lambda v: torch.atan2(v["x"], v["y"])),
    (lambda v: gc.hypot(v["x"], v["y"]), lambda v: torch.hypot(v["x"], v["y"])),
    (lambda v: gc.sign(v["x"]), lambda v: torch.sign(v["x"])),
    (lambda v: gc.mod(v["x"], v["y"]), lambda v: torch.remainder(v["x"], v["y"])),
    (lambda v: gc.clip(v["c"], -0.5, 0.5), lambda v: torch.clamp(v["c"], -0.5, 0.5)),
    (lambda v: gc.logaddexp(v["x"], v["y"]), lambda v: torch.logaddexp(v["x"], v["y"])),
    (lambda v: gc.not_equal(v["x"], gc.sign(v["y"])), lambda v: torch.ne(v["x"], torch.sign(v["y"])).double()),
]


def _graph(pairs, name):
    def model(x: gc.Tensor[N], y: gc.Tensor[N], u: gc.Tensor[N], p: gc.Tensor[N], c: gc.Tensor[N]):
        v = {"x": x, "y": y, "u": u, "p": p, "c": c}
        return gc.stack([ours(v) for ours, _ in pairs])
    return gc.graph(model, name=name)


def _torch(pairs, arrays, seed):
    v = {k: torch.tensor(a, dtype=torch.float64, requires_grad=True) for k, a in arrays.items()}
    out = torch.stack([theirs(v) for _, theirs in pairs])
    if out.requires_grad:   # not the mask alone
        out.backward(torch.tensor(seed))
    return out.detach().numpy(), {k: (t.grad.numpy() if t.grad is not None else np.zeros(N)) for k, t in v.items()}


@pytest.fixture(scope="module")
def inputs():
    return _inputs()


def test_values_and_gradients_match_torch(target, inputs):
    fn = gc.compile(_graph(PAIRS, "more_ops"), target=target)
    seed = np.random.default_rng(3).standard_normal((len(PAIRS), N))
    value, grads = fn.value_and_grad(**inputs, grad_out=seed)
    expected, expected_grads = _torch(PAIRS, inputs, seed)
    for row, (ours, _) in enumerate(PAIRS):
        np.testing.assert_allclose(value[row], expected[row], rtol=RTOL, atol=1e-12, err_msg=f"row {row}")
    for name, g in zip(fn.wrt, grads):
        np.testing.assert_allclose(g, expected_grads[name], rtol=RTOL, atol=1e-12, err_msg=f"d/d{name}")


def test_each_gradient_on_its_own(inputs):
    """Row by row (numpy): a wrong rule cannot hide in the sum over the rows."""
    for row, pair in enumerate(PAIRS):
        fn = gc.compile(_graph([pair], f"more_ops_{row}"))
        seed = np.random.default_rng(row).standard_normal((1, N))
        value, grads = fn.value_and_grad(**inputs, grad_out=seed)
        expected, expected_grads = _torch([pair], inputs, seed)
        np.testing.assert_allclose(value, expected, rtol=RTOL, atol=1e-12, err_msg=f"row {row}")
        for name, g in zip(fn.wrt, grads):
            np.testing.assert_allclose(g, expected_grads[name], rtol=RTOL, atol=1e-12, err_msg=f"row {row} d/d{name}")


def test_logaddexp_and_hypot_are_stable():
    """Far from 0, where exp and squares overflow: the printed forms stay finite."""
    @gc.graph
    def f(a: gc.Tensor[3], b: gc.Tensor[3]):
        return gc.logaddexp(a, b) + gc.hypot(a, b)
    a, b = np.array([1000.0, -1000.0, 1e200]), np.array([1000.0, -999.0, 1e200])
    value, (ga, gb) = gc.compile(f).value_and_grad(a, b, grad_out=np.ones(3))
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    (torch.logaddexp(ta, tb) + torch.hypot(ta, tb)).sum().backward()
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(ga)) and np.all(np.isfinite(gb))
    np.testing.assert_allclose(value, (torch.logaddexp(ta, tb) + torch.hypot(ta, tb)).detach().numpy(), rtol=RTOL)
    np.testing.assert_allclose(ga, ta.grad.numpy(), rtol=RTOL)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=RTOL)


def test_clip_with_graph_bounds_and_open_ends(target, inputs):
    """np.clip's signature: a bound may be a graph value (gradient into it, as torch.clamp
    with tensor bounds), or None for an open end."""
    @gc.graph
    def f(c: gc.Tensor[N], lo: gc.Tensor[N]):
        return gc.stack([gc.clip(c, lo, 0.5), gc.clip(c, None, 0.5), gc.clip(c, -0.5, None)])
    c, lo = inputs["c"], np.full(N, -0.5) + np.linspace(-0.05, 0.05, N)
    seed = np.random.default_rng(4).standard_normal((3, N))
    value, (gc_, glo) = gc.compile(f, target=target).value_and_grad(c, lo, grad_out=seed)
    tc, tlo = torch.tensor(c, requires_grad=True), torch.tensor(lo, requires_grad=True)
    out = torch.stack([torch.clamp(tc, tlo, torch.tensor(0.5, dtype=torch.float64)),
                       torch.clamp(tc, max=0.5), torch.clamp(tc, min=-0.5)])
    out.backward(torch.tensor(seed))
    np.testing.assert_allclose(value, out.detach().numpy(), rtol=RTOL)
    np.testing.assert_allclose(gc_, tc.grad.numpy(), rtol=RTOL)
    np.testing.assert_allclose(glo, tlo.grad.numpy(), rtol=RTOL)
    with pytest.raises(gc.GraphError, match="one of a_min and a_max"):
        gc.graph(lambda x: gc.clip(x, None, None), name="clip_none")


# ---- attributes by position, as PyTorch takes them -------------------------------------------

def test_attributes_by_position(target, inputs):
    @gc.graph
    def f(x: gc.Tensor[N]):
        return gc.stack([gc.leaky_relu(x, 0.1), gc.elu(x, 0.5), gc.leaky_relu(x, alpha=0.3)])
    x = inputs["x"]
    seed = np.random.default_rng(5).standard_normal((3, N))
    value, (gx,) = gc.compile(f, target=target).value_and_grad(x, grad_out=seed)
    tx = torch.tensor(x, requires_grad=True)
    F = torch.nn.functional
    out = torch.stack([F.leaky_relu(tx, 0.1), F.elu(tx, 0.5), F.leaky_relu(tx, negative_slope=0.3)])
    out.backward(torch.tensor(seed))
    np.testing.assert_allclose(value, out.detach().numpy(), rtol=RTOL)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=RTOL)


def test_a_graph_value_in_an_attributes_place_is_an_error():
    with pytest.raises(gc.GraphError, match="leaky_relu: attribute alpha is a static number"):
        gc.graph(lambda x, a: gc.leaky_relu(x, a), name="by_value")
    with pytest.raises(gc.GraphError, match="given by position and by keyword"):
        gc.graph(lambda x: gc.elu(x, 0.5, alpha=0.5), name="twice")
    with pytest.raises(gc.GraphError, match="takes 1 inputs, got 3"):
        gc.graph(lambda x: gc.elu(x, 0.5, 0.7), name="too_many")
    with pytest.raises(gc.GraphError, match="takes 1 inputs, got 2"):
        gc.graph(lambda x: gc.exp(x, 2.0), name="no_attrs")


# ---- x == y and x != y are masks ----------------------------------------------------------------

def test_equality_operators_are_masks(target):
    @gc.graph
    def f(a: gc.Tensor[6], b: gc.Tensor[6]):
        return gc.stack([a != b, a == b, a == 1.0, 1.0 != a])
    a = np.array([0.0, 1.0, -1.0, 1.0, 2.0, 0.0])
    b = np.array([0.0, 1.0, 1.0, -1.0, 2.0, 3.0])
    fn = gc.compile(f, target=target)
    ta, tb = torch.tensor(a), torch.tensor(b)
    expected = torch.stack([torch.ne(ta, tb), torch.eq(ta, tb), torch.eq(ta, 1.0), torch.ne(ta, 1.0)]).double()
    np.testing.assert_array_equal(fn.forward(a, b), expected.numpy())
    grads = fn.backward(a, b, grad_out=np.ones((4, 6)))
    assert all(np.all(np.asarray(g) == 0.0) for g in grads)   # masks pass no gradient


def test_tensors_still_hash_and_compare_by_identity_elsewhere():
    seen = {}

    @gc.graph
    def f(a: gc.Tensor[2], b: gc.Tensor[2]):
        seen[a] = "a"                      # a dict key: hashing by identity
        assert seen[a] == "a" and b not in seen
        assert a in [a] and (a == "a") is False and (a != None) is True  # noqa: E711
        assert isinstance(a == b, gc.Tensor) and isinstance(a != b, gc.Tensor)
        return a + b
    assert f is not None
