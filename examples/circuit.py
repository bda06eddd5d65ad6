"""The first circuit of the backprop lecture: f = (x + y) * z.

At x = -2, y = 5, z = -4:  f = -12,  df/dx = -4,  df/dy = -4,  df/dz = 3.
The add gate distributes the gradient to both of its inputs; the mul gate swaps them.
"""
import graphc as gc


@gc.graph
def circuit(x, y, z):
    q = (x + y).named("q")
    return q * z


if __name__ == "__main__":
    fn = gc.compile(circuit)
    print(fn.source)
    f, (dx, dy, dz) = fn.value_and_grad(-2.0, 5.0, -4.0)
    print(f"f = {f}")                                   # -12.0
    print(f"df/dx = {dx}, df/dy = {dy}, df/dz = {dz}")  # -4.0, -4.0, 3.0
