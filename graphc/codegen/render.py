"""Module text from lowered functions: each backend's Jinja2 template (its folder under
graphc/backends/) renders them; every decision was made before, in Python."""
from __future__ import annotations

import functools

from ..lower.program import code_lines, signature


@functools.lru_cache(maxsize=1)
def _templates():
    """The Jinja2 environment, made on first use: a compile that finds its module in the
    cache never renders, and need not import Jinja2."""
    import jinja2
    return jinja2.Environment(
        loader=jinja2.PackageLoader("graphc", "backends"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )

def docstring_safe(text):
    """Text that cannot end or escape the module docstring, whatever a file is called."""
    return text.encode("ascii", "backslashreplace").decode().replace("\\", "\\\\").replace('"', '\\"')


def render(target, doc, aliases, dtype, inputs, wrt, outputs, functions, definitions=(), each=False,
           threads=False, integers=(), helpers=(), blas=None):
    """The module text, from `target`'s template. `aliases`: the names the module imports
    its libraries as; `definitions`: module-level code blocks a target added (kernels);
    `each`: also the per-example functions of a graph of scalars (`forward_each`, ...);
    `threads`: whether those may run on several threads; `integers`: the positions of the
    int64 inputs (gc.IntTensor); `helpers`: the functions the others call (a scan's step,
    already named `__step_...`; statements that recur, `__repeat<k>`); `blas`: what matrix
    products call, where the target chooses (numba: "mkl" or "scipy"). A template asks
    `uses("name")` to learn whether the code calls a helper it may define (numba/math.py.j2's
    `__exp`), `imports("alias")` whether it reads a module imported under that alias
    (`__math.sin`): a text search, not a regular expression, which took 0.25 s a call on the
    code of a 4,000-op chain."""
    twins = [h.name for h in helpers if h.threads_when]
    fns = [_function(f, aliases["np"], dtype, twins) for f in functions]
    steps = [_function(f, aliases["np"], dtype) for f in helpers]
    code = "\n".join(line for f in fns + steps for line in f["lines"])
    return _templates().get_template(target.template).render(
        **target.template_globals, uses=lambda name: f"{name}(" in code, imports=lambda alias: f"{alias}." in code,
        doc=docstring_safe(doc), dtype=dtype, definitions=list(definitions), threads=threads, **aliases,
        inputs=repr(tuple(inputs)), wrt=repr(tuple(wrt)), outputs=repr(tuple(outputs)), functions=fns,
        integers=repr(tuple(integers)), helpers=steps, blas=blas,
        each=[_each(f, len(outputs), len(wrt), aliases, dtype) for f in functions
              if f.name == "forward" or wrt] if each else [])


def _function(f, np_alias, dtype, twins=()):
    """What a template needs of one function. On a compiled target a function is a
    kernel `__name`; one with a keyword-only seed gets a wrapper passing it on. Its
    parallel twin (`threads_lines`) calls the parallel twins of the helpers in `twins`
    (names starting with `__`, which no user name does)."""
    lines = code_lines(f.statements) or ["pass"]
    threads_lines = lines
    for name in twins:
        threads_lines = [line.replace(f"{name}(", f"{name}_threads(") for line in threads_lines]
    seed_value = (f"{np_alias}.{dtype}(grad_out)" if f.seed == "1.0"
                  else f"{np_alias}.asarray(grad_out, dtype={np_alias}.{dtype})")
    return {"name": f.name, "signature": signature(f), "params": ", ".join(f.params),
            "call": ", ".join(f.params + (["grad_out"] if f.seed else [])),
            "kernel_args": ", ".join(f.params + ([seed_value] if f.seed else [])),
            "seed": f.seed, "parallel": f.parallel, "threads_when": f.threads_when,
            "lines": lines, "threads_lines": threads_lines, "returns": f.returns, "note": f.note}


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
