"""Vanishing gradients, drawn: ten sigmoid layers against ten ReLU layers.

The sigmoid's local gradient y*(1 - y) is at most 1/4, so every sigmoid layer shrinks
the gradient flowing back: with Xavier weights W = N(0, 1)/sqrt(fan_in), the gradient
reaching the first layer's weights is about a million times smaller than at the last.
ReLU passes the gradient unchanged where it is active, and with the same weights the
gradients of its ten layers stay within a factor of a few. Small weights, W = 0.01*N(0, 1),
shrink the activations and the gradients at every layer whatever the activation.

    python examples/vanishing_gradients.py [OUT.svg|.png]   # the table, and the picture
    graphc render examples/vanishing_gradients.py --collapse -o vg.svg   # uniform random weights

In the picture each gc.scope (a layer) is one box; the wire of each weight shows the
norm of its gradient, and the wires' colour and width follow it on a log scale.
"""
import sys

import numpy as np

import graphc as gc

LAYERS, UNITS, BATCH = 10, 50, 100
X = gc.Tensor["B", UNITS]
W = gc.Tensor[UNITS, UNITS]


def network(x, y, weights, activation):
    h = x
    for k, Wk in enumerate(weights, start=1):
        with gc.scope(f"layer{k}"):
            h = activation(h @ Wk)
    with gc.scope("loss"):
        return gc.mse(h, y)


@gc.graph
def sigmoid_vs_relu(x: X, y: X,
                    S1: W, S2: W, S3: W, S4: W, S5: W, S6: W, S7: W, S8: W, S9: W, S10: W,
                    R1: W, R2: W, R3: W, R4: W, R5: W, R6: W, R7: W, R8: W, R9: W, R10: W):
    """Both networks on the same batch; the sum of their losses is differentiated, so each
    network's weights get exactly the gradient of its own loss."""
    with gc.scope("sigmoid"):
        sigmoid_loss = network(x, y, (S1, S2, S3, S4, S5, S6, S7, S8, S9, S10), gc.sigmoid)
    with gc.scope("relu"):
        relu_loss = network(x, y, (R1, R2, R3, R4, R5, R6, R7, R8, R9, R10), gc.relu)
    return sigmoid_loss + relu_loss


def small(rng):
    return [0.01 * rng.standard_normal((UNITS, UNITS)) for _ in range(LAYERS)]


def xavier(rng):
    return [rng.standard_normal((UNITS, UNITS)) / np.sqrt(UNITS) for _ in range(LAYERS)]


def inputs(init, seed=0):
    """A batch, its targets, and both networks' weights drawn by `init`."""
    rng = np.random.default_rng(seed)
    values = {"x": rng.standard_normal((BATCH, UNITS)), "y": rng.uniform(0, 1, (BATCH, UNITS))}
    for prefix in "SR":
        values.update({f"{prefix}{k}": w for k, w in enumerate(init(rng), start=1)})
    return values


def gradient_norms(fn, values):
    """{"sigmoid": [norm of the gradient of W1, ..., W10], "relu": [...]}."""
    _, grads = fn.value_and_grad(**values)
    norms = dict(zip(fn.wrt, (float(np.linalg.norm(g)) for g in grads)))
    return {name: [norms[f"{prefix}{k}"] for k in range(1, LAYERS + 1)]
            for name, prefix in (("sigmoid", "S"), ("relu", "R"))}


if __name__ == "__main__":
    fn = gc.compile(sigmoid_vs_relu)
    table = {}
    for init_name, init in (("0.01*N(0,1)", small), ("Xavier", xavier)):
        for net, norms in gradient_norms(fn, inputs(init)).items():
            table[f"{net}, {init_name}"] = norms
    print("norm of the gradient of each layer's weights")
    print(f"{'layer':>5}" + "".join(f"{name:>22}" for name in table))
    for k in range(LAYERS):
        print(f"{k + 1:>5}" + "".join(f"{norms[k]:>22.3g}" for norms in table.values()))
    path = sys.argv[1] if len(sys.argv) > 1 else "vanishing_gradients.svg"
    gc.render(sigmoid_vs_relu, inputs(xavier), path=path, collapse=True)   # the README's picture
    print(f"wrote {path}: both networks with Xavier weights")
