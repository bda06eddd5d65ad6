"""The lecture's sigmoid neuron, value and gradient per call from Python, and batched.

    python bench/neuron.py [--target numpy] [--quick] [--peers torch,jax]

f = sigmoid(w0*x0 + w1*x1 + w2) at the lecture's point (w = 2, -3, -3; x = -1, -2), value and
all five gradients per call:
- graphc: fn.value_and_grad of the compiled neuron (argument checks included), and the
  generated module's value_and_grad called directly (fn.module.value_and_grad);
- flat Python by hand with the math module, and the same function compiled with @numba.njit;
- a micrograd-style scalar autograd (a Value class with +, *, sigmoid, backward by
  topological sort), defined in this script;
- PyTorch eager and JAX jit, each in a fresh subprocess (skipped with a note when not
  installed).
Batched: the same formulas over 1,000,000 examples as float64 arrays of shape (N,), graphc's
compiled scalar neuron called with arrays (once per example), and a graph declared with
Tensor["N"] inputs through fn.value_and_grad with grad_out = ones, against NumPy by hand and
a hand-written @numba.njit prange loop.
Times are medians over many timing samples after warm-up.
"""
import math
import sys

import numpy as np

import _common as C

POINT = (2.0, -1.0, -3.0, -2.0, -3.0)   # w0, x0, w1, x1, w2
EXPECTED = (0.7310585786300049, (-0.19661193324148185, 0.3932238664829637, -0.3932238664829637,
                                 -0.5898357997244456, 0.19661193324148185))
N = 1_000_000
SEED = 0


def graphc_fns(target):
    import graphc as gc

    @gc.graph
    def neuron(w0, x0, w1, x1, w2):
        return gc.sigmoid(w0 * x0 + w1 * x1 + w2)

    @gc.graph
    def neuron_batch(w0: gc.Tensor["N"], x0: gc.Tensor["N"], w1: gc.Tensor["N"],
                     x1: gc.Tensor["N"], w2: gc.Tensor["N"]):
        return gc.sigmoid(w0 * x0 + w1 * x1 + w2)

    return gc.compile(neuron, target=target), gc.compile(neuron_batch, target=target)


def flat_python(w0, x0, w1, x1, w2):
    f = 1.0 / (1.0 + math.exp(-(w0 * x0 + w1 * x1 + w2)))
    g = f * (1.0 - f)
    return f, (g * x0, g * w0, g * x1, g * w1, g)


class Value:
    """A scalar that records how it was made, for reverse-mode differentiation."""
    __slots__ = ("data", "grad", "_prev", "_backward")

    def __init__(self, data, prev=()):
        self.data, self.grad, self._prev, self._backward = data, 0.0, prev, None

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other))

        def backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = backward
        return out

    __radd__ = __add__

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other))

        def backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = backward
        return out

    __rmul__ = __mul__

    def sigmoid(self):
        s = 1.0 / (1.0 + math.exp(-self.data))
        out = Value(s, (self,))

        def backward():
            self.grad += s * (1.0 - s) * out.grad
        out._backward = backward
        return out

    def backward(self):
        order, seen = [], set()

        def visit(v):
            if v not in seen:
                seen.add(v)
                for p in v._prev:
                    visit(p)
                order.append(v)
        visit(self)
        self.grad = 1.0
        for v in reversed(order):
            if v._backward is not None:
                v._backward()


def hand_njit():
    """The flat Python above compiled by Numba by hand, and its per-example prange loop
    (None when Numba is not installed)."""
    try:
        import numba
    except ImportError:
        return None, None
    scalar = numba.njit(flat_python)

    @numba.njit(parallel=True)
    def batch(w0, x0, w1, x1, w2):
        n = w0.shape[0]
        f = np.empty(n)
        g = [np.empty(n) for _ in range(5)]
        gw0, gx0, gw1, gx1, gw2 = g[0], g[1], g[2], g[3], g[4]
        for i in numba.prange(n):
            f[i], (gw0[i], gx0[i], gw1[i], gx1[i], gw2[i]) = scalar(w0[i], x0[i], w1[i], x1[i], w2[i])
        return f, (gw0, gx0, gw1, gx1, gw2)
    return scalar, batch


def micrograd(w0, x0, w1, x1, w2):
    ins = [Value(v) for v in (w0, x0, w1, x1, w2)]
    f = (ins[0] * ins[1] + ins[2] * ins[3] + ins[4]).sigmoid()
    f.backward()
    return f.data, tuple(v.grad for v in ins)


def numpy_batch(w0, x0, w1, x1, w2):
    f = 1.0 / (1.0 + np.exp(-(w0 * x0 + w1 * x1 + w2)))
    g = f * (1.0 - f)
    return f, (g * x0, g * w0, g * x1, g * w1, g)


def batch_inputs():
    rng = np.random.default_rng(SEED)
    return tuple(rng.standard_normal(N) for _ in range(5))


def check(label, result):
    value, grads = result
    ok = abs(float(value) - EXPECTED[0]) < 1e-6 and all(
        abs(float(g) - e) < 1e-6 for g, e in zip(grads, EXPECTED[1]))
    if not ok:
        raise SystemExit(f"{label} gives {result}, expected {EXPECTED}")


def per_call(fn, samples):
    number = C.calibrate(fn)
    return C.median_time(fn, samples, warmup=number, number=number)


# -- peers (each run in its own subprocess)
def peer_torch(samples, target):   # per-call overhead on the CPU, whatever the target
    import torch
    leaves = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in POINT]

    def call():
        w0, x0, w1, x1, w2 = leaves
        f = torch.sigmoid(w0 * x0 + w1 * x1 + w2)
        return f, torch.autograd.grad(f, leaves)

    f, g = call()
    check("PyTorch", (f.item(), [t.item() for t in g]))
    return {"call_s": per_call(call, samples), "version": torch.__version__}


def peer_jax(samples, target):
    C.jax_platform(gpu=False)   # calls from Python on scalars: the CPU, on any machine
    import jax
    jax.config.update("jax_enable_x64", True)

    def f(w0, x0, w1, x1, w2):
        return jax.nn.sigmoid(w0 * x0 + w1 * x1 + w2)

    vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4)))

    def call():
        return jax.block_until_ready(vg(*POINT))

    v, g = call()
    check("JAX", (float(v), [float(t) for t in g]))
    return {"call_s": per_call(call, samples), "version": jax.__version__}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = C.parser(__doc__).parse_args(argv)
    samples = 15 if args.quick else 200
    if C.answer_as_peer(args, {"torch": peer_torch, "jax": peer_jax}, samples):
        return 0

    fn, fn_batch = graphc_fns(args.target)
    raw = fn.module.value_and_grad
    scalar = [("flat Python (math)", lambda: flat_python(*POINT)),
              (f"graphc ({args.target}) fn.value_and_grad", lambda: fn.value_and_grad(*POINT)),
              (f"graphc ({args.target}) module function", lambda: raw(*POINT)),
              ("micrograd-style Value", lambda: micrograd(*POINT))]
    njit_scalar, njit_batch = hand_njit()
    if njit_scalar is not None:
        scalar.insert(1, ("flat Python compiled by hand with @numba.njit", lambda: njit_scalar(*POINT)))
    rows = []
    for label, call in scalar:
        check(label, call())
        rows.append((label, per_call(call, samples)))
    peer_results, skipped = C.run_peers(__file__, args, argv)
    for name, res in peer_results.items():
        rows.append((f"{C.PEERS[name][0]} {res['version']}", res["call_s"]))

    base = rows[0][1]
    print(f"Sigmoid neuron, value and 5 gradients per call from Python, float64 ({C.machine_line()})\n")
    C.table(["implementation", "per call", "vs flat Python"],
            [[label, C.fmt_time(t), f"{t / base:.1f}x"] for label, t in rows])
    for name, reason in skipped.items():
        print(f"skipped {C.PEERS.get(name, (name,))[0]}: {reason}")

    # batched
    xs = batch_inputs()
    ones = np.ones(N)
    ref = numpy_batch(*xs)
    batched = [("NumPy by hand", lambda: numpy_batch(*xs)),
               (f"graphc ({args.target}) fn.value_and_grad per example, (N,) arrays",
                lambda: fn.value_and_grad(*xs)),
               (f"graphc ({args.target}) Tensor['N'] graph, fn.value_and_grad",
                lambda: fn_batch.value_and_grad(*xs, grad_out=ones))]
    if njit_batch is not None:
        batched.insert(1, ("@numba.njit prange loop by hand", lambda: njit_batch(*xs)))
    for label, call in batched:
        value, grads = call()
        diff = max(C.max_rel_diff(value, ref[0]), *(C.max_rel_diff(g, r) for g, r in zip(grads, ref[1])))
        if diff > 1e-12:
            raise SystemExit(f"{label} disagrees with NumPy by hand (max rel diff {diff:.1e})")
    # samples taken in turn, so that allocator and cache state affect every implementation alike
    samples = {label: [] for label, _ in batched}
    for _ in range(5 if args.quick else 40):
        for label, call in batched:
            samples[label].append(C.median_time(call, 1, warmup=0))
    brows = [(label, float(np.median(samples[label]))) for label, _ in batched]
    bbase = brows[0][1]
    print(f"\nBatched: the same formulas over N = {N:,} examples, float64 arrays of shape (N,)\n")
    C.table(["implementation", "per call", "ns/example", "vs NumPy"],
            [[label, C.fmt_time(t), f"{t / N * 1e9:.2f}", f"{t / bbase:.2f}x"] for label, t in brows])
    print("\nMeasured: median wall time per call of value and all five gradients (per call: many calls per "
          "timing sample,\nafter warm-up; batched: one call per sample, the implementations in turn). Every implementation is checked "
          "against the lecture's values\n(scalar) or against NumPy by hand (batched) before timing. "
          "PyTorch: leaf tensors made once, torch.autograd.grad per call.\n"
          "Batched graphc rows: the scalar neuron's fn.value_and_grad called with (N,) arrays (the "
          "scalar code once per example:\non numba a prange loop over it, on numpy the flat NumPy code "
          "on arrays), and a neuron declared over Tensor['N'] inputs,\nwhose per-example gradients are "
          "its vector-Jacobian product with grad_out = ones(N).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
