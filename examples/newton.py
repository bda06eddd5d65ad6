"""Newton's method on logistic regression, with the Hessian compiled by graphc, next to
gradient descent; then why deep nets cannot do the same, and how Hessian-vector products
get around it.

Newton's step solves H d = -g with the Hessian H of the loss: near the minimum the error
squares at every step (quadratic convergence), where gradient descent only shrinks it by a
constant factor. For a 784-256-128-10 MLP the Hessian is far too big to build;
gc.hvp gives H v in two passes without it, and conjugate gradients solve H d = -g from
such products alone (Newton-CG, or "Hessian-free" optimisation).

    python examples/newton.py                          # both methods, the tables
    python examples/newton.py --plot docs/newton.png   # and the convergence plot
    graphc compile examples/newton.py:logistic --transform hessian --wrt w -o -
"""
import argparse
import time

import numpy as np

import graphc as gc

D = 6          # five features and a bias column
REG = 1e-3     # L2 regularisation: the loss is strictly convex, so Newton's step is defined


@gc.graph(wrt=("w",))
def logistic(w: gc.Tensor[D], X: gc.Tensor["N", D], y: gc.Tensor["N"]):
    """Mean logistic loss (labels 0 or 1) plus REG * l2(w)."""
    z = X @ w
    return gc.mean(gc.softplus(z) - y * z) + REG * gc.l2(w)


def dataset(n=500, seed=0):
    """Two overlapping classes (not separable: the loss has a finite minimum)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, D - 1)) * np.array([1.0, 2.0, 0.5, 3.0, 1.5])
    true_w = rng.normal(size=D - 1)
    p = 1 / (1 + np.exp(-(features @ true_w + 0.3)))
    X = np.hstack([features, np.ones((n, 1))])
    return X, (rng.random(n) < p).astype(float)


def newton(loss, direction, X, y, tolerance=1e-10, max_steps=50):
    """w <- w + d, with d = direction(w, g) solving H d = -g, until |g| < tolerance; returns
    w and rows (step, loss, |g|)."""
    w, rows = np.zeros(D), []
    for step in range(max_steps + 1):
        value, (g,) = loss.value_and_grad(w, X, y)
        rows.append((step, value, np.linalg.norm(g)))
        if rows[-1][2] < tolerance:
            break
        w = w + direction(w, g)
    return w, rows


def exact_step(hessian, X, y):
    """Newton's step with the whole Hessian: d = -H^-1 g."""
    return lambda w, g: -np.linalg.solve(hessian.forward(w, X, y), g)


def gradient_descent(loss, hessian, X, y, tolerance=1e-10, max_steps=200_000):
    """w <- w - g / L, with L the largest curvature at the start (a safe step size)."""
    w, rows = np.zeros(D), []
    lr = 1 / np.linalg.eigvalsh(hessian.forward(w, X, y))[-1]
    for step in range(max_steps + 1):
        value, (g,) = loss.value_and_grad(w, X, y)
        if step % 100 == 0 or np.linalg.norm(g) < tolerance:
            rows.append((step, value, np.linalg.norm(g)))
        if rows[-1][2] < tolerance:
            break
        w = w - lr * g
    return w, rows


def conjugate_gradients(hvp, b, steps=10, tolerance=1e-12):
    """Solve H d = b from products H v alone (H symmetric positive definite)."""
    d, r = np.zeros_like(b), b.copy()
    p, rr = r.copy(), r @ r
    for _ in range(steps):
        Hp = hvp(p)
        alpha = rr / (p @ Hp)
        d, r = d + alpha * p, r - alpha * Hp
        if np.sqrt(r @ r) < tolerance:
            break
        p, rr = r + (r @ r) / rr * p, r @ r
    return d


def cg_step(hvp, X, y):
    """Newton's step from Hessian-vector products alone: H d = -g by conjugate gradients."""
    return lambda w, g: conjugate_gradients(lambda v: hvp.forward(w, X, y, v), -g, steps=D)


@gc.graph(wrt=("W1", "b1", "W2", "b2", "W3", "b3"))
def mlp(x: gc.Tensor["B", 784], labels: gc.Tensor["B", 10], W1: gc.Tensor[256, 784], b1: gc.Tensor[256],
        W2: gc.Tensor[128, 256], b2: gc.Tensor[128], W3: gc.Tensor[10, 128], b3: gc.Tensor[10]):
    h1 = gc.relu(gc.linear(x, W1, b1))
    h2 = gc.relu(gc.linear(h1, W2, b2))
    return gc.softmax_cross_entropy(gc.linear(h2, W3, b3), labels)


def mlp_hessian_free(target="numpy", batch=64, seed=0):
    """The MLP's parameter count, its Hessian's size, and the time of one H v product."""
    rng = np.random.default_rng(seed)
    shapes = [n.shape for n in mlp.inputs[2:]]
    params = [rng.normal(size=s) * (np.sqrt(2 / s[-1]) if len(s) == 2 else 0) for s in shapes]
    x, labels = rng.normal(size=(batch, 784)), np.eye(10)[rng.integers(0, 10, batch)]
    count = sum(int(np.prod(s)) for s in shapes)
    hvp = gc.compile(gc.hvp(mlp), target=target)
    vs = [rng.normal(size=s) for s in shapes]
    hvp.forward(x, labels, *params, *vs)
    start = time.perf_counter()
    for _ in range(5):
        hvp.forward(x, labels, *params, *vs)
    return count, (time.perf_counter() - start) / 5


def report(rows, title, quadratic=True):
    """The rows as a table, with |g_k+1| / |g_k|^2 (Newton: bounded, the error squares) or
    the ratio of successive rows (gradient descent: a constant below 1, linear convergence)."""
    print(f"\n{title}")
    print(f"{'step':>7} {'loss':>20} {'|grad|':>10} {'|g_k+1|/|g_k|^2' if quadratic else 'ratio':>16}")
    for k, (step, value, norm) in enumerate(rows):
        before = rows[k - 1][2] if k else 0
        ratio = f"{norm / (before ** 2 if quadratic else before):16.3g}" if before > 0 else " " * 16
        print(f"{step:>7} {value:20.15f} {norm:10.2e} {ratio}")


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main(target="numpy", plot=None, tolerance=1e-10, mlp_batch=64):
    X, y = dataset()
    loss = gc.compile(logistic, target=target)
    hessian = gc.compile(gc.hessian(logistic, wrt="w"), target=target)
    hvp = gc.compile(gc.hvp(logistic, wrt="w"), target=target)
    (w_newton, newton_rows), t_newton = timed(newton, loss, exact_step(hessian, X, y), X, y, tolerance)
    (w_gd, gd_rows), t_gd = timed(gradient_descent, loss, hessian, X, y, tolerance)
    (w_cg, cg_rows), t_cg = timed(newton, loss, cg_step(hvp, X, y), X, y, tolerance)
    report(newton_rows, "Newton's method (gc.hessian): the error squares at every step")
    report(gd_rows[-5:], f"gradient descent: {gd_rows[-1][0]} steps (the last rows, every 100th step)",
           quadratic=False)
    print(f"\n{'method':<18} {'steps':>7} {'time':>9}  to |grad| < {tolerance:g}")
    for name, rows, seconds in (("Newton", newton_rows, t_newton), ("gradient descent", gd_rows, t_gd),
                                ("Newton-CG (hvp)", cg_rows, t_cg)):
        print(f"{name:<18} {rows[-1][0]:>7} {seconds * 1000:8.1f}ms")
    print(f"the three minima agree to {max(np.abs(w_newton - w_gd).max(), np.abs(w_newton - w_cg).max()):.1e}")
    count, seconds = mlp_hessian_free(target, mlp_batch)
    print(f"\nthe 784-256-128-10 MLP has {count:,} parameters: its Hessian would have {count ** 2:.2e} "
          f"entries ({count ** 2 * 8 / 1e9:,.0f} GB in float64);\none gc.hvp product over a batch of "
          f"{mlp_batch} takes {seconds * 1000:.1f} ms, and conjugate gradients need a few dozen of them")
    if plot:
        history = gc.diagnostics.History()
        for step, _, norm in newton_rows:
            history.log(step, newton=norm)
        for step, _, norm in gd_rows:
            history.log(step, gradient_descent=norm)
        history.plot(plot, panels=[["newton"], ["gradient_descent"]], beta=0, log_y=("newton", "gradient_descent"),
                     title="|gradient| of the logistic loss against the iteration", xlabel="iteration")
        print(f"wrote {plot}")
    return {"newton": newton_rows, "gd": gd_rows, "newton_cg": cg_rows, "w": w_newton, "mlp_parameters": count}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="numpy", choices=("numpy", "numba"))
    parser.add_argument("--plot", metavar="PNG", help="write the convergence plot")
    args = parser.parse_args()
    main(args.target, args.plot)
