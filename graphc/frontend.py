"""`@gc.graph`: run a model function once on traced values to build its Graph."""
from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager

from .autodiff import resolve_wrt
from .graph import ops
from .graph.ir import BEHAVIOUR, Graph, GraphError, Where
from .graph.names import Namer, check_name
from .graph.tensor import Tensor, TensorSpec

# The graphs being traced, innermost last: gc.scope labels the nodes of the innermost.
_TRACING: list[Graph] = []


def graph(fn=None, *, wrt=None, name=None, **options):
    """Trace `fn` into a Graph. Arguments annotated `gc.Tensor[...]` are tensors of that
    static shape; the others are float scalars. `wrt` names the inputs to differentiate
    with respect to (default: all of them). Keyword-only arguments (after `*`) are not
    inputs but Python values fixed while tracing, such as `train=True`: `options` (or a
    functools.partial) sets them, so one function gives several graphs."""
    if fn is None:
        return lambda f: graph(f, wrt=wrt, name=name, **options)
    return trace(fn, wrt=wrt, name=name, options=options)


def variant(g, name=None, **options):
    """`g`'s function traced again with other keyword-only options:
    `gc.variant(mlp, train=False)` is the inference graph `mlp_eval` of the same declaration."""
    if not isinstance(g, Graph) or g.traced is None:
        raise GraphError(f"gc.variant needs a graph traced from a function by @gc.graph, got {g!r}")
    fn, wrt, base = g.traced
    if name is None:
        if options != {"train": False}:
            raise GraphError(f"graph '{g.name}': gc.variant(..., {', '.join(options)}) needs name=")
        name = f"{g.name}_eval"
    return trace(fn, wrt=wrt, name=name, options={**base, **options})


def _spec(fn, g, param):
    ann = param.annotation
    if isinstance(ann, str):   # `from __future__ import annotations`
        try:
            ann = eval(ann, fn.__globals__)  # noqa: S307 (the user's own annotation)
        except Exception as e:
            raise GraphError(f"{g.source}: graph '{g.name}': cannot read the annotation "
                             f"of '{param.name}': {ann!r} ({e})") from None
    if ann is inspect.Parameter.empty or ann is float:
        return TensorSpec(())
    if isinstance(ann, TensorSpec):
        return ann
    raise GraphError(f"{g.source}: graph '{g.name}': input '{param.name}' is annotated {ann!r}; "
                     "use gc.Tensor[dims...] for a tensor, gc.IntTensor[dims...] for integers, "
                     "or nothing (or float) for a scalar")


def trace(fn, wrt=None, name=None, options=None):
    base = fn
    while isinstance(base, functools.partial):   # gc.graph(partial(model, train=False))
        base = base.func
    code = getattr(base, "__code__", None)
    source = Where(code.co_filename, code.co_firstlineno) if code else None
    g = Graph(name or base.__name__, source)
    check_name(g, g.name, "a graph")
    given, static = dict(options or {}), {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise GraphError(f"{source}: graph '{g.name}': *args and **kwargs cannot be "
                             "graph inputs; list every input")
        if param.kind is param.KEYWORD_ONLY:   # a trace-time option, not an input
            static[param.name] = given.pop(param.name, param.default)
            if static[param.name] is inspect.Parameter.empty:
                raise GraphError(f"{source}: graph '{g.name}': keyword-only argument "
                                 f"'{param.name}' needs a default or a value: gc.graph(fn, {param.name}=...)")
            continue
        check_name(g, param.name, "an input")
        spec = _spec(base, g, param)
        ops.add_input(g, param.name, spec.shape, spec.dtype)
    if given:
        raise GraphError(f"{source}: graph '{g.name}': {', '.join(map(repr, given))} is not a "
                         "keyword-only argument of the function (declare it after `*`)")
    declared = g.input_names
    _TRACING.append(g)
    g._code = code   # errors name the model function's line that led to them
    try:
        result = fn(*[Tensor(g, n) for n in g.inputs], **static)
    finally:
        _TRACING.pop()
        g._code = None
    _set_outputs(g, result)
    for key, (kind, node) in g.running.items():   # batch norm's batch statistics, while training
        if node is not None:
            if key in g.output_names or any(n.name == key and n is not node for n in g.nodes):
                raise GraphError(f"graph '{g.name}': the name '{key}' is used twice")
            g.outputs.append((key, node))
            g.output_kind = "dict"
    if wrt is not None:
        g.wrt = tuple(w.name for w in resolve_wrt(g, wrt))
    elif g.input_names != declared:   # inputs that layers added (dropout's noise) are not parameters
        g.wrt = tuple(n for n in declared if g.input(n).dtype == "float")
    g.traced = (fn, wrt, static)
    return g


@contextmanager
def scope(name):
    """Group the nodes traced inside `with gc.scope("layer1"):` under that name, so a
    diagram draws them as one labelled cluster. Scopes nest ("layer1/attn")."""
    if not isinstance(name, str) or not name or any(not part for part in name.split("/")):
        raise GraphError(f"gc.scope needs a name such as 'layer1' (or 'layer1/attn'), got {name!r}")
    if not _TRACING:
        raise GraphError(f"gc.scope({name!r}) is used outside a graph being traced: "
                         "use it inside a function decorated with @gc.graph")
    g = _TRACING[-1]
    saved = g._scope
    g._scope = saved + tuple(name.split("/"))
    try:
        yield
    finally:
        g._scope = saved


def _set_outputs(g, result):
    if isinstance(result, dict):
        items, g.output_kind = list(result.items()), "dict"
    elif isinstance(result, (tuple, list)):
        items = [(None if k == 0 else _default_name(g, f"out{k}"), v) for k, v in enumerate(result)]
        g.output_kind = "tuple"
    else:
        items, g.output_kind = [(None, result)], "single"
    if not items:
        raise GraphError(f"{g.source}: graph '{g.name}': returns nothing; return the value(s) to compute")
    outputs = []
    for key, value in items:
        if not isinstance(value, Tensor) or value.graph is not g:
            raise GraphError(f"{g.source}: graph '{g.name}': output {key or ''} is "
                             f"{type(value).__name__}, not a value computed from the inputs")
        name = key or value.node.name or _default_name(g, "L")
        check_name(g, name, "an output")
        if any(n.name == name and n is not value.node for n in g.nodes):
            raise GraphError(f"graph '{g.name}': output '{name}' has the name of another value "
                             "(an input or a .named() value)")
        if any(name == n for n, _ in outputs):
            raise GraphError(f"graph '{g.name}': two outputs are named '{name}'")
        outputs.append((name, value.node))
    g.outputs = outputs


def _default_name(g, base):
    """An output name the user did not choose steps around the names they did."""
    return Namer({n.name for n in g.nodes if n.name}).fresh(base)


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
        if value.dtype != node.dtype:
            raise GraphError(f"graph '{graph.name}': input '{node.name}' holds {node.dtype}s, got {value.dtype}s")
        mapped[node] = value
    outer = target._scope
    try:
        for node in graph.live_nodes():
            if node not in mapped:   # an inlined graph's scopes nest inside the caller's
                target._scope = outer + node.scope
                mapped[node] = ops.readd(target, node, tuple(mapped[i] for i in node.inputs))
    finally:
        target._scope = outer
    outs = [Tensor(target, mapped[n]) for _, n in graph.outputs]
    return outs[0] if graph.output_kind == "single" else tuple(outs)


BEHAVIOUR["call"] = inline   # calling a graph inside a trace inlines it
