"""One SGD training step of a 784-256-128-10 MLP: graphc against NumPy by hand, PyTorch and JAX.

    python bench/mlp.py [--target numpy] [--quick] [--peers torch,jax]

The step is forward, backward and an SGD update (lr 0.1) of a ReLU MLP with softmax
cross-entropy (mean over the batch), batch 128, float32, on fixed seeded random data:
- graphc: the compiled value_and_grad (gc.compile(..., target=--target, dtype="float32")),
  with the SGD update by hand in NumPy, and with gc.optim.SGD (compiled for the same target);
  on the numba target the row names the BLAS of its matrix products (MKL where installed;
  GRAPHC_BLAS=scipy python bench/mlp.py measures SciPy's OpenBLAS instead);
- NumPy by hand: the same step written out with `@`;
- PyTorch eager (default thread count) and JAX jit, each in a fresh subprocess, skipped
  with a note when not installed.
With --target cuda the data, the parameters and gc.optim.SGD's update stay on the GPU (the
row "SGD by hand in NumPy" takes host arrays, copied at each call), and PyTorch and JAX run on
the GPU too where they can (the table says where each ran); NumPy and its GEMM floor stay the
CPU's.
It prints the median time per step over many repetitions after warm-up, the ratio to the
hand-written NumPy step, the achieved GFLOP/s counting the matrix products' FLOPs, the
machine's float32 GEMM throughput (1024x1024 @ 1024x1024 in NumPy) and the step's GEMM
floor: the step's matrix products alone, in NumPy, with each implementation's ratio to it.
"""
import sys

import numpy as np

import _common as C

SIZES = (784, 256, 128, 10)
BATCH = 128
LR = 0.1
SEED = 0
NAMES = C.MLP_PARAMS


def gemm_shapes():
    """(m, n, k) of each matrix product in the step: 3 forward, 3 weight gradients, and the
    input gradients of layers 3 and 2 (none flows into x)."""
    (d0, d1, d2, d3), B = SIZES, BATCH
    forward = [(B, d1, d0), (B, d2, d1), (B, d3, d2)]
    weight_grads = [(d3, d2, B), (d2, d1, B), (d1, d0, B)]
    input_grads = [(B, d2, d3), (B, d1, d2)]
    return forward, weight_grads, input_grads


def step_flops():
    return sum(2 * m * n * k for group in gemm_shapes() for m, n, k in group)


def make_data(seed=SEED):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    labels = rng.integers(0, SIZES[-1], size=BATCH)
    y = np.eye(SIZES[-1], dtype=np.float32)[labels]
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:]), start=1):
        params[f"W{i}"] = (rng.standard_normal((fan_out, fan_in)) * np.sqrt(2 / fan_in)).astype(np.float32)
        params[f"b{i}"] = np.zeros(fan_out, dtype=np.float32)
    return x, y, labels, params


# -- graphc
def graphc_step(target, optimizer=False):
    """graphc's value_and_grad, then SGD by hand in NumPy or (optimizer=True) gc.optim.SGD,
    whose update graphc compiles for the same target (fused loops, in place on numba)."""
    import graphc as gc

    mlp = gc.graph(C.mlp, wrt=NAMES)
    fn = gc.compile(mlp, target=target, dtype="float32")
    assert fn.wrt == NAMES
    sgd = gc.optim.SGD(LR, target=target)

    def step(x, y, p):
        loss, grads = fn.value_and_grad(x, y, **p)
        if optimizer:
            sgd.step(p, grads)
            return loss
        for name, g in zip(NAMES, grads):
            p[name] -= LR * g
        return loss
    return step


# -- NumPy by hand
def numpy_step(x, y, p):
    W1, b1, W2, b2, W3, b3 = (p[n] for n in NAMES)
    a1 = x @ W1.T + b1
    h1 = np.maximum(a1, 0)
    a2 = h1 @ W2.T + b2
    h2 = np.maximum(a2, 0)
    a3 = h2 @ W3.T + b3
    m = a3.max(axis=1, keepdims=True)
    e = np.exp(a3 - m)
    s = e.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(s) + m - np.sum(y * a3, axis=1, keepdims=True))
    g3 = (e / s - y) / x.shape[0]
    g2 = (g3 @ W3) * (a2 > 0)
    g1 = (g2 @ W2) * (a1 > 0)
    p["W3"] -= LR * (g3.T @ h2)
    p["b3"] -= LR * g3.sum(axis=0)
    p["W2"] -= LR * (g2.T @ h1)
    p["b2"] -= LR * g2.sum(axis=0)
    p["W1"] -= LR * (g1.T @ x)
    p["b1"] -= LR * g1.sum(axis=0)
    return loss


def gemm_floor_fn():
    """The step's matrix products alone, on operands of the step's shapes and layouts."""
    rng = np.random.default_rng(SEED + 1)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)
    (d0, d1, d2, d3), B = SIZES, BATCH
    x, h1, h2 = r(B, d0), r(B, d1), r(B, d2)
    W1, W2, W3 = r(d1, d0), r(d2, d1), r(d3, d2)
    g1, g2, g3 = r(B, d1), r(B, d2), r(B, d3)

    def products():
        x @ W1.T; h1 @ W2.T; h2 @ W3.T            # forward
        g3.T @ h2; g2.T @ h1; g1.T @ x            # weight gradients
        g3 @ W3; g2 @ W2                          # input gradients
    return products


def gemm_gflops(reps):
    rng = np.random.default_rng(SEED + 2)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    t = C.median_time(lambda: a @ b, reps, warmup=2)
    return 2 * 1024 ** 3 / t / 1e9, t


# -- peers (each run in its own subprocess; on the GPU for the cuda target)
def peer_torch(reps, target):
    import torch
    import torch.nn.functional as F
    device = C.torch_device(gpu=target == "cuda")
    x, y, labels, params = make_data()
    xt, lt = torch.from_numpy(x).to(device), torch.from_numpy(labels).to(device)
    p = [torch.from_numpy(params[n].copy()).to(device).requires_grad_() for n in NAMES]

    def step():
        W1, b1, W2, b2, W3, b3 = p
        h1 = torch.relu(F.linear(xt, W1, b1))
        h2 = torch.relu(F.linear(h1, W2, b2))
        loss = F.cross_entropy(F.linear(h2, W3, b3), lt)
        loss.backward()
        with torch.no_grad():
            for t in p:
                t -= LR * t.grad
                t.grad = None
        if device == "cuda":   # the step is done when the GPU is
            torch.cuda.synchronize()
        return loss
    loss0 = float(step())
    t = C.median_time(step, reps, warmup=10)
    return {"step_s": t, "loss0": loss0, "version": torch.__version__, "device": device,
            "threads": torch.get_num_threads()}


def peer_jax(reps, target):
    C.jax_platform(gpu=target == "cuda")
    import jax
    import jax.numpy as jnp
    x, y, labels, params = make_data()
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    p = tuple(jnp.asarray(params[n]) for n in NAMES)

    def loss_fn(p, x, y):
        W1, b1, W2, b2, W3, b3 = p
        h1 = jax.nn.relu(x @ W1.T + b1)
        h2 = jax.nn.relu(h1 @ W2.T + b2)
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(h2 @ W3.T + b3), axis=1))

    t, loss0 = C.jax_sgd_step(loss_fn, p, (xj, yj), LR, reps)
    return {"step_s": t, "loss0": loss0, "version": jax.__version__, "device": jax.default_backend()}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = C.parser(__doc__).parse_args(argv)
    reps = 30 if args.quick else 1000
    if C.answer_as_peer(args, {"torch": peer_torch, "jax": peer_jax}, reps):
        return 0

    x, y, labels, params = make_data()
    rows = {}
    # correctness first: one step of each from the same parameters
    p_gc, p_opt, p_np = ({k: v.copy() for k, v in params.items()} for _ in range(3))
    x_opt, y_opt, on_host = x, y, lambda p: p
    if args.target == "cuda":   # gc.optim's row keeps the data, parameters and state on the GPU
        import graphc as gc
        x_opt, y_opt = gc.to_device({"x": x, "y": y}).values()
        p_opt, on_host = gc.to_device(p_opt), gc.to_host
    gc_step, opt_step = graphc_step(args.target), graphc_step(args.target, optimizer=True)
    loss_gc, loss_opt, loss_np = gc_step(x, y, p_gc), opt_step(x_opt, y_opt, p_opt), numpy_step(x, y, p_np)
    diff = max(C.max_rel_diff(p[n], p_np[n]) for p in (p_gc, on_host(p_opt)) for n in NAMES)
    if diff > 1e-4:
        print(f"graphc and hand-written NumPy disagree after one step (max rel diff {diff:.2e})")
        return 1

    rows["numpy"] = ("NumPy by hand", C.median_time(lambda: numpy_step(x, y, p_np), reps, warmup=10), float(loss_np))
    by_hand = optim = args.target
    if args.target == "numba":   # whose matrix products (graphc.backends.numba.blas; GRAPHC_BLAS chooses)
        from graphc.backends.numba import blas
        by_hand = optim = "numba, " + ("MKL" if blas.choice() == "mkl" else "SciPy's OpenBLAS")
    if args.target == "cuda":
        by_hand, optim = "cuda, host arrays", "cuda, all on the GPU"
    rows["graphc"] = (f"graphc ({by_hand}), SGD by hand in NumPy",
                      C.median_time(lambda: gc_step(x, y, p_gc), reps, warmup=10), float(loss_gc))
    rows["graphc_optim"] = (f"graphc ({optim}) with gc.optim.SGD",
                            C.median_time(lambda: opt_step(x_opt, y_opt, p_opt), reps, warmup=10), float(loss_opt))
    floor = C.median_time(gemm_floor_fn(), reps, warmup=10)
    gflops, t1024 = gemm_gflops(10 if args.quick else 100)

    peer_results, skipped = C.run_peers(__file__, args, argv)
    for name, res in peer_results.items():
        rows[name] = (C.peer_label(name, res), res["step_s"], res["loss0"])

    flops = step_flops()
    base = rows["numpy"][1]
    print(f"MLP 784-256-128-10 training step, batch {BATCH}, float32 ({C.machine_line()})\n")
    table(["implementation", "ms/step", "vs NumPy", "GFLOP/s", "vs GEMM floor", "loss at step 0"],
          [[label, f"{t * 1e3:.3f}", f"{t / base:.2f}x", f"{flops / t / 1e9:.1f}", f"{t / floor:.2f}x",
            f"{loss:.5f}"] for label, t, loss in rows.values()]
          + [["GEMM floor (products only, NumPy)", f"{floor * 1e3:.3f}", f"{floor / base:.2f}x",
              f"{flops / floor / 1e9:.1f}", "1.00x", ""]])
    for name, reason in skipped.items():
        print(f"skipped {C.PEERS.get(name, (name,))[0]}: {reason}")
    print(f"\nmachine GEMM: float32 1024x1024 @ 1024x1024 in NumPy takes {t1024 * 1e3:.2f} ms = "
          f"{gflops:.1f} GFLOP/s")
    print(f"\nMeasured: median time of one step (forward, backward, SGD update lr {LR}) over {reps} "
          f"repetitions after warm-up; vs NumPy = time / hand-written NumPy time.\nGFLOP/s counts "
          f"{flops / 1e6:.1f} MFLOP per step: 2*m*n*k for 8 matrix products (3 forward, 3 weight "
          f"gradients, 2 input gradients; none into x).\nGEMM floor: those 8 products alone in NumPy. "
          f"graphc and hand-written NumPy agree to {diff:.1e} (max rel diff of the parameters after one step).")
    return 0


table = C.table

if __name__ == "__main__":
    sys.exit(main())
