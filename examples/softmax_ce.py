"""Softmax cross-entropy on logits a and one-hot labels y.

The loss is the batch mean of -sum(y * log softmax(a)), so its gradient is
dL/da = (softmax(a) - y) / rows: for one row, exactly softmax(a) - y.
"""
import numpy as np

import graphc as gc


@gc.graph(wrt=("a",))
def softmax_ce(a: gc.Tensor["B", 5], y: gc.Tensor["B", 5]):
    return gc.softmax_cross_entropy(a, y)


def numpy_grad(a, y):
    """The same gradient computed directly: (softmax(a) - y) / rows."""
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True) - y) / a.shape[0]


if __name__ == "__main__":
    fn = gc.compile(softmax_ce)
    print(fn.source)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 5))
    y = np.eye(5)[[1, 4, 0]]
    loss, (da,) = fn.value_and_grad(a, y)
    print(f"loss = {loss:.5f}")
    print("dL/da =\n", da)
    print("(softmax(a) - y) / rows =\n", numpy_grad(a, y))
    print("max difference:", np.abs(da - numpy_grad(a, y)).max())
