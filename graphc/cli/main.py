"""The command line: `graphc compile | check | show | render MODEL.py[:GRAPH]`.

This module says what the commands are (argparse, help with examples) and
turns every failure the user can cause into one line `graphc: error: ...` on
stderr, never a traceback: exit 2 for a bad command or model file, 1 for a
gradient check that fails. What the commands do is in commands.py.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys

from ..backends import TARGETS
from ..compiler import DTYPES
from ..version import __version__
from .commands import (DEFAULT_DIM, DEFAULT_TOLERANCE, TRANSFORMS, USAGE_ERROR, CliError, run_check,
                       run_compile, run_render, run_show)
from .loader import LoadError


def main(argv=None) -> int:
    parser = build_parser()
    argv = _attach_values(sys.argv[1:] if argv is None else list(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:   # --help, --version, usage errors: the status argparse chose
        return e.code if isinstance(e.code, int) else USAGE_ERROR
    if args.command is None:
        parser.print_help(sys.stderr)
        return USAGE_ERROR
    try:
        return args.run(args)
    except LoadError as e:
        return _error(str(e), USAGE_ERROR)
    except CliError as e:
        return _error(str(e), e.code)
    except BrokenPipeError:   # `graphc compile m.py -o - | head`: the reader left early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # so the exit flush is quiet
        return 0


def _error(message, code):
    print(f"graphc: error: {message}", file=sys.stderr)
    return code


def _attach_values(argv):
    """`--range -1,1` as `--range=-1,1` (and `--grad-out -1`): argparse would take
    '-1,1' for an option."""
    out, k = list(argv), 0
    while k < len(out) - 1:
        if out[k] in ("--range", "--grad-out") and out[k + 1].startswith("-"):
            out[k:k + 2] = [f"{out[k]}={out[k + 1]}"]
        k += 1
    return out


# -- argument types

def _names(text):
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected input names separated by commas, e.g. W1,b1")
    return names


def _dims(text):
    dims = {}
    for part in text.split(","):
        name, eq, value = (t.strip() for t in part.partition("="))
        if not eq or not name.isidentifier() or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"expected NAME=N with N a positive integer, e.g. B=4; got {part!r}")
        dims[name] = int(value)
    return dims


def _range(text):
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, e.g. -1,1 or 0.5,2; got {text!r}") from None
    if not -float("inf") < low < high < float("inf"):
        raise argparse.ArgumentTypeError(f"expected finite numbers LOW < HIGH, got {text!r}")
    return low, high


def _number_or_array(text):
    """2, -0.5, 1,-2,3 or [[1, 2], [3, 4]] as a float array."""
    import numpy as np
    try:
        return np.asarray(float(text))
    except ValueError:
        pass
    try:
        value = ast.literal_eval(text.strip())
        if isinstance(value, (bool, str, bytes)) or value is None:
            raise ValueError
        return np.asarray(value, dtype=float)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise argparse.ArgumentTypeError(f"expected a number or a list of numbers, e.g. 2, 1,-2,3 or "
                                         f"[[1,2],[3,4]]; got {text!r}") from None


def _assignment(text):
    name, eq, value = text.partition("=")
    if not eq or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, e.g. w0=2, x=1,-2,3 or W=[[1,2],[3,4]]; "
                                         f"got {text!r}")
    try:
        return name.strip(), _number_or_array(value)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{name.strip()}: {e}") from None


def _precision(text):
    if not text.isdigit() or int(text) > 12:
        raise argparse.ArgumentTypeError(f"expected a number of decimals from 0 to 12, got {text!r}")
    return int(text)


class _MergeDims(argparse.Action):
    """--dim B=4 --dim T=2 and --dim B=4,T=2 both give {B: 4, T: 2}."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.dims = {**namespace.dims, **values}


# -- the parser

MODEL_HELP = ("the model file; MODEL.py:GRAPH takes one graph, MODEL.py every graph "
              "the file declares with @gc.graph")

COMMANDS = {
    "compile": (run_compile, "write the generated module (forward, backward, value_and_grad)", """\
Compile each graph of MODEL.py to a module of flat, readable code that imports
only its target's runtime (never graphc). Without -o, GRAPH_graphc.py is written
in the current directory and its path printed, one line per graph.

examples:
  graphc compile examples/neuron.py -o -            print the module
  graphc compile model.py:mlp -o mlp_numpy.py       one graph, one file
  graphc compile model.py -o build/                 every graph, into build/
  graphc compile model.py:mlp --wrt W1,b1 --dtype float32
  graphc compile model.py:mlp --target numba        fused loops, compiled by Numba
  graphc compile examples/neuron.py --target math   plain Python floats, no NumPy
  graphc compile examples/newton.py:logistic --transform hessian --wrt w -o -
                                                    the graph of its Hessian in w
  GRAPHC_BLAS=scipy graphc compile model.py --target numba

The numba target's matrix products call Intel MKL where it is installed
(pip install 'graphc[mkl]') and Numba's @ (SciPy's OpenBLAS) otherwise;
the environment variable GRAPHC_BLAS=mkl or GRAPHC_BLAS=scipy chooses.
"""),
    "check": (run_check, "compare gradients with central differences at a random point", f"""\
Compile each graph in float64, draw its inputs uniformly in --range at their
declared shapes (a symbolic dimension such as B is --dim B=N, default {DEFAULT_DIM}),
and compare value_and_grad with central differences of forward. An input fed
straight into log or sqrt is drawn positive, a cross-entropy's labels as one-hot
rows. Prints a table per graph; exits 1 if a gradient is off or the value is
not finite.

examples:
  graphc check examples/neuron.py
  graphc check model.py:mlp --dim B=8 --seed 1
  graphc check model.py --range 0.5,2 --tolerance 1e-4     positive inputs (log, sqrt)
"""),
    "show": (run_show, "print the forward and backward graphs as text", """\
Print the forward graph, then the value_and_grad graph: the forward nodes
followed by the adjoints (grad_ names, as in the generated code), one node a
line with its shape and size. A non-scalar first output is seeded by an input
named grad_out, the gradient flowing into it.

examples:
  graphc show examples/neuron.py
  graphc show model.py:mlp --wrt W2,b2
"""),
    "render": (run_render, "draw the graph with its values and gradients (Graphviz)", f"""\
Draw each graph as the lecture's circuit: inputs on the left, each operation a
small node with its symbol, each wire with its forward value in green above
and its gradient in red below. The inputs --set does not give are random
(seeded, uniform in --range, at their declared shapes; a symbolic dimension
such as B is --dim B=N, default {DEFAULT_DIM}). A tensor wire shows its shape, the
mean and norm of its value and gradient, and its colour and width follow the
gradient's norm on a log scale. A gc.scope is a cluster, or with --collapse
one box. The suffix of -o picks the format: .svg, .png, .pdf (these need
Graphviz's dot program: apt-get install graphviz) or .dot; '-' prints the DOT
text. Default: GRAPH.svg in the current directory.

examples:
  graphc render examples/neuron.py --set w0=2 x0=-1 w1=-3 x1=-2 w2=-3 -o neuron.png
  graphc render examples/circuit.py --set x=-2 y=5 z=-4 --precision 0
  graphc render examples/relu_vector.py --set x=1,-2,3,-1 --grad-out 4,-1,5,9
  graphc render model.py:mlp --dim B=8 --seed 1 --collapse -o mlp.svg
  graphc render examples/neuron.py --show backward -o neuron_backward.pdf
"""),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="graphc", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compile a static graph declared with @gc.graph in a model file "
                    "into flat, readable forward/backward code.",
        epilog="Run 'graphc COMMAND --help' for a command's options and examples.")
    parser.add_argument("--version", action="version", version=f"graphc {__version__}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for name, (run, summary, description) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(run=run)
        p.add_argument("model", metavar="MODEL.py[:GRAPH]", help=MODEL_HELP)
        p.add_argument("--wrt", type=_names, metavar="a,b",
                       help="differentiate with respect to these inputs (default: the graph's wrt)")
        p.add_argument("--transform", choices=tuple(TRANSFORMS), default=None,
                       help="take the graph of a derivative instead, with respect to --wrt: grad (the "
                            "gradients), jvp (forward mode: tangent_ inputs and outputs), jacobian, "
                            "hessian, hvp (Hessian times v_ inputs); see gc.jvp and the others")
        if name == "compile":
            p.add_argument("-o", "--output", metavar="OUT.py",
                           help="the module's path, a directory (one module per graph), "
                                "or '-' for stdout (default: GRAPH_graphc.py here)")
            p.add_argument("--target", choices=sorted(TARGETS), default="numpy",
                           help="; ".join(f"{t.name}: {t.summary}" for t in TARGETS.values())
                           + " (default %(default)s)")
            p.add_argument("--dtype", choices=DTYPES, default="float64",
                           help="floating-point type of the computation (default %(default)s)")
        if name == "render":
            p.add_argument("--set", dest="values", type=_assignment, action="extend", nargs="+", default=[],
                           metavar="NAME=VALUE", help="an input's value: a number, a comma list "
                                                      "(x=1,-2,3) or nested brackets (W=[[1,2],[3,4]])")
            p.add_argument("--grad-out", type=_number_or_array, default=None, metavar="VALUE",
                           help="the gradient flowing into a non-scalar first output (default: ones)")
            p.add_argument("--show", choices=("forward", "backward", "both"), default="forward",
                           help="the forward circuit, the backward graph (the adjoint nodes, as in "
                                "the generated code) or both (default %(default)s)")
            p.add_argument("--collapse", action="store_true",
                           help="draw each gc.scope as one box with its input and output wires")
            p.add_argument("--precision", type=_precision, default=2, metavar="N",
                           help="decimals of the numbers shown (default %(default)s)")
            p.add_argument("-o", "--output", metavar="OUT",
                           help="the picture's path (.svg, .png, .pdf or .dot), a directory, "
                                "or '-' for the DOT text on stdout (default: GRAPH.svg here)")
        if name in ("check", "render"):
            p.add_argument("--seed", type=int, default=0, metavar="N",
                           help="random seed of the inputs (default %(default)s)")
            p.add_argument("--dim", dest="dims", type=_dims, action=_MergeDims, default={},
                           metavar="NAME=N", help="size of a symbolic dimension, e.g. B=4; repeat it, "
                                                  f"or write B=4,T=2 (default {DEFAULT_DIM} each)")
            p.add_argument("--range", type=_range, default=(-1.0, 1.0), metavar="LOW,HIGH",
                           help="inputs are drawn uniformly in [LOW, HIGH) (default -1,1)")
        if name == "check":
            p.add_argument("--tolerance", type=float, default=None, metavar="T",
                           help=f"largest relative error accepted (default {DEFAULT_TOLERANCE:g})")
    return parser
