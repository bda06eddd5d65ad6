"""Module text from lowered functions (Jinja2), and writing, finding and importing it."""
from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from pathlib import Path

from .blas import MKL_RUNTIME


@functools.lru_cache(maxsize=1)
def _templates():
    """The Jinja2 environment, made on first use: a compile that finds its module in the
    cache never renders, and need not import Jinja2."""
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("graphc", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.globals["mkl_runtime"] = MKL_RUNTIME   # for templates/numba_blas.py.j2
    return env

COMMENT_COLUMN = 40   # comments line up here, unless the code is longer


def commented(code, comment):
    """`code  # comment`, the comment at COMMENT_COLUMN (of the function body) if it fits."""
    if not comment:
        return code
    return f"{code:<{COMMENT_COLUMN - 4}}  # {comment}" if len(code) < COMMENT_COLUMN - 4 else f"{code}  # {comment}"


def code_lines(statements):
    """`name = expr  # comment`, comments aligned, follow-up lines after their statement."""
    lines = []
    for st in statements:
        if not st.target:
            lines.extend(st.extra)
            continue
        lines.append(commented(f"{st.target} = {st.expr}", st.comment))
        lines.extend(st.extra)
    return lines


def docstring_safe(text):
    """Text that cannot end or escape the module docstring, whatever a file is called."""
    return text.encode("ascii", "backslashreplace").decode().replace("\\", "\\\\").replace('"', '\\"')


def render(template, doc, aliases, dtype, inputs, wrt, outputs, functions, definitions=(), each=False,
           threads=False):
    """The module text. `aliases`: the names the module imports its libraries as;
    `definitions`: module-level code blocks a target added (kernels); `each`: also
    the per-example functions of a graph of scalars (`forward_each`, ...); `threads`:
    whether those may run on several threads. A template asks `uses("name")` to learn
    whether the code calls a helper it may define (numba_math.py.j2's `__exp`)."""
    fns = [_function(f, aliases["np"], dtype) for f in functions]
    code = "\n".join(line for f in fns for line in f["lines"])
    return _templates().get_template(template).render(
        uses=lambda name: re.search(rf"\b{name}\(", code) is not None,
        doc=docstring_safe(doc), dtype=dtype, definitions=list(definitions), threads=threads, **aliases,
        inputs=repr(tuple(inputs)), wrt=repr(tuple(wrt)), outputs=repr(tuple(outputs)), functions=fns,
        each=[_each(f, len(outputs), len(wrt), aliases, dtype) for f in functions
              if f.name == "forward" or wrt] if each else [])


def _function(f, np_alias, dtype):
    """What a template needs of one function. On a compiled target a function is a
    kernel `__name`; one with a keyword-only seed gets a wrapper passing it on."""
    seed_value = (f"{np_alias}.{dtype}(grad_out)" if f.seed == "1.0"
                  else f"{np_alias}.asarray(grad_out, dtype={np_alias}.{dtype})")
    return {"name": f.name, "signature": signature(f), "params": ", ".join(f.params),
            "call": ", ".join(f.params + (["grad_out"] if f.seed else [])),
            "kernel_args": ", ".join(f.params + ([seed_value] if f.seed else [])),
            "seed": f.seed, "parallel": f.parallel, "threads_when": f.threads_when,
            "lines": code_lines(f.statements) or ["pass"], "returns": f.returns}


def _each(f, n_values, n_grads, aliases, dtype):
    """`forward_each` and co.: the scalar function once per example, over 1-D arrays.
    Its own names start with `__`, which no input may, so nothing can shadow them."""
    np_, params = aliases["np"], f.params + (["grad_out"] if f.seed else [])
    values = [f"__value{k}" for k in range(n_values)] if f.name != "backward" else []
    grads = [f"__grad{k}" for k in range(n_grads)] if f.name != "forward" else []
    lines = [f"__n = {params[0]}.shape[0]"]
    lines += [f"{a} = {np_}.empty(__n, dtype={np_}.{dtype})" for a in values + grads]
    lines.append(f"for __i in {aliases['numba']}.prange(__n):")
    call = f"__{f.name}({', '.join(p + '[__i]' for p in params)})"
    value = "__v" if n_values == 1 else "(" + ", ".join(f"__v{k}" for k in range(n_values)) + ",)"
    grad = "(" + ", ".join(f"__g{k}" for k in range(n_grads)) + ",)"
    unpacked = {"forward": value, "backward": grad, "value_and_grad": f"{value}, {grad}"}[f.name]
    lines.append(f"    {unpacked} = {call}")
    lines += [f"    {a}[__i] = __v{'' if n_values == 1 else k}" for k, a in enumerate(values)]
    lines += [f"    {a}[__i] = __g{k}" for k, a in enumerate(grads)]
    value_out = (values[0] if len(values) == 1 else "(" + ", ".join(values) + ",)") if values else ""
    grad_out = "(" + ", ".join(grads) + ",)"
    returns = {"forward": value_out, "backward": grad_out, "value_and_grad": f"{value_out}, {grad_out}"}
    return {"name": f.name + "_each", "kernel": f"__{f.name}_each", "call": ", ".join(params),
            "lines": lines, "returns": returns[f.name]}


def signature(function):
    """`x, W, *, grad_out=1.0`: the inputs, then the seed as a keyword-only argument."""
    params = ", ".join(function.params)
    if function.seed is None:
        return params
    return params + (", *, grad_out" if function.seed == "required" else f", *, grad_out={function.seed}")


def cache_dir() -> Path:
    base = os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "graphc")
    return Path(base)


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def write(source: str, path: Path) -> Path:
    """Write the module unless the same text is already there (keeps Numba's cache valid)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != source:
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)   # atomic: a concurrent reader never sees half a module
    return path


def remember(key: str, path: Path, source: str):
    """Record that the graph fingerprinted as `key` (graphc.fingerprint) has its module at `path`."""
    write(f"{Path(path).resolve()}\n{source_hash(source)}\n", cache_dir() / "keys" / key)


def remembered(key: str):
    """(path, source) of the module recorded under `key`, or None: none recorded, or the file
    is gone or no longer holds the text that was written (someone edited it)."""
    try:
        path, digest = (cache_dir() / "keys" / key).read_text().splitlines()
        source = Path(path).read_text()
    except (OSError, ValueError):
        return None
    return (Path(path), source) if source_hash(source) == digest else None


def load(path: Path, source: str):
    """Import the module at `path` under a name unique to its text."""
    name = f"graphc_generated_{Path(path).stem}_{source_hash(source)}"
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == str(path):
        return module
    # an explicit loader: spec_from_file_location gives None for a name not ending in .py
    spec = importlib.util.spec_from_file_location(
        name, path, loader=importlib.machinery.SourceFileLoader(name, str(path)))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
