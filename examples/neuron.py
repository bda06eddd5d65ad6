"""The sigmoid neuron of the backprop lecture: f = sigmoid(w0*x0 + w1*x1 + w2).

At w = (2, -3, -3), x = (-1, -2):  f = 0.73106, and
df/dw0 = -0.19661, df/dx0 = 0.39322, df/dw1 = -0.39322, df/dx1 = -0.58984, df/dw2 = 0.19661.
The sigmoid's local gradient is y * (1 - y) = 0.19661.

    graphc compile examples/neuron.py -o -
"""
import graphc as gc


@gc.graph
def neuron(w0, x0, w1, x1, w2):
    return gc.sigmoid(w0 * x0 + w1 * x1 + w2)


if __name__ == "__main__":
    fn = gc.compile(neuron)
    print(fn.source)
    value, grads = fn.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
    print(f"f = {value:.5f}")                                   # 0.73106
    for name, g in zip(fn.wrt, grads):
        print(f"df/d{name} = {g:.5f}")   # -0.19661, 0.39322, -0.39322, -0.58984, 0.19661
