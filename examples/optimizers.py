"""Six optimizers on one loss surface: the Rosenbrock valley f(x, y) = (1 - x)**2 + 100 (y - x**2)**2,
from (-1.5, 2) towards the minimum at (1, 1), 1,000 steps each, every one with a learning
rate that suits it. Plain SGD crawls along the curved valley floor; momentum and Nesterov
roll down it; AdaGrad's steps shrink as its cache grows; RMSProp and Adam rescale each
coordinate and get there first.

    python examples/optimizers.py [--steps 1000] [--plot docs/optimizers.png]
"""
import argparse

import numpy as np

import graphc as gc

START, MINIMUM = (-1.5, 2.0), (1.0, 1.0)


@gc.graph
def rosenbrock(p: gc.Tensor[2]):
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


OPTIMIZERS = {
    "SGD": lambda: gc.optim.SGD(lr=1e-3),
    "Momentum": lambda: gc.optim.SGD(lr=5e-4, momentum=0.9),
    "Nesterov": lambda: gc.optim.SGD(lr=5e-4, momentum=0.9, nesterov=True),
    "AdaGrad": lambda: gc.optim.AdaGrad(lr=0.3),
    "RMSProp": lambda: gc.optim.RMSProp(lr=1e-2),
    "Adam": lambda: gc.optim.Adam(lr=0.1),
}


def trajectory(fn, opt, steps, start=START):
    """The points visited, start included, and the final loss."""
    params = {"p": np.array(start, dtype=np.float64)}
    path = [params["p"].copy()]
    for _ in range(steps):
        _, grads = fn.value_and_grad(**params)
        opt.step(params, grads)
        path.append(params["p"].copy())
    return np.array(path), fn.forward(**params)


def run(steps=1000):
    fn = gc.compile(rosenbrock)
    return {name: trajectory(fn, make(), steps) for name, make in OPTIMIZERS.items()}


def plot(results, path):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.0, 4.5))
    ax = fig.add_subplot()
    x, y = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
    f = (1 - x) ** 2 + 100 * (y - x * x) ** 2
    ax.contour(x, y, np.log10(f + 1e-3), levels=20, cmap="Greys", linewidths=0.6)
    for name, (points, loss) in results.items():
        ax.plot(points[:, 0], points[:, 1], linewidth=1.3, label=f"{name} (f = {loss:.1e})")
    ax.plot(*START, "ko")
    ax.plot(*MINIMUM, "k*", markersize=12)
    ax.set_xlim(-2, 2)
    ax.set_ylim(-1, 3)
    ax.set_title(f"Rosenbrock, {len(next(iter(results.values()))[0]) - 1} steps")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=72)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--plot", metavar="PNG", help="draw the trajectories here (needs matplotlib)")
    args = ap.parse_args(argv)
    results = run(args.steps)
    for name, (points, loss) in results.items():
        x, y = points[-1]
        print(f"{name:>9}: f = {loss:.3e} at ({x:+.4f}, {y:+.4f}), "
              f"distance to the minimum {np.hypot(x - 1, y - 1):.4f}")
    if args.plot:
        plot(results, args.plot)
        print(f"trajectories written to {args.plot}")
    return results


if __name__ == "__main__":
    main()
