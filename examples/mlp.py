"""A two-layer MLP classifier, 784-256-10, with ReLU and softmax cross-entropy.

The batch size is the symbolic dimension "B", so one compiled module serves every
batch; the gradient is taken with respect to the parameters only. A few plain SGD
steps on random data show the loss going down.
"""
import numpy as np

import graphc as gc


@gc.graph(wrt=("W1", "b1", "W2", "b2"))
def mlp(x: gc.Tensor["B", 784], y: gc.Tensor["B", 10],
        W1: gc.Tensor[256, 784], b1: gc.Tensor[256],
        W2: gc.Tensor[10, 256], b2: gc.Tensor[10]):
    h = gc.relu(x @ W1.T + b1)
    return gc.softmax_cross_entropy(h @ W2.T + b2, y)   # mean over the batch


def init_params(rng):
    return {"W1": rng.standard_normal((256, 784)) * np.sqrt(2 / 784), "b1": np.zeros(256),
            "W2": rng.standard_normal((10, 256)) * np.sqrt(2 / 256), "b2": np.zeros(10)}


def train(steps=20, lr=0.1, batch=64, seed=0):
    """SGD on a fixed random batch; returns the loss before each step."""
    rng = np.random.default_rng(seed)
    fn = gc.compile(mlp)
    x = rng.standard_normal((batch, 784))
    y = np.eye(10)[rng.integers(0, 10, size=batch)]
    params = init_params(rng)
    losses = []
    for _ in range(steps):
        loss, grads = fn.value_and_grad(x, y, **params)
        for name, g in zip(fn.wrt, grads):
            params[name] -= lr * g
        losses.append(loss)
    return losses


if __name__ == "__main__":
    for step, loss in enumerate(train()):
        print(f"step {step:2d}: loss = {loss:.4f}")
