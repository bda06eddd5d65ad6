"""graphc: a symbolic computational-graph compiler that writes flat backprop code.

    import graphc as gc

    @gc.graph
    def neuron(w0, x0, w1, x1, w2):
        return gc.sigmoid(w0 * x0 + w1 * x1 + w2)

    fn = gc.compile(neuron)            # fn.source is the generated module
    value, grads = fn.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
"""
from .version import __version__
from .graph.ir import BEHAVIOUR, Graph, GraphError
from .graph.tensor import Tensor, IntTensor
from .graph.ops import REGISTRY
from .graph.elementwise import elementwise
from .graph.primitives import (
    add, sub, mul, div, pow, neg, exp, log, sqrt, abs, reciprocal, sin, cos, sigmoid, tanh,
    softplus, relu, leaky_relu, elu, prelu, maximum, minimum, greater, less, greater_equal,
    less_equal, equal, not_equal, where,
)
from .graph.functions import (
    log1p, expm1, log2, log10, logaddexp, tan, sinh, cosh, arcsin, arccos, arctan, arcsinh, arccosh,
    arctanh, arctan2, hypot, sign, mod, clip,
)
from .graph.structural import matmul, transpose, sum, mean, max, reshape, broadcast_to, stop_gradient
from .graph.indexing import getitem, concatenate, stack
from .graph.integers import take, one_hot, argmax, argmin, sort
from .graph.arrays import (
    min, prod, var, std, cumsum, split, repeat, tile, pad, roll, moveaxis, swapaxes, diagonal, trace,
    tril, triu, gelu,
)
from .graph.contract import einsum, tensordot
from .graph.conv import conv1d, conv2d, max_pool2d, avg_pool2d, flatten
from .graph.nn import (
    softmax, log_softmax, logsumexp, softmax_cross_entropy, mse, binary_cross_entropy,
    binary_cross_entropy_with_logits, l1, l2, linear, dropout, batch_norm, layer_norm, maxout,
)
from .frontend import graph, scope, variant, scan
from .autodiff import grad, jvp, jacobian, hessian, hvp
from .lower import dump as _dump                   # fills BEHAVIOUR["text"]: str(graph)
from .graph import travel as _travel               # fills BEHAVIOUR["pickle"]: pickling a graph

# Imported on first use (__getattr__ below): the compiler, the backends and the training
# toolkit bring in SymPy (0.3-0.4 s), Jinja2 and Numba, so that `import graphc` stays fast and
# a program that only loads compiled modules never pays for them. name: (module, attribute;
# None for the module itself)
_LAZY = {
    "compile": (".compiler", "compile"),
    "CompiledGraph": (".runtime", "CompiledGraph"),
    "TARGETS": (".backends", "TARGETS"),           # names for --target
    "optim": (".train.optim", None),
    "schedules": (".train.schedules", None),
    "init": (".train.init", None),
    "data": (".train.data", None),
    "diagnostics": (".train.diagnostics", None),
    "gradcheck": (".train.gradcheck", "gradcheck"),
    "to_device": (".train.device", "to_device"),   # cuda: state on the GPU
    "to_host": (".train.device", "to_host"),
    "distributed": (".distributed", None),         # Dask: an optional extra
}
# the stages' modules, as `gc.compiler` and `gc.train` read before they were imported on first use
_SUBMODULES = ("compiler", "runtime", "backends", "codegen", "train", "diagrams", "cli")


def _notebook_svg(g):
    """The structure diagram a notebook shows for a graph: None where Graphviz's dot program
    is missing, or the graph is too large to be read as a picture."""
    if len(g.nodes) > 300:
        return None
    import graphviz
    try:
        return render(g).pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError):
        return None


BEHAVIOUR["svg"] = _notebook_svg


def render(graph, values=None, path=None, **options):
    """Draw `graph` as the lecture's circuit diagram and return it as a graphviz.Digraph
    (see graphc.diagrams.diagram.render). Imported on first use: the compiler never needs Graphviz."""
    from .diagrams.diagram import render as _render
    return _render(graph, values, path, **options)


def __getattr__(name):
    """What _LAZY names, and the stages' modules, imported on first use (PEP 562); an unknown
    `gc.<name>`: the error names the closest that exist (gc.sigmod: gc.sigmoid)."""
    import importlib
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = importlib.import_module(module, __name__)
        value = value if attribute is None else getattr(value, attribute)
        globals()[name] = value   # later reads find it here
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    import difflib
    public = [n for n in __dir__() if not n.startswith("_")]
    close = difflib.get_close_matches(name, public, n=3, cutoff=0.6)
    # only those about as close as the closest (gc.sigmod: gc.sigmoid, not also gc.mod, gc.sign)
    score = lambda c: difflib.SequenceMatcher(None, name, c).ratio()  # noqa: E731
    close = [c for c in close if score(c) >= score(close[0]) - 0.15]
    hint = f"; did you mean {' or '.join(f'gc.{c}' for c in close)}?" if close else ""
    raise AttributeError(f"module 'graphc' has no attribute {name!r}{hint}")


def __dir__():
    """dir(graphc) and tab completion: what is imported, and what _LAZY imports on first use."""
    return sorted(set(globals()) | set(_LAZY))
