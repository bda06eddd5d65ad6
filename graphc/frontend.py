"""`@gc.graph`: run a model function once on traced values to build its Graph."""
from __future__ import annotations

import inspect
import keyword

from . import ops
from .autodiff import resolve_wrt
from .ir import Graph, GraphError, Where
from .tensor import Tensor, TensorSpec

# `grad_out` is the seed parameter of every generated backward function.
RESERVED_NAMES = frozenset({"grad_out"})


def check_name(graph, name, what):
    """Names become Python identifiers in generated code: refuse what cannot be one."""
    problem = None
    if not isinstance(name, str) or not name.isidentifier():
        problem = "it is not a Python identifier"
    elif keyword.iskeyword(name) or name in ("None", "True", "False"):
        problem = "it is a Python keyword"
    elif name.startswith("__"):
        problem = "names starting with '__' are reserved for Python"
    elif name in RESERVED_NAMES:
        problem = "it is the name of backward's seed argument"
    if problem:
        raise GraphError(f"graph '{graph.name}': {name!r} cannot name {what}: {problem}")


def graph(fn=None, *, wrt=None, name=None):
    """Trace `fn` into a Graph. Arguments annotated `gc.Tensor[...]` are tensors of that
    static shape; the others are float scalars. `wrt` names the inputs to differentiate
    with respect to (default: all of them)."""
    if fn is None:
        return lambda f: graph(f, wrt=wrt, name=name)
    return trace(fn, wrt=wrt, name=name)


def _spec(fn, g, param):
    ann = param.annotation
    if isinstance(ann, str):   # `from __future__ import annotations`
        try:
            ann = eval(ann, fn.__globals__)  # noqa: S307 (the user's own annotation)
        except Exception as e:
            raise GraphError(f"graph '{g.name}' ({g.source}): cannot read the annotation "
                             f"of '{param.name}': {ann!r} ({e})") from None
    if ann is inspect.Parameter.empty or ann is float:
        return ()
    if isinstance(ann, TensorSpec):
        return ann.shape
    raise GraphError(f"graph '{g.name}' ({g.source}): input '{param.name}' is annotated {ann!r}; "
                     "use gc.Tensor[dims...] for a tensor, or nothing (or float) for a scalar")


def trace(fn, wrt=None, name=None):
    code = getattr(fn, "__code__", None)
    source = Where(code.co_filename, code.co_firstlineno) if code else None
    g = Graph(name or fn.__name__, source)
    check_name(g, g.name, "a graph")
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise GraphError(f"graph '{g.name}' ({source}): *args and **kwargs cannot be "
                             "graph inputs; list every input")
        check_name(g, param.name, "an input")
        g.add_input(param.name, _spec(fn, g, param))
    result = fn(*[Tensor(g, n) for n in g.inputs])
    _set_outputs(g, result)
    if wrt is not None:
        g.wrt = tuple(w.name for w in resolve_wrt(g, wrt))
    return g


def _set_outputs(g, result):
    if isinstance(result, dict):
        items, g.output_kind = list(result.items()), "dict"
    elif isinstance(result, (tuple, list)):
        items = [(None if k == 0 else _default_name(g, f"out{k}"), v) for k, v in enumerate(result)]
        g.output_kind = "tuple"
    else:
        items, g.output_kind = [(None, result)], "single"
    if not items:
        raise GraphError(f"graph '{g.name}' ({g.source}): returns nothing; return the value(s) to compute")
    outputs = []
    for key, value in items:
        if not isinstance(value, Tensor) or value.graph is not g:
            raise GraphError(f"graph '{g.name}' ({g.source}): output {key or ''} is "
                             f"{type(value).__name__}, not a value computed from the inputs")
        name = key or value.node.name or _default_name(g, "L")
        check_name(g, name, "an output")
        if name in g.input_names and value.node is not g.input(name):
            raise GraphError(f"graph '{g.name}': output '{name}' has the name of an input")
        if any(name == n for n, _ in outputs):
            raise GraphError(f"graph '{g.name}': two outputs are named '{name}'")
        outputs.append((name, value.node))
    g.outputs = outputs


def _default_name(g, base):
    """An output name the user did not choose steps around the names they did."""
    taken = {n.name for n in g.nodes if n.name}
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def inline(graph: Graph, args):
    """Call a graph inside another trace: its nodes are added to the caller's graph."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    if not tensors:
        raise GraphError(f"graph '{graph.name}' was called with plain values; "
                         f"compile it first: gc.compile({graph.name})(...)")
    if len(args) != len(graph.inputs):
        raise GraphError(f"graph '{graph.name}' takes {len(graph.inputs)} inputs, got {len(args)}")
    target = tensors[0].graph
    mapped = {}
    for node, a in zip(graph.inputs, args):
        value = ops.as_node(target, a)
        if value.shape != node.shape:
            raise GraphError(f"graph '{graph.name}': input '{node.name}' expects shape "
                             f"{node.shape}, got {value.shape}")
        mapped[node] = value
    for node in graph.live_nodes():
        if node not in mapped:
            mapped[node] = ops.readd(target, node, tuple(mapped[i] for i in node.inputs))
    outs = [Tensor(target, mapped[n]) for _, n in graph.outputs]
    return outs[0] if graph.output_kind == "single" else tuple(outs)
