"""Update rules compiled like models: the optimizers' steps (optim.py writes the rules;
the names of a step's inputs and outputs and the compiled step are here) and batch
norm's running averages. A rule is a Python function over graph values; graphc traces
it into a graph and compiles it, without gradients, on the model's target, so the
update runs as one generated module (a fused loop per array on the Numba targets)."""
from __future__ import annotations

import inspect
import keyword

import numpy as np

from ..compiler import compile
from ..frontend import graph as trace_graph
from ..graph.ir import GraphError
from ..graph.tensor import TensorSpec
from ..runtime import CompiledGraph
from .device import full, on_device, write


def compile_rule(name, inputs, rule, target="numpy", dtype="float64", in_place=None) -> CompiledGraph:
    """Compile `rule({input name: value}) -> {output name: value}` over `inputs`, a list
    of (name, shape) in the order of the generated functions' arguments (() for a scalar).
    `in_place` ({output name: input name}) lets an output be written into that input's
    array where the target can do so safely (the numba target's loops): the caller then
    gets the input array itself back, already updated."""
    names = [n for n, _ in inputs]
    parameters = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=TensorSpec(shape))
                  for n, shape in inputs]

    def update(*args):
        return rule(dict(zip(names, args)))

    update.__signature__ = inspect.Signature(parameters)
    g = trace_graph(update, name=name)
    if len(g.outputs) == 1:   # a single output comes back bare: run_rule names it
        g.output_kind = "single"
    g.in_place = dict(in_place or {})
    return compile(g, target=target, wrt=(), dtype=dtype)


def run_rule(fn, args):
    """The outputs of fn.forward(**args), as a dict of output name -> value."""
    out = fn.forward(**args)
    return out if isinstance(out, dict) else {fn.outputs[0]: out}


def update_names(keys, slots, scalars):
    """Input and output names of the update module: the parameters' own names where
    they are identifiers that cannot collide (W1, dW1, v_W1 -> W1_new, v_W1_new),
    else p0, p1, ..."""
    def plan(labels):
        return {k: {"p": lab, "g": f"d{lab}", **{s: f"{s}_{lab}" for s in slots},
                    "out": {"p": f"{lab}_new", **{s: f"{s}_{lab}_new" for s in slots}}}
                for k, lab in zip(keys, labels)}
    readable = all(isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k)
                   and not k.startswith("_") for k in keys)
    if readable:
        names = plan(keys)
        flat = [n for v in names.values() for n in [v["p"], v["g"], *[v[s] for s in slots], *v["out"].values()]]
        if len(set(flat)) == len(flat) and not set(flat) & (set(scalars) | {"grad_out"}):
            return names
    return plan([f"p{i}" for i in range(len(keys))])


class CompiledUpdate:
    """A compiled update rule and the names of its inputs and outputs. On the CPU targets
    `sources` says where each positional argument of the module's `forward` comes from
    ((role, key): a parameter "p", its gradient "g", a state slot, or a scalar) and
    `results` which array each of its outputs goes to, so that `step` can call the module
    directly when every array already has the rule's dtype and shape (`Optimizer._direct`)."""

    def __init__(self, fn, names, signature, slots, scalar_names):
        self.fn = fn
        self.names = names
        by_input = {n[role]: (role, key) for key, n in names.items() for role in ("p", "g") + slots}
        by_input.update((s, ("scalar", s)) for s in scalar_names)
        self.sources = None if fn.backend.device_arrays else [by_input[name] for name in fn.inputs]
        by_output = {n["out"][role]: (role, key) for key, n in names.items() for role in ("p",) + slots}
        self.results = [by_output[name] for name in fn.outputs]
        self.shapes = dict(signature)
        self.dtype = np.dtype(fn.dtype)


class RunningAverages:
    """Batch norm's running averages, kept between the training and the inference graph:

        avg = momentum * avg + (1 - momentum) * batch value

    (the lectures' convention, momentum 0.9; PyTorch's momentum=0.1 is 1 - this one, and
    PyTorch averages the unbiased variance: unbiased=True with update(..., batch_size=n)).
    `graph` is the training or the inference graph (or its compiled function): it names
    the averages; means start at 0 and variances at 1. After each training step call
    `update(outputs)` with the training graph's outputs; pass `values` to the inference
    graph: eval_fn.forward(x, **params, **running.values). On the cuda target the values
    are device arrays, updated on the device from device outputs (gc.to_host(values)
    brings them back)."""

    def __init__(self, graph, momentum=0.9, unbiased=False, target=None, dtype=None):
        if isinstance(graph, CompiledGraph):   # the update runs where the model runs
            target, dtype = target or graph.target, dtype or graph.dtype
            graph = graph.graph
        target, dtype = target or "numpy", dtype or "float64"
        if not graph.running:
            raise GraphError(f"graph '{graph.name}' has no running averages (no gc.batch_norm)")
        if not 0 <= momentum < 1:
            raise ValueError(f"RunningAverages: momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.unbiased = bool(unbiased)
        self.kinds, self.values = {}, {}
        make = full if on_device(target) else np.full   # on cuda they live on the GPU
        for name, (kind, node) in graph.running.items():
            shape = node.shape if node is not None else graph.input(name).shape
            if not all(isinstance(d, int) for d in shape):
                raise GraphError(f"graph '{graph.name}': running average '{name}' has a symbolic "
                                 f"shape {shape}; give the features a fixed size")
            self.kinds[name] = kind
            self.values[name] = make(tuple(shape), 1.0 if kind == "var" else 0.0, dtype=dtype)
        self.target, self.dtype = target, dtype
        self._fn = None

    def __repr__(self):
        return f"<graphc.optim.RunningAverages {', '.join(self.values)} momentum={self.momentum}>"

    def update(self, outputs, batch_size=None):
        """Fold the batch statistics in `outputs` (a dict, as the training graph returns)."""
        missing = [k for k in self.values if k not in outputs]
        if missing:
            raise KeyError(f"RunningAverages.update: the outputs lack {', '.join(missing)} "
                           "(pass the training graph's outputs)")
        correction = 1.0
        if self.unbiased:
            if batch_size is None or batch_size < 2:
                raise ValueError("RunningAverages(unbiased=True).update needs batch_size >= 2")
            correction = batch_size / (batch_size - 1)
        args = {**self.values, **{f"batch_{k}": outputs[k] for k in self.values},
                "momentum": self.momentum, "correction": correction}
        out = run_rule(self._compiled(), args)
        for k in self.values:
            write(self.values[k], out[f"{k}_new"])

    def _compiled(self):
        if self._fn is None:
            inputs = [(n, tuple(self.values[base].shape)) for base in self.values for n in (base, f"batch_{base}")]

            def rule(x):
                out = {}
                for name, kind in self.kinds.items():
                    batch = x[f"batch_{name}"] * x["correction"] if kind == "var" else x[f"batch_{name}"]
                    out[f"{name}_new"] = x["momentum"] * x[name] + (1 - x["momentum"]) * batch
                return out

            self._fn = compile_rule("running_averages", inputs + [("momentum", ()), ("correction", ())],
                                    rule, target=self.target, dtype=self.dtype,
                                    in_place={f"{k}_new": k for k in self.values})
        return self._fn
