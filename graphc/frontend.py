"""`@gc.graph`: run a model function once on traced values to build its Graph."""
from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager

from .autodiff import resolve_wrt
from .graph import ops
from .graph.ir import BEHAVIOUR, Graph, GraphError, Where, format_shape, located
from .graph.names import Namer, check_name, user_names
from .graph.conv import _as_layer
from .graph.scan import loop
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


BEHAVIOUR["call"] = inline


# ---- gc.scan: a loop in the graph ----------------------------------------------------

def scan(step, init, xs=None, length=None, reverse=False):
    """JAX's `lax.scan`: `step(carry, x) -> (carry, y)` runs once per slice x of `xs` along
    their leading axis (or `length` times, x None), last slice first with `reverse=True`;
    returns `(carry, ys)`: the last carry, and the ys stacked on a new leading axis. A
    carry, x and y may each be a value or a tuple of values (y also None). The step is
    traced once into a graph of its own, whose inputs are the carry, a slice, and the
    values of the model it reads (its weights). The code is a `for` loop calling one
    function for the step, and the backward pass another such loop, which keeps each
    step's incoming carry and recomputes the rest of the step from it."""
    if not callable(step):
        raise GraphError(f"gc.scan needs a step function step(carry, x) -> (carry, y), got {step!r}")
    carries, carry_kind = _leaves(init, "init")
    slices, xs_kind = _leaves(xs, "xs") if xs is not None else ([], None)
    outer = next((v.graph for v in carries + slices if isinstance(v, Tensor)), None) \
        or (_TRACING[-1] if _TRACING else None)
    if outer is None:
        raise GraphError("gc.scan is used outside a graph being traced: use it inside a function "
                         "decorated with @gc.graph")
    carries = [ops.as_node(outer, v) for v in carries]   # numbers become constants
    slices = [ops.as_node(outer, v) for v in slices]
    steps = _length(outer, slices, length)
    code = getattr(step, "__code__", None)
    body = Graph(_step_name(step), Where(code.co_filename, code.co_firstlineno) if code else None)
    carry_name, x_name = _parameter_names(step)
    for k, node in enumerate(carries):
        ops.add_input(body, carry_name if carry_kind == "single" else f"{carry_name}{k}", node.shape, node.dtype)
    for k, node in enumerate(slices):
        ops.add_input(body, x_name if xs_kind == "single" else f"{x_name}{k}", node.shape[1:], node.dtype)
    body._parent, body._captured = outer, {}
    _TRACING.append(body)
    body._code = code
    try:
        result = step(_rebuild([Tensor(body, n) for n in body.inputs[:len(carries)]], carry_kind),
                      _rebuild([Tensor(body, n) for n in body.inputs[len(carries):]], xs_kind))
        _step_outputs(body, result, carries, carry_kind)
    finally:
        _TRACING.pop()
        body._code = None
    captured = list(body._captured)
    del body._parent, body._captured
    start = len(outer.nodes)
    siblings = loop(body, [Tensor(outer, n) for n in carries], [Tensor(outer, n) for n in slices],
                    [Tensor(outer, n) for n in captured], steps, reverse)
    c, n = len(carries), len(body.outputs) - len(carries)
    # a diagram draws the loop as one box, as it does a conv layer
    _as_layer(start, Tensor(outer, (slices or carries)[0]), siblings[c] if n else siblings[0],
              f"scan: {body.name}, {steps} steps{', last first' if reverse else ''}")
    ys = _rebuild(siblings[c:c + n], body.ys_kind)
    return _rebuild(siblings[:c], carry_kind), ys


def _leaves(value, what):
    """([values], kind): one value ("single"), or a tuple or list of them ("tuple")."""
    if isinstance(value, (tuple, list)):
        if not value:
            raise GraphError(f"gc.scan: {what} is empty; give a value or a tuple of values")
        return list(value), "tuple"
    return [value], "single"


def _rebuild(values, kind):
    return None if kind is None else values[0] if kind == "single" else tuple(values)


def _length(outer, slices, length):
    """The number of steps: the xs' common leading dimension, or `length`."""
    for node in slices:
        if node.shape == ():
            raise GraphError(f"{located(outer)}: gc.scan: xs must have a leading axis to scan along, "
                             "got a scalar")
    found = {node.shape[0] for node in slices}
    if len(found) > 1:
        raise GraphError(f"{located(outer)}: gc.scan: the xs have different leading dimensions, shapes "
                         f"{', '.join(format_shape(n.shape) for n in slices)}")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
        raise GraphError(f"{located(outer)}: gc.scan: length must be a non-negative int, got {length!r}")
    if length is not None and found and found != {length}:
        raise GraphError(f"{located(outer)}: gc.scan: length={length}, but the xs have {found.pop()} slices")
    if length is None and not found:
        raise GraphError(f"{located(outer)}: gc.scan needs xs to scan along, or length=")
    return length if length is not None else found.pop()


def _step_name(step):
    name = getattr(step, "__name__", "step")
    return name if name.isidentifier() and not name.startswith("_") else "step"


def _parameter_names(step):
    """The names of the step's two parameters (its inputs' names in the step's code)."""
    try:
        params = [p for p in inspect.signature(step).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params[:2]]
    if len(names) < 2 or any(n.startswith("__") or n in ("grad_out",) for n in names):
        names = ["carry", "x"]
    return names


def _step_outputs(body, result, carries, carry_kind):
    """The step's results as its graph's outputs: the new carries (their shapes and dtypes
    those of init), then the ys."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise GraphError(f"{body.source}: gc.scan: step '{body.name}' must return (carry, y), got "
                         f"{type(result).__name__}")
    new, kind = _leaves(result[0], "the step's new carry")
    if kind != carry_kind or len(new) != len(carries):
        raise GraphError(f"{body.source}: gc.scan: step '{body.name}' returns a carry of {len(new)} value(s) "
                         f"for an init of {len(carries)}; the carry keeps its structure")
    ys, body.ys_kind = _leaves(result[1], "y") if result[1] is not None else ([], None)
    namer = Namer(user_names(body))
    outputs = []
    for k, (value, init) in enumerate(zip(new, carries)):
        node = ops.as_node(body, value)
        if node.shape != init.shape or node.dtype != init.dtype:
            raise GraphError(f"{body.source}: gc.scan: step '{body.name}' returns carry {k} of shape "
                             f"{format_shape(node.shape)} ({node.dtype}) for an init of shape "
                             f"{format_shape(init.shape)} ({init.dtype}); a carry keeps its shape")
        outputs.append((namer.fresh(f"{body.inputs[k].name}_next"), node))
    for k, value in enumerate(ys):
        outputs.append((namer.fresh("y" if body.ys_kind == "single" else f"y{k}"), ops.as_node(body, value)))
    body.outputs = outputs
    body.output_kind = "tuple"   # calling a graph inside a trace inlines it
