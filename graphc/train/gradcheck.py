"""Gradients against central differences, as the lectures' "gradient check"."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GradcheckResult:
    errors: dict          # input name -> largest relative error over the checked elements
    checked: dict         # input name -> number of elements checked
    tolerance: float

    @property
    def ok(self):
        return all(e <= self.tolerance for e in self.errors.values())

    def __str__(self):
        width = max([len(k) for k in self.errors] + [5])
        rows = [f"{'input':<{width}}  {'checked':>7}  {'max rel error':>13}  result"]
        for name, err in self.errors.items():
            rows.append(f"{name:<{width}}  {self.checked[name]:>7}  {err:>13.2e}  "
                        f"{'ok' if err <= self.tolerance else 'FAIL'}")
        return "\n".join(rows)


def relative_error(analytic, numeric, floor=1e-7):
    """|a - n| / max(|a|, |n|), with a floor so that two near-zero values agree: a
    central difference carries rounding noise of about 1e-16 * |f| / h, so gradients
    smaller than that noise over the tolerance are compared on an absolute scale."""
    return float(np.max(np.abs(analytic - numeric) / np.maximum(
        np.maximum(np.abs(analytic), np.abs(numeric)), floor), initial=0.0))


def gradcheck(compiled, inputs, h=1e-6, tolerance=1e-5, max_elements=64, seed=0):
    """Compare compiled.value_and_grad with central differences of compiled.forward.

    `inputs` is a dict or a sequence in the order of compiled.inputs. A non-scalar
    first output is checked through a random projection (grad_out). At most
    `max_elements` entries per input are perturbed (chosen at random, seeded).
    """
    if not isinstance(inputs, dict):
        inputs = dict(zip(compiled.inputs, inputs))
    values = {k: np.array(v) if np.asarray(v).dtype.kind in "iu" and k not in compiled.wrt
              else np.array(v, dtype=np.float64) for k, v in inputs.items()}   # integer inputs stay integers
    rng = np.random.default_rng(seed)
    first = compiled.forward(**values)
    first = first[0] if isinstance(first, tuple) else first
    first = next(iter(first.values())) if isinstance(first, dict) else first
    seed_v = None if np.ndim(first) == 0 else rng.standard_normal(np.shape(first))

    def objective(vals):
        out = compiled.forward(**vals)
        out = out[0] if isinstance(out, tuple) else out
        out = next(iter(out.values())) if isinstance(out, dict) else out
        return float(out) if seed_v is None else float(np.sum(np.asarray(out) * seed_v))

    f0 = objective(values)
    grads = compiled.backward(**values, grad_out=seed_v) if seed_v is not None else \
        compiled.value_and_grad(**values)[1]
    errors, checked = {}, {}
    for name, grad in zip(compiled.wrt, grads):
        x = values[name]
        flat = np.arange(x.size)
        if x.size > max_elements:
            flat = np.sort(rng.choice(x.size, size=max_elements, replace=False))
        analytic, numeric = [], []
        for k in flat:
            idx = np.unravel_index(k, x.shape) if x.shape else ()
            old = x[idx] if x.shape else float(x)
            vals = dict(values)
            for delta, store in ((h, "plus"), (-h, "minus")):
                xp = np.array(x, copy=True)
                if x.shape:
                    xp[idx] = old + delta
                else:
                    xp = np.array(old + delta)
                vals[name] = xp
                if store == "plus":
                    f_plus = objective(vals)
                else:
                    f_minus = objective(vals)
            numeric.append((f_plus - f_minus) / (2 * h))
            analytic.append(np.asarray(grad)[idx] if x.shape else float(grad))
        noise = np.finfo(np.float64).eps * max(1.0, abs(f0)) / h
        errors[name] = relative_error(np.array(analytic), np.array(numeric),
                                      floor=max(1e-7, 10 * noise / tolerance))
        checked[name] = len(flat)
    return GradcheckResult(errors, checked, tolerance)
