"""ReLU on a vector, with the upstream gradient given (the max gate routes).

At x = (1, -2, 3, -1) with dL/dy = (4, -1, 5, 9):  dL/dx = (4, 0, 5, 0).
The gradient passes where x > 0 and is blocked elsewhere.
"""
import numpy as np

import graphc as gc


@gc.graph
def relu_vector(x: gc.Tensor[4]):
    return gc.relu(x)


if __name__ == "__main__":
    fn = gc.compile(relu_vector)
    print(fn.source)
    x = np.array([1.0, -2.0, 3.0, -1.0])
    upstream = np.array([4.0, -1.0, 5.0, 9.0])
    (dx,) = fn.backward(x, grad_out=upstream)
    print("y     =", fn.forward(x))     # [1. 0. 3. 0.]
    print("dL/dx =", dx)                # [4. 0. 5. 0.]
