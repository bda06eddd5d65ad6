"""Value and gradient of sum(tanh(sigmoid(x*a + b) * x) ** 2) over 4,000,000 float64.

    python bench/elementwise.py [--target numpy] [--quick] [--peers torch,jax]

x is a tensor input of 4M float64 (seeded), a and b are scalars; every implementation returns
the value and the gradients with respect to x, a and b:
- graphc: fn.value_and_grad of the compiled graph (gc.compile(..., target=--target));
- NumPy by hand: the value and the chain rule written out;
- PyTorch eager (torch.autograd.grad) and JAX jit (jax.value_and_grad), each in a fresh
  subprocess, skipped with a note when not installed.
With --target cuda, x stays on the GPU (the gradient comes back as a device array), and
PyTorch and JAX run on the GPU too where they can (the table says where each ran).
It prints the median time per call, the ratio to NumPy by hand, and the effective bandwidth
(the bytes of x, read once, per second) beside the machine's copy bandwidth (np.copyto of a
4M float64 array, counting its read and its write).
"""
import sys

import numpy as np

import _common as C

N = 4_000_000
A, B = 0.7, -0.3
SEED = 0


def make_x():
    return np.random.default_rng(SEED).standard_normal(N)


def graphc_fn(target):
    import graphc as gc

    @gc.graph
    def elementwise(x: gc.Tensor["N"], a, b):
        return gc.sum(gc.tanh(gc.sigmoid(x * a + b) * x) ** 2)

    fn = gc.compile(elementwise, target=target)
    assert fn.wrt == ("x", "a", "b")
    return fn


def numpy_by_hand(x, a, b):
    s = 1.0 / (1.0 + np.exp(-(x * a + b)))
    t = np.tanh(s * x)
    f = np.sum(t * t)
    dv = 2.0 * t * (1.0 - t * t)          # d f / d (s*x)
    du = dv * x * s * (1.0 - s)           # d f / d (x*a + b)
    return f, (dv * s + du * a, np.sum(du * x), np.sum(du))


def peer_torch(reps, target):
    import torch
    device = C.torch_device(gpu=target == "cuda")
    x = torch.from_numpy(make_x()).to(device).requires_grad_()
    a = torch.tensor(A, dtype=torch.float64, requires_grad=True, device=device)
    b = torch.tensor(B, dtype=torch.float64, requires_grad=True, device=device)

    def call():
        f = torch.sum(torch.tanh(torch.sigmoid(x * a + b) * x) ** 2)
        grads = torch.autograd.grad(f, (x, a, b))
        if device == "cuda":   # the call is done when the GPU is
            torch.cuda.synchronize()
        return f, grads
    f, _ = call()
    return {"call_s": C.median_time(call, reps, warmup=3), "value": f.item(), "version": torch.__version__,
            "device": device, "threads": torch.get_num_threads()}


def peer_jax(reps, target):
    C.jax_platform(gpu=target == "cuda")
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    x = jnp.asarray(make_x())

    def f(x, a, b):
        return jnp.sum(jnp.tanh(jax.nn.sigmoid(x * a + b) * x) ** 2)
    vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))

    def call():
        return jax.block_until_ready(vg(x, A, B))
    v, _ = call()
    return {"call_s": C.median_time(call, reps, warmup=3), "value": float(v), "version": jax.__version__,
            "device": jax.default_backend()}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = C.parser(__doc__).parse_args(argv)
    reps = 5 if args.quick else 40
    if C.answer_as_peer(args, {"torch": peer_torch, "jax": peer_jax}, reps):
        return 0

    x = make_x()
    fn = graphc_fn(args.target)
    ref_v, ref_g = numpy_by_hand(x, A, B)
    x_in = x
    if args.target == "cuda":   # x stays on the GPU: each call reads it there
        import graphc as gc
        x_in = gc.to_device({"x": x})["x"]
    v, g = fn.value_and_grad(x_in, A, B)
    if args.target == "cuda":
        g = (g[0].copy_to_host(), *g[1:])
    diff = max(C.max_rel_diff(v, ref_v), *(C.max_rel_diff(p, q) for p, q in zip(g, ref_g)))
    if diff > 1e-10:
        print(f"graphc and NumPy by hand disagree (max rel diff {diff:.1e})")
        return 1
    rows = [("NumPy by hand", C.median_time(lambda: numpy_by_hand(x, A, B), reps, warmup=2), float(ref_v)),
            (f"graphc ({args.target})", C.median_time(lambda: fn.value_and_grad(x_in, A, B), reps, warmup=2),
             float(v))]
    dst = np.empty_like(x)
    copy_s = C.median_time(lambda: np.copyto(dst, x), reps * 4, warmup=2)

    peer_results, skipped = C.run_peers(__file__, args, argv)
    for name, res in peer_results.items():
        rows.append((C.peer_label(name, res), res["call_s"], res["value"]))

    nbytes = x.nbytes
    base = rows[0][1]
    print(f"sum(tanh(sigmoid(x*a + b) * x) ** 2), value and gradients (x, a, b), x: {N:,} float64 "
          f"({C.machine_line()})\n")
    C.table(["implementation", "ms/call", "vs NumPy", "effective GB/s", "vs copy GB/s", "value"],
            [[label, f"{t * 1e3:.2f}", f"{t / base:.2f}x", f"{nbytes / t / 1e9:.2f}",
              f"{nbytes / t / (2 * nbytes / copy_s):.3f}", f"{val:.6f}"] for label, t, val in rows])
    for name, reason in skipped.items():
        print(f"skipped {C.PEERS.get(name, (name,))[0]}: {reason}")
    print(f"\nmachine copy: np.copyto of {N:,} float64 takes {copy_s * 1e3:.2f} ms = "
          f"{2 * nbytes / copy_s / 1e9:.1f} GB/s (read + write, {2 * nbytes / 1e6:.0f} MB moved)")
    print(f"\nMeasured: median time of one call returning the value and the gradients with respect to x, a "
          f"and b, over {reps} repetitions\nafter warm-up; effective GB/s = {nbytes / 1e6:.0f} MB (x read "
          f"once) / time; vs copy = that over the copy bandwidth. graphc and NumPy by hand\nagree to "
          f"{diff:.1e} (max rel diff over value and gradients).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
