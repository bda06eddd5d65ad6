"""Small models' training steps: the numba target against the numpy target, on a quiet machine
and beside a busy process, with PyTorch eager and JAX jit.

    python bench/small_models.py [--quick] [--peers torch,jax]

The models (float64, fixed seeded data and parameters):
- micrograd's demo MLP: 2-16-16-1, ReLU, on 100 points of two moons with labels +-1, the
  max-margin loss mean(relu(1 - y*score)) plus 1e-4 times the parameters' squares;
- a vanilla RNN: h = tanh(x_t @ Wx.T + h @ Wh.T + b), hidden 16, input 8, unrolled over 20
  steps by a Python loop, batch 32, the mean squared error of a linear read-out of the last h;
- the spiral net of examples/train_spiral.py: 2-100-3, ReLU, softmax cross-entropy plus L2,
  on 300 points.
A step is value_and_grad and an SGD update (gc.optim.SGD compiled for the same target; by hand
for PyTorch; jitted with the gradient for JAX). Each condition times the numpy and the numba
target's steps in alternation (medians of samples of about 2 ms), then runs each peer in a
fresh subprocess; "loaded" does the same beside another process spinning on one core (started
and killed here). No thread setting is changed: each library threads as it does by default.
The goal: the numba target's step at most 0.7x the numpy target's, in both conditions.
"""
import contextlib
import statistics
import sys
import time

import numpy as np

import _common as C
import graphc as gc

SEED, LR = 0, 0.01
GOAL = 0.7   # the numba target's step / the numpy target's
TARGETS = ("numpy", "numba")   # the reference, and the target measured against it
CONDITIONS = {"quiet": contextlib.nullcontext, "loaded": C.busy_process}
HIDDEN, FEATURES, STEPS, BATCH = 16, 8, 20, 32   # the RNN's


# -- the models: graphc's function, data and parameters, the loss in PyTorch and in JAX
def micrograd_mlp(x: gc.Tensor["B", 2], y: gc.Tensor["B", 1], W1: gc.Tensor[16, 2], b1: gc.Tensor[16],
                  W2: gc.Tensor[16, 16], b2: gc.Tensor[16], W3: gc.Tensor[1, 16], b3: gc.Tensor[1]):
    h = gc.relu(gc.linear(x, W1, b1))
    h = gc.relu(gc.linear(h, W2, b2))
    penalty = sum(gc.sum(p * p) for p in (W1, b1, W2, b2, W3, b3))
    return gc.mean(gc.relu(1 - y * gc.linear(h, W3, b3))) + 1e-4 * penalty


def micrograd_data(rng):
    """micrograd's demo data (sklearn's make_moons, 100 points, noise 0.1; labels -1 and 1) and
    its initialisation (uniform in [-1, 1])."""
    t = rng.uniform(0, np.pi, 100)
    upper = np.arange(100) < 50
    x = np.where(upper[:, None], np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
    x += rng.normal(0, 0.1, x.shape)
    shapes = {"W1": (16, 2), "b1": (16,), "W2": (16, 16), "b2": (16,), "W3": (1, 16), "b3": (1,)}
    params = {k: rng.uniform(-1, 1, s) for k, s in shapes.items()}
    return {"x": x, "y": np.where(upper, 1.0, -1.0)[:, None]}, params


def micrograd_torch(p, x, y):
    import torch
    import torch.nn.functional as F
    W1, b1, W2, b2, W3, b3 = p
    h = torch.relu(F.linear(torch.relu(F.linear(x, W1, b1)), W2, b2))
    return torch.mean(torch.relu(1 - y * F.linear(h, W3, b3))) + 1e-4 * sum(torch.sum(q * q) for q in p)


def micrograd_jax(p, x, y):
    import jax
    import jax.numpy as jnp
    W1, b1, W2, b2, W3, b3 = p
    h = jax.nn.relu(jax.nn.relu(x @ W1.T + b1) @ W2.T + b2)
    return jnp.mean(jax.nn.relu(1 - y * (h @ W3.T + b3))) + 1e-4 * sum(jnp.sum(q * q) for q in p)


def make_rnn(steps=STEPS):
    """The RNN unrolled over `steps` time steps (a graph of 4 ops and 2 products per step)."""
    def rnn(x: gc.Tensor["B", steps, FEATURES], y: gc.Tensor["B", 1], Wx: gc.Tensor[HIDDEN, FEATURES],
            Wh: gc.Tensor[HIDDEN, HIDDEN], b: gc.Tensor[HIDDEN], Wo: gc.Tensor[1, HIDDEN], bo: gc.Tensor[1]):
        h = gc.tanh(gc.linear(x[:, 0, :], Wx, b))
        for t in range(1, steps):
            h = gc.tanh(gc.linear(x[:, t, :], Wx, b) + h @ Wh.T)
        return gc.mse(gc.linear(h, Wo, bo), y)
    rnn.__name__ = f"rnn{steps}"
    return rnn


def rnn_data(rng, steps=STEPS):
    shapes = {"Wx": (HIDDEN, FEATURES), "Wh": (HIDDEN, HIDDEN), "b": (HIDDEN,), "Wo": (1, HIDDEN), "bo": (1,)}
    params = {k: rng.standard_normal(s) / np.sqrt(s[-1]) for k, s in shapes.items()}
    return {"x": rng.standard_normal((BATCH, steps, FEATURES)), "y": rng.standard_normal((BATCH, 1))}, params


def rnn_torch(p, x, y):
    import torch.nn.functional as F
    Wx, Wh, b, Wo, bo = p
    h = F.linear(x[:, 0, :], Wx, b).tanh()
    for t in range(1, x.shape[1]):
        h = (F.linear(x[:, t, :], Wx, b) + h @ Wh.T).tanh()
    return F.mse_loss(F.linear(h, Wo, bo), y)


def rnn_jax(p, x, y):
    import jax.numpy as jnp
    Wx, Wh, b, Wo, bo = p
    h = jnp.tanh(x[:, 0, :] @ Wx.T + b)
    for t in range(1, x.shape[1]):
        h = jnp.tanh(x[:, t, :] @ Wx.T + b + h @ Wh.T)
    return jnp.mean((h @ Wo.T + bo - y) ** 2)


def spiral_net():
    return C.example("train_spiral").spiral_net


def spiral_data(rng):
    D, H, K = (getattr(C.example("train_spiral"), n) for n in "DHK")
    data = gc.data.spiral(n=300, classes=K, noise=0.2, train_ratio=1.0, seed=SEED)
    params = {"W1": gc.init.small_random((H, D), rng), "b1": gc.init.zeros(H),
              "W2": gc.init.small_random((K, H), rng), "b2": gc.init.zeros(K)}
    return {"x": data.x_train, "y": gc.data.one_hot(data.y_train, K), "reg": 1e-3}, params


def spiral_torch(p, x, y, reg):
    import torch
    import torch.nn.functional as F
    W1, b1, W2, b2 = p
    scores = F.linear(torch.relu(F.linear(x, W1, b1)), W2, b2)
    return F.cross_entropy(scores, y) + reg * 0.5 * (torch.sum(W1 * W1) + torch.sum(W2 * W2))


def spiral_jax(p, x, y, reg):
    import jax
    import jax.numpy as jnp
    W1, b1, W2, b2 = p
    scores = jax.nn.relu(x @ W1.T + b1) @ W2.T + b2
    loss = -jnp.mean(jnp.sum(y * jax.nn.log_softmax(scores), axis=1))
    return loss + reg * 0.5 * (jnp.sum(W1 * W1) + jnp.sum(W2 * W2))


# name: (label, graphc's model function, data and parameters from a generator, PyTorch's loss, JAX's loss)
MODELS = {
    "micrograd": ("micrograd's MLP 2-16-16-1, batch 100", lambda: micrograd_mlp, micrograd_data,
                  micrograd_torch, micrograd_jax),
    "rnn": (f"RNN, hidden {HIDDEN}, {STEPS} steps unrolled, batch {BATCH}", make_rnn, rnn_data, rnn_torch, rnn_jax),
    "spiral": ("spiral net 2-100-3, batch 300", spiral_net, spiral_data, spiral_torch, spiral_jax),
}


def make(name):
    """(data, parameters) of a model, the same in every process."""
    return MODELS[name][2](np.random.default_rng(SEED))


def graphc_step(name, target):
    """A step of graphc's compiled model and gc.optim.SGD on `target`: a function of no
    arguments (it updates its own parameters) returning the loss."""
    model = MODELS[name][1]()
    data, params = make(name)
    graph = model if isinstance(model, gc.Graph) else gc.graph(model, wrt=tuple(params))
    fn, sgd = gc.compile(graph, target=target), gc.optim.SGD(LR, target=target)

    def step():
        out, grads = fn.value_and_grad(**data, **params)
        sgd.step(params, grads)
        return out["loss"] if isinstance(out, dict) else out
    return step


def alternately(steps, reps):
    """Median seconds per call of each function, timed in turn in samples of about 2 ms."""
    numbers = [C.calibrate(s) for s in steps]
    samples = [[] for _ in steps]
    for _ in range(reps):
        for step, number, out in zip(steps, numbers, samples):
            t0 = time.perf_counter()
            for _ in range(number):
                step()
            out.append((time.perf_counter() - t0) / number)
    return [statistics.median(s) for s in samples]


# -- peers (each run in its own subprocess)
def peer_torch(reps, target):
    import torch
    out = {}
    for name in MODELS:
        data, params = make(name)
        args = [torch.from_numpy(v) if isinstance(v, np.ndarray) else v for v in data.values()]
        p = [torch.from_numpy(v.copy()).requires_grad_() for v in params.values()]

        step = C.torch_sgd_step(lambda: MODELS[name][3](p, *args), p, LR)  # noqa: B023 (called in this loop)
        loss0 = float(step())
        out[name] = (alternately([step], reps)[0], loss0)
    return {"steps": out, "version": torch.__version__, "threads": torch.get_num_threads()}


def peer_jax(reps, target):
    C.jax_platform(gpu=False)
    import jax
    jax.config.update("jax_enable_x64", True)   # float64, as the other rows
    out = {}
    for name in MODELS:
        data, params = make(name)
        t, loss0 = C.jax_sgd_step(MODELS[name][4], tuple(map(jax.numpy.asarray, params.values())),
                                  tuple(data.values()), LR, reps * 20)   # samples of one call each
        out[name] = (t, loss0)
    return {"steps": out, "version": jax.__version__}


def measure(steps, args, argv, reps):
    """{condition: (the load average before it, {model: (reference s, measured s)}, {peer: result},
    {peer: why skipped})}"""
    results = {}
    for condition, context in CONDITIONS.items():
        load = C.load_line()
        with context():
            times = {name: alternately(steps[name], reps) for name in MODELS}
            peers, skipped = C.run_peers(__file__, args, argv)
        results[condition] = load, times, peers, skipped
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = C.parser(__doc__).parse_args(argv)
    reps = 5 if args.quick else 40
    if C.answer_as_peer(args, {"torch": peer_torch, "jax": peer_jax}, reps):
        return 0
    reference, measured = TARGETS
    steps = {name: [graphc_step(name, target) for target in TARGETS] for name in MODELS}
    losses = {name: float(steps[name][0]()) for name in MODELS}   # step 0, before any update
    for name in MODELS:
        loss = float(steps[name][1]())
        if abs(loss - losses[name]) > 1e-9 * abs(losses[name]):
            print(f"{name}: the {measured} target's loss at step 0 ({loss}) disagrees with {reference}'s ({losses[name]})")
            return 1
    results = measure(steps, args, argv, reps)
    print(f"Small models' training steps, float64 ({C.machine_line()})")
    worst = 0.0
    for condition, (load, times, peers, skipped) in results.items():
        for peer, res in peers.items():
            for name, (_, loss0) in res["steps"].items():
                if abs(loss0 - losses[name]) > 1e-6 * abs(losses[name]):
                    print(f"{name}: {peer}'s loss at step 0 ({loss0}) disagrees with graphc's ({losses[name]})")
                    return 1
        beside = ", then a process spinning on one core beside" if condition == "loaded" else ""
        print(f"\n{condition} ({load} before{beside}):\n")
        labels = [C.peer_label(peer, res) for peer, res in peers.items()]
        C.table(["model", f"{reference} target", f"{measured} target", f"{measured} / {reference}", *labels],
                [[MODELS[name][0], C.fmt_time(t_ref), C.fmt_time(t), f"{t / t_ref:.2f}x",
                  *(C.fmt_time(res["steps"][name][0]) for res in peers.values())]
                 for name, (t_ref, t) in times.items()])
        worst = max(worst, *(t / t_ref for t_ref, t in times.values()))
        for peer, reason in skipped.items():
            print(f"skipped {C.PEERS.get(peer, (peer,))[0]}: {reason}")
    print(f"\ngoal: the {measured} target's step at most {GOAL}x the {reference} target's, quiet and loaded: "
          f"{'met' if worst <= GOAL else 'not met'} (at most {worst:.2f}x)")
    print(f"Measured: median time per step (value_and_grad and an SGD update, lr {LR}) over {reps} samples of "
          "about 2 ms, the two targets in turn; the peers' in their own process, in the same condition. "
          "Every implementation's loss at step 0 agrees with the numpy target's.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
