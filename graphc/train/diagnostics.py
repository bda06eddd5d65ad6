"""What the lectures ask you to watch while training:

- the update/parameter ratio per parameter (`update_ratios`): about 1e-3 is healthy;
  much lower, the learning rate is too small; much higher, too large;
- activation mean and std per layer (`activation_stats`, `plot_activations`): the
  initialisation table, where activations vanish or saturate;
- the dead-ReLU fraction (`dead_fraction`): units that output 0 for every example;
- loss and accuracy curves with their moving average (`History`, `ema`).

Plots are PNG files written with matplotlib when it is installed (pip install
'graphc[plot]'); nothing here imports it until a plot is asked for. `progress`
wraps a loop in a tqdm progress bar when tqdm is installed.
"""
from __future__ import annotations

import importlib.util
from typing import NamedTuple

import numpy as np


def accuracy(scores, labels):
    """The fraction of rows whose largest score is at the label (integers, or one-hot rows)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if labels.ndim == scores.ndim:
        labels = labels.argmax(axis=-1)
    return float(np.mean(scores.argmax(axis=-1) == labels))


# ---- updates -------------------------------------------------------------------------

def snapshot(params):
    """A copy of the parameters, to measure the next update against."""
    return {k: np.array(v, copy=True) for k, v in params.items()}


def update_ratios(before, after):
    """{name: ||after - before|| / ||before||}: the size of the last update relative to the
    parameter (the lectures' rule of thumb: about 1e-3)."""
    out = {}
    for k, old in before.items():
        old = np.asarray(old, dtype=np.float64)
        step = np.linalg.norm(np.asarray(after[k], dtype=np.float64) - old)
        scale = np.linalg.norm(old)
        out[k] = float(step / scale) if scale > 0 else float("inf") if step > 0 else 0.0
    return out


# ---- activations ----------------------------------------------------------------------

class Stats(NamedTuple):
    mean: float
    std: float
    dead: float     # fraction of units (last axis) that are <= 0 for every example


def dead_fraction(h):
    """The fraction of units (the last axis) whose output is <= 0 for every example
    (every other axis): dead ReLUs, which no gradient can revive."""
    h = np.asarray(h)
    if h.ndim == 0:
        return float(h <= 0)
    alive = np.any(h.reshape(-1, h.shape[-1]) > 0, axis=0)
    return float(1.0 - np.mean(alive))


def activation_stats(activations):
    """{layer: Stats(mean, std, dead)} for a dict of activations (a graph's outputs)."""
    return {k: Stats(float(np.mean(h)), float(np.std(h)), dead_fraction(h)) for k, h in activations.items()}


# ---- curves ---------------------------------------------------------------------------

def ema(values, beta=0.9):
    """Exponential moving average with bias correction: m_t = beta m_{t-1} + (1 - beta) x_t,
    reported as m_t / (1 - beta**t), so the first values are not pulled towards 0."""
    out, m = [], 0.0
    for t, x in enumerate(values, start=1):
        m = beta * m + (1 - beta) * float(x)
        out.append(m / (1 - beta ** t))
    return np.array(out)


def moving_average(values, window):
    """The mean of the last `window` values at each point (fewer at the start)."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


class History:
    """Named series of (step, value): losses, accuracies, update ratios.

        history.log(step, loss=loss, train_acc=acc)
        history["loss"], history.steps("loss"), history.smoothed("loss")
        history.plot("curves.png")          # one panel per group, raw values and their EMA
    """

    def __init__(self):
        self.series = {}

    def log(self, step=None, **values):
        for name, value in values.items():
            steps, vals = self.series.setdefault(name, ([], []))
            steps.append(len(steps) if step is None else step)
            vals.append(float(value))

    def __getitem__(self, name):
        return np.array(self.series[name][1])

    def __contains__(self, name):
        return name in self.series

    def steps(self, name):
        return np.array(self.series[name][0])

    def last(self, name):
        return self.series[name][1][-1]

    def smoothed(self, name, beta=0.9):
        return ema(self.series[name][1], beta)

    def plot(self, path, panels=None, beta=0.9, title=None, log_y=(), xlabel="step"):
        """Write a PNG: one panel per group of series (default: losses, accuracies, the
        rest); a series of more than 100 points is drawn faintly with its moving average
        (beta; 0 for none) over it. Needs matplotlib."""
        if panels is None:
            names = list(self.series)
            losses = [n for n in names if "loss" in n]
            accs = [n for n in names if "acc" in n and n not in losses]
            rest = [[n] for n in names if n not in losses and n not in accs]
            panels = [g for g in (losses, accs) if g] + rest
        fig = _figure(figsize=(4.2 * len(panels), 3.2))
        for k, group in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), k + 1)
            for name in group:
                steps, values = self.steps(name), self[name]
                if len(values) > 100 and beta:
                    line, = ax.plot(steps, values, alpha=0.35, linewidth=0.8)
                    ax.plot(steps, self.smoothed(name, beta), color=line.get_color(), label=f"{name} (EMA {beta})")
                else:
                    ax.plot(steps, values, marker="." if len(values) <= 50 else None, label=name)
            if any(n in log_y for n in group):
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        return _save(fig, path)


# ---- plots ----------------------------------------------------------------------------

def plotting_available():
    """Whether matplotlib is installed (the `plot` extra)."""
    return importlib.util.find_spec("matplotlib") is not None


def _figure(**kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("graphc's plots need matplotlib: pip install 'graphc[plot]'") from None
    return Figure(**kwargs)


def _save(fig, path, dpi=80):
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def plot_activations(activations, path, bins=50, title=None):
    """The lectures' initialisation figure: the mean and std of each layer's activations,
    and a histogram per layer. Needs matplotlib."""
    stats = activation_stats(activations)
    names = list(stats)
    fig = _figure(figsize=(2.0 * len(names) + 4, 3.0))
    grid = fig.add_gridspec(1, len(names) + 2)
    ax = fig.add_subplot(grid[0, :2])
    ax.plot(range(1, len(names) + 1), [s.mean for s in stats.values()], marker="o", label="mean")
    ax.plot(range(1, len(names) + 1), [s.std for s in stats.values()], marker="o", label="std")
    ax.set_xlabel("layer")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for k, name in enumerate(names):
        h = fig.add_subplot(grid[0, k + 2])
        h.hist(np.ravel(activations[name]), bins=bins)
        h.set_title(name, fontsize=8)
        h.tick_params(labelsize=6)
        h.set_yticks([])
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def progress(iterable, total=None, desc=None, disable=False):
    """`iterable` with a tqdm progress bar when tqdm is installed (the `progress` extra)."""
    if disable or importlib.util.find_spec("tqdm") is None:
        return iterable
    if importlib.util.find_spec("ipywidgets") is not None:   # a notebook's widget, where it can draw one
        from tqdm.auto import tqdm
    else:   # tqdm.auto would warn in a notebook without ipywidgets: the text bar works everywhere
        from tqdm.std import tqdm
    return tqdm(iterable, total=total, desc=desc)
