"""A vectorized example: f = ||W x||^2, with W a 2x2 matrix and x a 2-vector.

At W = [[0.1, 0.5], [-0.3, 0.8]], x = (0.2, 0.4):
f = 0.116,  df/dW = [[0.088, 0.176], [0.104, 0.208]] (= 2 q x^T with q = W x),
df/dx = (-0.112, 0.636) (= 2 W^T q).
"""
import numpy as np

import graphc as gc


@gc.graph
def wx_norm(W: gc.Tensor[2, 2], x: gc.Tensor[2]):
    q = (W @ x).named("q")
    return gc.sum(q * q)


if __name__ == "__main__":
    fn = gc.compile(wx_norm)
    print(fn.source)
    W = np.array([[0.1, 0.5], [-0.3, 0.8]])
    x = np.array([0.2, 0.4])
    f, (dW, dx) = fn.value_and_grad(W, x)
    print(f"f = {f:.3f}")     # 0.116
    print("df/dW =\n", dW)    # [[0.088 0.176] [0.104 0.208]]
    print("df/dx =", dx)      # [-0.112  0.636]
