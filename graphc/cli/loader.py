"""Loading a model file: import it by path and collect the graphs it declares.

`@gc.graph` traces at decoration time, so importing the file builds its graphs.
Everything that can go wrong on the way (no such file, a syntax error, an
exception or a GraphError while tracing, an unknown graph name) becomes a
LoadError whose message names the file and, where known, the line.
"""
from __future__ import annotations

import builtins
import difflib
import importlib.machinery
import importlib.util
import itertools
import os
import re
import sys
import traceback
from pathlib import Path

from ..graph.ir import Graph, GraphError

_COUNTER = itertools.count()


class LoadError(Exception):
    """A model file could not give the graphs asked for; the message is for the user."""


def split_spec(spec: str):
    """'MODEL.py:GRAPH' -> ('MODEL.py', 'GRAPH'); 'MODEL.py' -> ('MODEL.py', None).

    Paths may contain ':' (C:\\models\\m.py, runs/12:30/m.py), so the suffix is
    a graph name only when it is an identifier and the whole spec is not a file."""
    path, sep, name = spec.rpartition(":")
    if sep and path and name.isidentifier() and not os.path.isfile(spec):
        return path, name
    return spec, None


def load_graphs(spec: str):
    """The graphs that `spec` names, in definition order, and the model file's path."""
    path, wanted = split_spec(spec)
    module = load_module(path)
    found = graphs_in(module, path)
    if not found:
        raise LoadError(f"{path}: declares no graphs (decorate a function with @gc.graph)")
    if wanted is None:
        return found, path
    for var, g in _all_graphs(module):   # by graph name, or by the variable holding it
        if wanted in (var, g.name):
            return [g], path
    raise LoadError(f"{path}: no graph named '{wanted}'; the file declares: "
                    f"{', '.join(g.name for g in found)}")


def graphs_in(module, path):
    """The graphs declared in the model file itself (not ones it imported to reuse),
    or, if it declares none there, every graph it holds."""
    everything = [g for _, g in _all_graphs(module)]
    here = os.path.realpath(path)
    own = [g for g in everything if g.source is not None and os.path.realpath(g.source.file) == here]
    return own or everything


def _all_graphs(module):
    """(variable, graph) pairs; a graph held by two variables (`loss = mlp`) counts once."""
    seen, out = set(), []
    for var, value in list(vars(module).items()):   # a dict keeps definition order
        if isinstance(value, Graph) and id(value) not in seen:
            seen.add(id(value))
            out.append((var, value))
    return out


def load_module(path: str):
    """Import the file at `path` under a unique module name, with its directory on
    sys.path meanwhile (so it can import its neighbours)."""
    if not os.path.exists(path):
        raise LoadError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise LoadError(f"{path}: is a directory; give a model file (MODEL.py)")
    stem = re.sub(r"\W", "_", Path(path).stem)
    name = f"graphc_model_{next(_COUNTER)}_{stem}"
    # SourceFileLoader takes any extension, where spec_from_file_location wants .py
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    saved_path = list(sys.path)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    sys.modules[name] = module   # dataclasses, pickle and typing look the module up here
    try:
        loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as e:   # SystemExit included: a model must not end the command
        sys.modules.pop(name, None)
        raise LoadError(describe(e, path)) from None
    finally:
        sys.path[:] = saved_path
    return module


def describe(e: BaseException, path: str) -> str:
    """One line about an exception raised while importing `path`: file:line: what."""
    if isinstance(e, SyntaxError):   # IndentationError too; it names its own file and line
        where = e.filename or path
        line = f":{e.lineno}" if e.lineno else ""
        return f"{_show(where)}{line}: syntax error: {e.msg}"
    if isinstance(e, GraphError):
        text = str(e)
    elif isinstance(e, SystemExit):
        text = f"exited (sys.exit({e.code!r})) while being imported"
    else:   # as Python prints it, with its hints ("Did you mean: 'sigmoid'?")
        shown = traceback.TracebackException.from_exception(e).format_exception_only()
        text = " ".join(line.strip() for line in shown if line.strip())
        if "did you mean" not in text.lower():   # before 3.12 only the interpreter adds it
            text += _did_you_mean(e)
    if path in text:   # graphc's own messages already say where
        return text
    line = _model_line(e, path)
    return f"{path}{f':{line}' if line else ''}: {text}"


def _did_you_mean(e):
    """Python's hint for a misspelt name: the closest attribute of the object, or the closest
    name the failing line could see."""
    name = getattr(e, "name", None)
    if not isinstance(name, str):
        return ""
    if isinstance(e, AttributeError) and getattr(e, "obj", None) is not None:
        candidates = dir(e.obj)
    elif isinstance(e, NameError) and e.__traceback__ is not None:
        tb = e.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        candidates = [*tb.tb_frame.f_locals, *tb.tb_frame.f_globals, *dir(builtins)]
    else:
        return ""
    close = difflib.get_close_matches(name, candidates, n=1)
    return f". Did you mean: {close[0]!r}?" if close else ""


def _model_line(e, path):
    """The line of the deepest traceback frame in the model file: the user's line."""
    here = os.path.realpath(path)
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if os.path.realpath(frame.filename) == here:
            line = frame.lineno
    return line


def _show(file):
    """A path as short as it can be said: relative to the current directory if inside it."""
    try:
        rel = os.path.relpath(file)
    except ValueError:   # another drive
        return file
    return file if rel.startswith("..") else rel
