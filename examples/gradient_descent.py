"""Gradient descent on f(w) = (w + 5)**2, learning rate 0.02, starting at w = 3.

w = 2.68 after step 1, 2.3728 after step 2, -4.9937 after step 175 (the minimum is -5).
The compiled gradient is called from a plain Python loop.
"""
import numpy as np

import graphc as gc


@gc.graph
def parabola(w):
    return (w + 5) ** 2


def descend(w=3.0, lr=0.02, steps=175):
    """The iterates w_1, ..., w_steps of w <- w - lr * df/dw."""
    fn = gc.compile(parabola)
    path = []
    for _ in range(steps):
        (dw,) = fn.backward(w)
        w = w - lr * dw
        path.append(w)
    return path


def descend_with_optimizer(w=3.0, lr=0.02, steps=175):
    """The same iterates from gc.optim.SGD, which updates a dict of parameters in place."""
    fn = gc.compile(parabola)
    params, opt, path = {"w": np.array(w)}, gc.optim.SGD(lr=lr), []
    for _ in range(steps):
        opt.step(params, fn.backward(**params))
        path.append(float(params["w"]))
    return path


if __name__ == "__main__":
    path = descend()
    for step in (1, 2, 3, 10, 50, 100, 175):
        print(f"step {step:3d}: w = {path[step - 1]:.4f}")   # 2.6800, 2.3728, ..., -4.9937
    assert descend_with_optimizer() == path
    print("gc.optim.SGD(lr=0.02) takes the same steps")
