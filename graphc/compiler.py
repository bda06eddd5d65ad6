"""`gc.compile`: the whole pipeline in a few lines.

    graph --autodiff--> forward + adjoints --lower--> functions --template--> module text
          --write + import--> CompiledGraph (argument checks around the module's functions)
"""
from __future__ import annotations

import functools
import gc
import importlib.util
from pathlib import Path

from .autodiff import differentiate, resolve_wrt
from .backends import TARGETS
from .codegen import cache, fingerprint
from .codegen.render import render
from .graph.ir import Graph, GraphError, format_shape
from .lower.lowering import Lowering
from .lower.outline import outline
from .lower.program import signature
from .runtime import CompiledGraph, is_scalar_graph
from .tiers import Tiers
from .version import __version__

DTYPES = ("float64", "float32")


def compile(graph: Graph, target="numpy", wrt=None, dtype="float64", path=None, tiered=False) -> "CompiledGraph":
    """Compile `graph` to a module of flat forward/backward code and import it. With
    tiered=True (the numba target), calls are answered by the numpy target's module until
    Numba has compiled each function in the background (graphc/tiers.py)."""
    if not isinstance(graph, Graph):
        raise GraphError(f"gc.compile needs a graph (a function decorated with @gc.graph), "
                         f"got {type(graph).__name__}")
    if target not in TARGETS:
        raise GraphError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if dtype not in DTYPES:
        raise GraphError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if tiered:
        interim = TARGETS[target].interim
        if interim is None:
            tiered_targets = [name for name, t in TARGETS.items() if t.interim]
            raise GraphError(f"tiered=True answers calls from another target while this one compiles; the "
                             f"{target} target has nothing to wait for: choose {' or '.join(tiered_targets)}")
        fast = compile(graph, target, wrt, dtype, path)
        slow = compile(graph, interim, wrt, dtype)
        return CompiledGraph(graph, fast.backend, dtype, fast.wrt, fast.source, fast.path,
                             Tiers(slow.module, fast.module, fast.path, graph.name))
    backend = TARGETS[target]
    _check_target(graph, backend, dtype)
    wrt_nodes = resolve_wrt(graph, wrt)
    wrt_names = [w.name for w in wrt_nodes]
    # the same graph compiled before (in any process): import its module, skip generation
    key = None if path is not None else fingerprint.key(graph, wrt_names, target, dtype, backend.blas())
    found = cache.remembered(key) if key else None
    if found:
        path, source = found
    else:
        try:
            source = generate(graph, wrt_nodes, backend, dtype)
        except NotImplementedError as e:   # an op or a shape this target cannot print
            raise GraphError(f"graph '{graph.name}': {e}") from None
        path = cache.store(graph.name, source) if path is None else cache.write(source, path)
        if key:
            cache.remember(key, path, source)
    module = cache.load(path, source)
    return CompiledGraph(graph, backend, dtype, wrt_names, source, path, module)


def _check_target(graph, target, dtype):
    """A clear error, before any work, when the target cannot compile this graph in this
    dtype, or its runtime is not installed."""
    if dtype not in target.dtypes:
        raise GraphError(f"the {target.name} target computes in {' and '.join(target.dtypes)} only, "
                         f"not {dtype}; choose another dtype or target")
    if target.scalars_only:
        node = next((n for n in graph.nodes if n.shape != ()), None)
        if node is not None:
            what = f"input '{node.name}'" if node.op.kind == "input" else f"the {node.op.name} at {node.where}"
            raise GraphError(f"graph '{graph.name}': the {target.name} target compiles graphs of scalars "
                             f"only, and {what} has shape {format_shape(node.shape)}; choose the numpy target "
                             "for tensors")
    modules, hint = target.runtime
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:   # a submodule of a missing package
            found = False
        if not found:
            raise GraphError(f"the {target.name} target needs the Python package {module.split('.')[0]!r}"
                             f"{' (with numba-cuda)' if module == 'numba.cuda' else ''}: {hint}")


def _without_gc_pauses(fn):
    """Generation allocates many small objects and leaves no cycles: the cyclic garbage
    collector's passes over them cost about 40% of the time on big graphs, so it waits."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()
    return wrapper


@_without_gc_pauses
def generate(graph, wrt_nodes, target, dtype):
    """The module text: forward, backward (seeded by grad_out) and value_and_grad."""
    out_name, out = graph.outputs[0]
    scalar = out.shape == ()
    low = Lowering(graph, target, dtype, reserved_extra=("grad_out",))
    params = graph.input_names
    forward = low.function("forward", params, graph, graph.outputs,
                           returns=lambda outs, grads: ", ".join(outs))

    seeded, _, grads = differentiate(graph, wrt_nodes, "input")
    backward = low.function("backward", params, seeded, [], grads=[(w, grads[w]) for w in wrt_nodes],
                            returns=lambda outs, gs: _tuple(gs), seed="1.0" if scalar else "required")

    if scalar:   # value_and_grad seeds with the constant 1, which simplifies away
        seeded, _, grads = differentiate(graph, wrt_nodes, "one")
    value_and_grad = low.function("value_and_grad", params, seeded, graph.outputs,
                                  grads=[(w, grads[w]) for w in wrt_nodes],
                                  returns=lambda outs, gs: f"{_value(outs)}, {_tuple(gs)}",
                                  seed=None if scalar else "required")
    functions, helpers = [forward, backward, value_and_grad], low.helpers
    if target.outlines:   # repeated stretches compiled once (lower/outline.py)
        functions, repeated = outline(functions, low.np)
        helpers = helpers + repeated
    params = ", ".join(params)
    doc = (f"{graph.name}: generated by graphc {__version__} from "
           f"{Path(graph.source.file).name if graph.source else 'an unknown file'} "
           f"({target.name} target, {dtype}).\n\n"
           f"forward({params}) -> {_value(graph.output_names)}\n"
           f"backward({signature(backward)}) -> d{out_name}/d({', '.join(w.name for w in wrt_nodes)})\n"
           f"value_and_grad({params}) -> ({_value(graph.output_names)}, gradients)\n\n"
           "Regenerate with graphc rather than editing.\n")
    return render(target, doc, low.aliases, dtype, graph.input_names, [w.name for w in wrt_nodes],
                  graph.output_names, functions, low.definitions, each=target.per_example and is_scalar_graph(graph),
                  threads=low.loop is not None and low.loop.threads,
                  integers=[k for k, n in enumerate(graph.inputs) if n.dtype == "int"], helpers=helpers, blas=low.blas)


def _tuple(names):
    return f"({names[0]},)" if len(names) == 1 else f"({', '.join(names)})"


def _value(names):
    return names[0] if len(names) == 1 else _tuple(names)
