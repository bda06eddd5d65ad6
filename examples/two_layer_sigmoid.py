"""Two sigmoid layers on scalars: h = sigmoid(w1*x + b1), y = sigmoid(w2*h + b2).

At x = 3, w1 = 1, b1 = -2, w2 = 0.5, b2 = 0.7:
z1 = w1*x + b1 = 1, and the first sigmoid's local gradient sigma'(z1) = h*(1 - h) = 0.19661.
Backprop multiplies it into dy/dz1 = dy/dh * sigma'(z1).
"""
import graphc as gc


@gc.graph
def two_layer_sigmoid(x, w1, b1, w2, b2):
    z1 = (w1 * x + b1).named("z1")
    h = gc.sigmoid(z1).named("h")
    y = gc.sigmoid(w2 * h + b2)
    return {"y": y, "z1": z1, "dsigma_z1": h * (1 - h)}


if __name__ == "__main__":
    fn = gc.compile(two_layer_sigmoid)
    print(fn.source)
    outputs, grads = fn.value_and_grad(3.0, 1.0, -2.0, 0.5, 0.7)
    for name, value in outputs.items():
        print(f"{name} = {value:.5f}")          # y = 0.74375, z1 = 1.00000, dsigma_z1 = 0.19661
    for name, g in zip(fn.wrt, grads):
        print(f"dy/d{name} = {g:.5f}")
