"""One SGD training step of LeNet-5: graphc against PyTorch eager, JAX jit and an im2col + GEMM floor.

    python bench/conv.py [--target numba] [--quick] [--peers torch,jax]

The step is forward, backward and an SGD update (lr 0.05) of LeNet-5 on 28x28 images: conv
6@5x5 (padding 2), ReLU, max pool 2, conv 16@5x5, ReLU, max pool 2, 400 -> 120 -> 84 -> 10
with ReLU, softmax cross-entropy (mean over the batch), batch 64, float32, on fixed seeded
random data:
- graphc: the compiled value_and_grad (gc.compile(lenet, target=--target, dtype="float32"))
  and gc.optim.SGD compiled for the same target; the first row also gives the time from
  nothing to the first step's result (tracing, code generation, and on numba the compile
  of an empty cache);
- PyTorch eager (default thread count) and JAX jit, each in a fresh subprocess, skipped
  with a note when not installed;
- the floor: the step's unavoidable work in NumPy, nothing else: the windows of both
  convolutions copied out (im2col) and the step's matrix products (the convolutions' and
  the linear layers', forward, weight gradients and input gradients).
It prints the median time per step over many repetitions after warm-up and each row's
ratio to the floor, and checks that graphc's loss at step 0 agrees with PyTorch's.
"""
import os
import shutil
import sys
import tempfile
import time

import numpy as np

import _common as C

BATCH, K, LR, SEED = 64, 10, 0.05, 0
SHAPES = {"C1": (6, 1, 5, 5), "c1": (6,), "C2": (16, 6, 5, 5), "c2": (16,), "F1": (120, 400), "f1": (120,),
          "F2": (84, 120), "f2": (84,), "F3": (K, 84), "f3": (K,)}
NAMES = tuple(SHAPES)


def make_data(seed=SEED):
    rng = np.random.default_rng(seed)
    x = rng.random((BATCH, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, K, size=BATCH)
    y = np.eye(K, dtype=np.float32)[labels]
    params = {}
    for name, shape in SHAPES.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        params[name] = (rng.standard_normal(shape) * np.sqrt(2 / fan_in)).astype(np.float32) \
            if len(shape) > 1 else np.zeros(shape, dtype=np.float32)
    return x, y, labels, params


# -- graphc
def lenet_graph():
    import graphc as gc

    def lenet(x: gc.Tensor["B", 1, 28, 28], y: gc.Tensor["B", K], C1: gc.Tensor[6, 1, 5, 5], c1: gc.Tensor[6],
              C2: gc.Tensor[16, 6, 5, 5], c2: gc.Tensor[16], F1: gc.Tensor[120, 400], f1: gc.Tensor[120],
              F2: gc.Tensor[84, 120], f2: gc.Tensor[84], F3: gc.Tensor[K, 84], f3: gc.Tensor[K]):
        h = gc.max_pool2d(gc.relu(gc.conv2d(x, C1, c1, padding=2)), 2)
        h = gc.max_pool2d(gc.relu(gc.conv2d(h, C2, c2)), 2)
        h = gc.relu(gc.linear(gc.flatten(h), F1, f1))
        h = gc.relu(gc.linear(h, F2, f2))
        return gc.softmax_cross_entropy(gc.linear(h, F3, f3), y)
    return gc.graph(lenet, wrt=NAMES)


def graphc_step(target):
    """The compiled step, and the seconds from nothing (an empty compile cache) to it."""
    import graphc as gc
    start = time.perf_counter()
    fn = gc.compile(lenet_graph(), target=target, dtype="float32")
    sgd = gc.optim.SGD(LR, target=target)

    def step(x, y, p):
        loss, grads = fn.value_and_grad(x, y, **p)
        sgd.step(p, grads)
        return loss
    return fn, step, start


# -- the floor: im2col and the matrix products alone
def floor_fn():
    from numpy.lib.stride_tricks import sliding_window_view as windows
    rng = np.random.default_rng(SEED + 1)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    x, h1 = r(BATCH, 1, 32, 32), r(BATCH, 6, 14, 14)
    W1, W2, F1, F2, F3 = r(6, 25), r(16, 150), r(120, 400), r(84, 120), r(K, 84)
    g1, g2 = r(BATCH, 6, 784), r(BATCH, 16, 100)
    a3, a4, a5 = r(BATCH, 400), r(BATCH, 120), r(BATCH, 84)
    d3, d4, d5 = r(BATCH, 120), r(BATCH, 84), r(BATCH, K)

    def work():
        p1 = np.ascontiguousarray(windows(x, (5, 5), axis=(2, 3)).transpose(0, 1, 4, 5, 2, 3)).reshape(BATCH, 25, 784)
        p2 = np.ascontiguousarray(windows(h1, (5, 5), axis=(2, 3)).transpose(0, 1, 4, 5, 2, 3)).reshape(BATCH, 150, 100)
        W1 @ p1; W2 @ p2                                  # the convolutions
        g1 @ p1.transpose(0, 2, 1); g2 @ p2.transpose(0, 2, 1); W2.T @ g2   # their gradients
        a3 @ F1.T; a4 @ F2.T; a5 @ F3.T                   # the linear layers
        d3.T @ a3; d4.T @ a4; d5.T @ a5; d5 @ F3; d4 @ F2; d3 @ F1   # and theirs
    return work


# -- peers (each run in its own subprocess)
def peer_torch(reps, target):
    import torch
    import torch.nn.functional as F
    x, y, labels, params = make_data()
    xt, lt = torch.from_numpy(x), torch.from_numpy(labels)
    p = [torch.from_numpy(params[n].copy()).requires_grad_() for n in NAMES]

    def loss():
        C1, c1, C2, c2, F1, f1, F2, f2, F3, f3 = p
        h = F.max_pool2d(torch.relu(F.conv2d(xt, C1, c1, padding=2)), 2)
        h = F.max_pool2d(torch.relu(F.conv2d(h, C2, c2)), 2)
        h = torch.relu(F.linear(torch.flatten(h, 1), F1, f1))
        h = torch.relu(F.linear(h, F2, f2))
        return F.cross_entropy(F.linear(h, F3, f3), lt)
    step = C.torch_sgd_step(loss, p, LR)
    loss0 = float(step())
    t = C.median_time(step, reps, warmup=10)
    return {"step_s": t, "loss0": loss0, "version": torch.__version__, "threads": torch.get_num_threads()}


def peer_jax(reps, target):
    C.jax_platform(gpu=False)
    import jax
    import jax.numpy as jnp
    x, y, labels, params = make_data()
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    p = tuple(jnp.asarray(params[n]) for n in NAMES)

    def conv(h, w, b, pad):
        out = jax.lax.conv_general_dilated(h, w, (1, 1), [(pad, pad), (pad, pad)])
        return out + b[None, :, None, None]

    def pool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def loss_fn(p, x, y):
        C1, c1, C2, c2, F1, f1, F2, f2, F3, f3 = p
        h = pool(jax.nn.relu(conv(x, C1, c1, 2)))
        h = pool(jax.nn.relu(conv(h, C2, c2, 0)))
        h = jax.nn.relu(h.reshape(h.shape[0], -1) @ F1.T + f1)
        h = jax.nn.relu(h @ F2.T + f2)
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(h @ F3.T + f3), axis=1))

    t, loss0 = C.jax_sgd_step(loss_fn, p, (xj, yj), LR, reps)
    return {"step_s": t, "loss0": loss0, "version": jax.__version__}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = C.parser(__doc__).parse_args(argv)
    reps = 20 if args.quick else 300
    if C.answer_as_peer(args, {"torch": peer_torch, "jax": peer_jax}, reps):
        return 0

    x, y, labels, params = make_data()
    cache, before = tempfile.mkdtemp(prefix="graphc-bench-conv-"), os.environ.get("GRAPHC_CACHE_DIR")
    os.environ["GRAPHC_CACHE_DIR"] = cache   # cold: nothing compiled before
    try:
        fn, step, start = graphc_step(args.target)
        p = {k: v.copy() for k, v in params.items()}
        loss0 = float(step(x, y, p))
        first = time.perf_counter() - start
        rows = [(f"graphc ({args.target}) with gc.optim.SGD", C.median_time(lambda: step(x, y, p), reps, warmup=5),
                 loss0)]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if before is None:
            del os.environ["GRAPHC_CACHE_DIR"]
        else:
            os.environ["GRAPHC_CACHE_DIR"] = before
    floor = C.median_time(floor_fn(), reps, warmup=5)
    peer_results, skipped = C.run_peers(__file__, args, argv)
    rows += [(C.peer_label(name, res), res["step_s"], res["loss0"]) for name, res in peer_results.items()]
    if "torch" in peer_results and abs(loss0 - peer_results["torch"]["loss0"]) > 1e-4 * abs(loss0):
        print(f"graphc's loss at step 0 ({loss0}) disagrees with PyTorch's ({peer_results['torch']['loss0']})")
        return 1

    print(f"LeNet-5 training step, batch {BATCH}, float32 ({C.machine_line()})\n")
    C.table(["implementation", "ms/step", "vs floor", "loss at step 0"],
            [[label, f"{t * 1e3:.2f}", f"{t / floor:.2f}x", f"{loss:.5f}"] for label, t, loss in rows]
            + [["floor: im2col + matrix products (NumPy)", f"{floor * 1e3:.2f}", "1.00x", ""]])
    torch_row = [t for label, t, _ in rows if label.startswith("PyTorch")]
    if torch_row:
        print(f"\ngraphc ({args.target}) / PyTorch eager: {rows[0][1] / torch_row[0]:.2f}x")
    for name, reason in skipped.items():
        print(f"skipped {C.PEERS.get(name, (name,))[0]}: {reason}")
    print(f"\nfirst result: {first:.1f} s from gc.compile with an empty cache to the first step's loss")
    print(f"Measured: median time of one step (forward, backward, SGD update lr {LR}) over {reps} "
          "repetitions after warm-up.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
