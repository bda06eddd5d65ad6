"""The lectures' initialisation table with gc.init: a 10-layer tanh net, 500 units per layer,
on a batch of 1,000 unit-Gaussian inputs, and the std of each layer's activations for

- small random weights, gc.init.small_random = 0.01 * N(0, 1): the activations vanish
  (std ~0.21 at layer 1, ~0.0477 at layer 2, below 1e-5 by layer 8);
- Xavier, gc.init.xavier = N(0, 1) / sqrt(fan_in): they stay alive (~0.63, 0.49, 0.41 ... ~0.23);
- He, gc.init.he = N(0, 1) * sqrt(2 / fan_in): made for ReLU; with tanh the std stays
  higher (~0.72 at layer 1, ~0.56 at layer 10) and more units saturate.

With --relu the same net with ReLU units shows why He exists: Xavier loses about 30% of
the std at every layer (~0.023 at layer 10), He keeps it near 0.8. The weights are used
as h @ W, so layout="in_out".

    python examples/init_demo.py [--relu] [--plot docs/init_std.png]
"""
import argparse

import numpy as np

import graphc as gc

LAYERS, UNITS, BATCH = 10, 500, 1000
W = gc.Tensor[UNITS, UNITS]


def deep_net(x: gc.Tensor["B", UNITS], W1: W, W2: W, W3: W, W4: W, W5: W,
             W6: W, W7: W, W8: W, W9: W, W10: W, *, unit="tanh"):
    act = gc.tanh if unit == "tanh" else gc.relu
    h, activations = x, {}
    for k, Wk in enumerate((W1, W2, W3, W4, W5, W6, W7, W8, W9, W10), start=1):
        h = act(h @ Wk)
        activations[f"h{k}"] = h
    return activations


tanh_net = gc.graph(deep_net, name="tanh_net")
relu_net = gc.graph(deep_net, name="relu_net", unit="relu")

INITS = {
    "0.01*N(0,1)": lambda rng: gc.init.small_random((UNITS, UNITS), rng),
    "Xavier": lambda rng: gc.init.xavier((UNITS, UNITS), rng, layout="in_out"),
    "He": lambda rng: gc.init.he((UNITS, UNITS), rng, layout="in_out"),
}


def layer_stats(fn, init, seed=0):
    """gc.diagnostics.activation_stats of every layer, for weights drawn by `init`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, UNITS))
    weights = [init(rng) for _ in range(LAYERS)]
    return gc.diagnostics.activation_stats(fn.forward(x, *weights))


def table(fn, seed=0):
    """{init name: [std of layer 1, ..., std of layer 10]}"""
    return {name: [s.std for s in layer_stats(fn, init, seed).values()] for name, init in INITS.items()}


def print_table(title, stds):
    print(title)
    print(f"{'layer':>5}" + "".join(f"{name:>14}" for name in stds))
    for k in range(LAYERS):
        print(f"{k + 1:>5}" + "".join(f"{col[k]:>14.4g}" for col in stds.values()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--relu", action="store_true", help="also the net with ReLU units")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", metavar="PNG", help="plot the std per layer (needs matplotlib)")
    args = ap.parse_args(argv)
    tables = {"tanh": table(gc.compile(tanh_net), args.seed)}
    print_table("activation std per layer, tanh units", tables["tanh"])
    if args.relu:
        tables["relu"] = table(gc.compile(relu_net), args.seed)
        print()
        print_table("activation std per layer, ReLU units", tables["relu"])
    if args.plot:
        history = gc.diagnostics.History()
        for unit, stds in tables.items():
            for name, col in stds.items():
                for k, s in enumerate(col, start=1):
                    history.log(k, **{f"{unit}, {name}": s})
        panels = [[n for n in history.series if n.startswith(unit)] for unit in tables]
        history.plot(args.plot, panels=panels, beta=0, log_y=list(history.series), xlabel="layer",
                     title="std of the activations per layer")
        print(f"plot written to {args.plot}")
    return tables


if __name__ == "__main__":
    main()
