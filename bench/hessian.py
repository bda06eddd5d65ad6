"""The Hessian of a 100-dimensional function: gc.hessian beside jax.hessian and PyTorch.

    python bench/hessian.py [--target numpy|numba] [--quick] [--peers torch,jax]

f(x) = mean(softplus(A @ x)) + 0.5 * sum(tanh(x)**2), x of 100 entries, A of shape (50, 100)
(an input too, not differentiated). Rows:
- NumPy by hand: the Hessian written out, A.T @ diag(s*(1 - s)/50) @ A + diag(...) with
  s = sigmoid(A @ x), the floor every row is compared with;
- graphc: gc.compile(gc.hessian(f, wrt="x")), forward mode over reverse (one batched forward
  pass over the gradient's graph); its compile time is gc.hessian + gc.compile + the first
  call with an empty cache (Numba's compile included on the numba target);
- PyTorch: torch.autograd.functional.hessian (eager, no compile; the first call is its
  "compile" column), and JAX: jax.jit(jax.hessian(f)) (first call = tracing + XLA), each in a
  fresh subprocess.
Every row's Hessian is checked against NumPy by hand before it is timed.
"""
import os
import sys
import tempfile
import time

import numpy as np

import _common as C

N, M, SEED = 100, 50, 0


def data():
    rng = np.random.default_rng(SEED)
    return rng.standard_normal(N) * 0.5, rng.standard_normal((M, N)) / np.sqrt(N)


def hessian_by_hand(x, A):
    s = 1 / (1 + np.exp(-(A @ x)))
    t = np.tanh(x)
    sech2 = 1 - t * t
    return (A.T * (s * (1 - s) / M)) @ A + np.diag(sech2 * sech2 - 2 * t * t * sech2)


def graphc_hessian(target):
    import graphc as gc

    @gc.graph(wrt=("x",))
    def f(x: gc.Tensor[N], A: gc.Tensor[M, N]):
        return gc.mean(gc.softplus(A @ x)) + 0.5 * gc.sum(gc.tanh(x) ** 2)

    return gc.compile(gc.hessian(f, wrt="x"), target=target)


def per_call(fn, samples):
    number = C.calibrate(fn)
    return C.median_time(fn, samples, warmup=number, number=number)


def checked(label, H, expected):
    diff = C.max_rel_diff(np.asarray(H), expected)
    if diff > 1e-9:
        raise SystemExit(f"{label}: the Hessian differs from NumPy's by {diff:.1e}")
    return diff


# -- peers (each run in its own subprocess)
def peer_torch(samples, target):
    import torch
    x, A = (torch.tensor(v, dtype=torch.float64) for v in data())

    def f(x):
        return torch.nn.functional.softplus(A @ x).mean() + 0.5 * (torch.tanh(x) ** 2).sum()

    def call():
        return torch.autograd.functional.hessian(f, x)

    start = time.perf_counter()
    H = call()
    first = time.perf_counter() - start
    checked("PyTorch", H.numpy(), hessian_by_hand(*data()))
    return {"compile_s": first, "call_s": per_call(call, samples), "version": torch.__version__,
            "threads": torch.get_num_threads()}


def peer_jax(samples, target):
    C.jax_platform(gpu=False)
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    x, A = (jnp.asarray(v) for v in data())

    def f(x):
        return jnp.mean(jax.nn.softplus(A @ x)) + 0.5 * jnp.sum(jnp.tanh(x) ** 2)

    hess = jax.jit(jax.hessian(f))
    start = time.perf_counter()
    H = jax.block_until_ready(hess(x))
    first = time.perf_counter() - start
    checked("JAX", np.asarray(H), hessian_by_hand(*data()))
    return {"compile_s": first, "call_s": per_call(lambda: jax.block_until_ready(hess(x)), samples),
            "version": jax.__version__}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = C.parser(__doc__).parse_args(argv)
    samples = 15 if args.quick else 200
    if C.answer_as_peer(args, {"torch": peer_torch, "jax": peer_jax}, samples):
        return 0
    x, A = data()
    expected = hessian_by_hand(x, A)
    numpy_s = per_call(lambda: hessian_by_hand(x, A), samples)
    if args.target == "numba":
        import numba  # noqa: F401  (imported before the clock starts, as the peers import theirs)
    os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp(prefix="graphc-bench-")   # a cold compile
    start = time.perf_counter()
    fn = graphc_hessian(args.target)
    H = fn.forward(x, A)
    compile_s = time.perf_counter() - start
    diff = checked("graphc", H, expected)
    graphc_s = per_call(lambda: fn.forward(x, A), samples)
    peers, skipped = C.run_peers(__file__, args, argv)

    print(C.machine_line())
    print(f"the Hessian of f: R^{N} -> R (A of shape ({M}, {N})), float64; graphc agrees with "
          f"NumPy by hand to {diff:.1e}\n")
    rows = [["NumPy by hand", "-", C.fmt_time(numpy_s), "1.00x"],
            [f"graphc ({args.target}) gc.hessian", f"{compile_s:.2f} s", C.fmt_time(graphc_s),
             f"{graphc_s / numpy_s:.2f}x"]]
    for name, result in peers.items():
        rows.append([C.peer_label(name, result), f"{result['compile_s']:.2f} s", C.fmt_time(result["call_s"]),
                     f"{result['call_s'] / numpy_s:.2f}x"])
    C.table(["implementation", "compile (first call)", "per call", "vs NumPy"], rows)
    for name, reason in skipped.items():
        print(f"{name}: skipped ({reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
