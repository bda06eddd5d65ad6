"""Learning-rate schedules: functions of the step (or epoch) count t = 0, 1, 2, ...

    opt = gc.optim.SGD(lr=gc.schedules.cosine(0.1, period=1000), momentum=0.9)   # per step
    opt.lr = gc.schedules.step_decay(0.1, every=10)(epoch)                     # or per epoch, by hand

An optimizer given a schedule as its lr evaluates it at its own step count before
each step (t = 0 for the first). Every schedule is a plain callable; `values(n)`
lists its first n values.
"""
from __future__ import annotations

import math


class Schedule:
    """A learning rate as a function of t, with a readable repr."""

    def __init__(self, fn, text):
        self._fn = fn
        self._text = text

    def __call__(self, t):
        if t < 0:
            raise ValueError(f"{self._text}: t counts steps from 0, got {t}")
        return float(self._fn(t))

    def values(self, n):
        return [self(t) for t in range(n)]

    def __repr__(self):
        return f"<graphc.schedules {self._text}>"


def constant(lr0):
    """lr0 at every step."""
    return Schedule(lambda t: lr0, f"constant({lr0})")


def step_decay(lr0, every, factor=0.5):
    """lr0 * factor ** floor(t / every): the rate drops by `factor` every `every` steps
    (PyTorch's StepLR(step_size=every, gamma=factor))."""
    if every < 1:
        raise ValueError(f"step_decay: every must be >= 1, got {every}")
    return Schedule(lambda t: lr0 * factor ** (t // every), f"step_decay({lr0}, every={every}, factor={factor})")


def exponential_decay(lr0, k):
    """lr0 * exp(-k * t) (PyTorch's ExponentialLR with gamma = exp(-k))."""
    return Schedule(lambda t: lr0 * math.exp(-k * t), f"exponential_decay({lr0}, k={k})")


def inverse_time_decay(lr0, k):
    """1/t decay: lr0 / (1 + k * t)."""
    return Schedule(lambda t: lr0 / (1 + k * t), f"inverse_time_decay({lr0}, k={k})")


def cosine(lr0, period, lr_min=0.0):
    """Cosine annealing from lr0 down to lr_min over `period` steps, then lr_min:
    lr_min + (lr0 - lr_min) * (1 + cos(pi * t / period)) / 2 (PyTorch's CosineAnnealingLR
    with T_max = period, eta_min = lr_min, for t <= period)."""
    if period < 1:
        raise ValueError(f"cosine: period must be >= 1, got {period}")
    return Schedule(lambda t: lr_min + (lr0 - lr_min) * (1 + math.cos(math.pi * min(t, period) / period)) / 2,
                    f"cosine({lr0}, period={period}, lr_min={lr_min})")


def warmup(schedule, steps):
    """`schedule` scaled up linearly over the first `steps` steps: schedule(t) * min(1, (t + 1) / steps)."""
    inner = schedule if callable(schedule) else constant(schedule)
    if steps < 1:
        raise ValueError(f"warmup: steps must be >= 1, got {steps}")
    return Schedule(lambda t: inner(t) * min(1.0, (t + 1) / steps), f"warmup({inner!r}, steps={steps})")
