"""What `graphc compile`, `check`, `show` and `render` do, once main.py has parsed the command.

Each `run_*` takes the parsed arguments and returns the exit status; a problem
the user can fix is raised as CliError (or loader.LoadError) naming the model
file, and main.py prints it as one line.
"""
from __future__ import annotations

import inspect
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..autodiff import differentiate, grad, hessian, hvp, jacobian, jvp, resolve_wrt
from ..compiler import compile
from ..graph.ir import GraphError, format_shape
from ..lower.dump import dump
from ..train.gradcheck import gradcheck
from .loader import load_graphs
from .sampling import domain_notes, sample_inputs

USAGE_ERROR, CHECK_FAILED = 2, 1
DEFAULT_TOLERANCE = inspect.signature(gradcheck).parameters["tolerance"].default
DEFAULT_DIM = 3


class CliError(Exception):
    """A message for the user; `code` is the exit status."""

    def __init__(self, message, code=USAGE_ERROR):
        super().__init__(message)
        self.code = code


@contextmanager
def about(g, path):
    """Turns a GraphError about graph `g` into a CliError that names the model file."""
    try:
        yield
    except (GraphError, NotImplementedError) as e:   # NotImplementedError: a target lacks an op
        text = str(e)
        raise CliError(text if path in text else f"{where(g, path)}: {text}") from None


def where(g, path):
    return f"{path}:{g.source.line}" if g.source else path


# -- loading, and a derivative's graph in place of the graph (--transform)

TRANSFORMS = {"grad": grad, "jvp": jvp, "jacobian": jacobian, "hessian": hessian, "hvp": hvp}


def loaded(args):
    """The graphs that MODEL.py[:GRAPH] names, each replaced by the graph of its derivative
    where --transform asks (taken with respect to --wrt, which is then used up)."""
    graphs, path = load_graphs(args.model)
    transform = getattr(args, "transform", None)
    if transform:
        out = []
        for g in graphs:
            with about(g, path):
                out.append(TRANSFORMS[transform](g, args.wrt))
        graphs, args.wrt = out, None
    return graphs, path


# -- compile

def run_compile(args):
    graphs, path = loaded(args)
    if args.output == "-":
        with tempfile.TemporaryDirectory() as tmp:   # printed, not kept: no file left behind
            sources = [_compile(g, path, args, Path(tmp) / f"{g.name}_graphc.py").source for g in graphs]
        sys.stdout.write("\n\n".join(sources))
        return 0
    for g, dest in zip(graphs, _destinations(graphs, path, args.output)):
        _compile(g, path, args, dest)
        print(dest)
    return 0


def _compile(g, path, args, dest):
    with about(g, path):
        try:
            return compile(g, target=args.target, wrt=args.wrt, dtype=args.dtype, path=dest)
        except OSError as e:   # an unwritable folder, a file where a folder should be
            what = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
            raise CliError(f"cannot write {dest}: {what}") from None


def _destinations(graphs, path, output):
    names = [g.name for g in graphs]
    if len(set(names)) != len(names):
        raise CliError(f"{path}: two graphs share a name ({', '.join(names)}); "
                       "their modules would overwrite each other")
    if output is None:
        folder = Path(".")
    elif os.path.isdir(output) or output.endswith(("/", os.sep)):
        folder = Path(output)
    elif len(graphs) > 1:
        raise CliError(f"{path} declares {len(graphs)} graphs ({', '.join(names)}): -o must be a "
                       f"directory (one module per graph) or '-'; or compile one: {path}:{names[0]}")
    else:
        folder = None
    dests = [Path(output)] if folder is None else [folder / f"{n}_graphc.py" for n in names]
    for dest in dests:   # the one file that must never be overwritten
        if dest.exists() and os.path.samefile(dest, path):
            raise CliError(f"-o {dest} is the model file itself; write the module elsewhere")
    return dests


# -- check

def run_check(args):
    graphs, path = loaded(args)
    declared = {s for g in graphs for s in _dims_of(g)}
    unknown = sorted(set(args.dims) - declared)
    if unknown:
        raise CliError(f"{path}: --dim {unknown[0]}: no input has a dimension of that name"
                       f" (dimensions: {', '.join(sorted(declared)) or 'none'})")
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, g in enumerate(graphs):
            if k:
                print()
            problem = check_graph(g, path, args, Path(tmp) / f"{g.name}_{k}_graphc.py")
            if problem:
                failures.append(f"{where(g, path)}: graph '{g.name}': {problem}")
    if failures:
        sys.stdout.flush()   # the tables first, then the verdict
        raise CliError("; ".join(failures), CHECK_FAILED)
    return 0


def check_graph(g, path, args, dest):
    """Print g's gradient check; returns what failed, or None."""
    low, high = args.range
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    with about(g, path):
        fn = compile(g, wrt=args.wrt, dtype="float64", path=dest)
    dims = {**{s: DEFAULT_DIM for s in _dims_of(g)}, **args.dims}
    rng = np.random.default_rng(args.seed)   # per graph: the numbers do not depend on the others
    inputs = sample_inputs(g, rng, dims, low, high)
    sizes = "".join(f", {s}={dims[s]}" for s in _dims_of(g))
    special = "".join(f"; {name}: {text}" for name, text in domain_notes(g).items())
    print(f"{g.name} ({where(g, path)}): inputs uniform in [{low:g}, {high:g}){special}, "
          f"seed {args.seed}{sizes}")
    with np.errstate(all="ignore"), about(g, path):   # a value that is not finite is reported below
        values = fn.forward(**inputs)
        values = values.values() if isinstance(values, dict) else values if isinstance(values, tuple) else [values]
        bad = [name for name, v in zip(fn.outputs, values) if not np.all(np.isfinite(v))]
        if bad:
            problem = (f"{', '.join(bad)} is not finite at the random point; the inputs may lie outside "
                       "the model's domain (log, sqrt, division): try another --range, e.g. --range 0.5,2")
            print(f"FAIL: {problem}")
            return problem
        result = gradcheck(fn, inputs, tolerance=tolerance, seed=args.seed)
    print(result)
    if result.ok:
        print(f"ok: gradients match central differences (tolerance {tolerance:g})")
        return None
    wrong = [name for name, err in result.errors.items() if not err <= tolerance]
    problem = (f"the gradient with respect to {', '.join(wrong)} differs from central differences "
               f"(tolerance {tolerance:g})")
    print(f"FAIL: {problem}")
    return problem


def _dims_of(g):
    """The names of g's symbolic dimensions, in order of appearance."""
    names = {}
    for n in g.inputs:
        for d in n.shape:
            names.update((str(s), None) for s in sorted(getattr(d, "free_symbols", ()), key=str))
    return list(names)


# -- show

def run_show(args):
    graphs, path = loaded(args)
    for k, g in enumerate(graphs):
        with about(g, path):
            backward = backward_text(g, args.wrt)   # first: a bad --wrt prints nothing
        print(("\n" if k else "") + f"{g}\n\n{backward}")
    return 0


def backward_text(graph, wrt=None):
    """The value_and_grad graph as text: the forward nodes, then the adjoints (grad_ names)."""
    wrt_nodes = resolve_wrt(graph, wrt)
    # a scalar is seeded with d out / d out = 1; a tensor with the gradient flowing into it
    g, _, adjoints = differentiate(graph, wrt_nodes)
    g.outputs = list(graph.outputs) + [(f"grad_{w.name}", adjoints[w]) for w in wrt_nodes]
    ins = ", ".join(f"{n.name}: {format_shape(n.shape)}" for n in g.inputs)
    return dump(g, title=f"value_and_grad {g.name}({ins}) -> {', '.join(g.output_names)}")


# -- render

def run_render(args):
    graphs, path = loaded(args)
    values = dict(args.values)   # a name set twice: the last value
    inputs = list(dict.fromkeys(n for g in graphs for n in g.input_names))
    unknown = [n for n in values if n not in inputs]
    if unknown:
        raise CliError(f"{path}: --set {unknown[0]}: no input of that name (inputs: {', '.join(inputs)})")
    declared = {s for g in graphs for s in _dims_of(g)}
    unknown = sorted(set(args.dims) - declared)
    if unknown:
        raise CliError(f"{path}: --dim {unknown[0]}: no input has a dimension of that name"
                       f" (dimensions: {', '.join(sorted(declared)) or 'none'})")
    from ..diagrams import dot   # Graphviz is needed by this command only
    from ..diagrams.diagram import render
    dests = _picture_destinations(graphs, path, args.output)
    for g, dest in zip(graphs, dests):
        with about(g, path):
            digraph = render(g, _render_inputs(g, values, args), grad_out=args.grad_out, show=args.show,
                             collapse=args.collapse, precision=args.precision, wrt=args.wrt)
        if dest == "-":
            sys.stdout.write(digraph.source)
            if digraph.images:   # the DOT text names its feature maps' files: dot finds them here
                dot.save_thumbnails(digraph, ".")
                print(f"{g.name}: the thumbnails the DOT text names are in {sorted(digraph.images)[0].split('/')[0]}/",
                      file=sys.stderr)
            continue
        try:
            dot.write(digraph, dest)
        except GraphError as e:
            raise CliError(str(e)) from None
        print(dest)
    return 0


def _render_inputs(g, values, args):
    """The values --set gives, and seeded random values (in each input's domain) for the rest;
    a symbolic dimension takes its size from --dim, else from a value set, else the default."""
    dims = {s: DEFAULT_DIM for s in _dims_of(g)}
    for node in g.inputs:
        given = values.get(node.name)
        if given is not None and given.ndim == len(node.shape):
            for d, n in zip(node.shape, given.shape):
                if str(d) in dims:
                    dims[str(d)] = n
    dims.update({k: v for k, v in args.dims.items() if k in dims})
    low, high = args.range
    inputs = sample_inputs(g, np.random.default_rng(args.seed), dims, low, high)
    inputs.update({name: v for name, v in values.items() if name in inputs})
    return inputs


def _picture_destinations(graphs, path, output):
    from ..diagrams.dot import FORMATS
    names = [g.name for g in graphs]
    if output == "-":
        return ["-"] * len(graphs)
    if output is None or os.path.isdir(output) or output.endswith(("/", os.sep)):
        folder = Path(output or ".")
        if len(set(names)) != len(names):
            raise CliError(f"{path}: two graphs share a name ({', '.join(names)}); "
                           "their pictures would overwrite each other")
        return [folder / f"{n}.svg" for n in names]
    if len(graphs) > 1:
        raise CliError(f"{path} declares {len(graphs)} graphs ({', '.join(names)}): -o must be a "
                       f"directory (one picture per graph) or '-'; or draw one: {path}:{names[0]}")
    dest = Path(output)
    if dest.suffix.lower() not in FORMATS:
        raise CliError(f"-o {output}: the suffix picks the format: {', '.join(FORMATS)}")
    if dest.exists() and os.path.samefile(dest, path):
        raise CliError(f"-o {dest} is the model file itself; write the picture elsewhere")
    return [dest]
