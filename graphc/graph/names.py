"""Names: which a user may give a value, and the one maker of fresh names.

Every name graphc makes up (the intermediates s0, s1, ... and grad_x of generated
code, the module aliases, a diagram's t0, a layer's dropout1, an output's L_1) comes
from a Namer, which steps around the names already taken, so a name the user picked
always wins.
"""
from __future__ import annotations

import keyword

from .ir import GraphError

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


def user_names(graph):
    """The names the user chose: inputs, .named() values, outputs (what generated names,
    and the inputs and outputs a transform adds, step around)."""
    return [n.name for n in graph.nodes if n.name] + list(graph.output_names)


class Namer:
    """Hands out unique identifiers; reserved ones are never handed out.

    `fresh("grad_x")`: grad_x, else grad_x_1, grad_x_2, ...; `temp()`: the next of
    s0, s1, ... (another prefix for another kind of temporary); `numbered("bn")`:
    bn1, bn2, ..., the first free with each of `suffixes` (bn1_mean, bn1_var)."""

    def __init__(self, reserved=(), prefix="s"):
        self.taken = set(reserved)
        self.prefix = prefix
        self.counter = 0

    def copy(self):
        n = Namer(self.taken, self.prefix)
        n.counter = self.counter
        return n

    def take(self, name):
        self.taken.add(name)
        return name

    def fresh(self, base):
        if base not in self.taken:
            return self.take(base)
        k = 1
        while f"{base}_{k}" in self.taken:
            k += 1
        return self.take(f"{base}_{k}")

    def temp(self):
        while f"{self.prefix}{self.counter}" in self.taken:
            self.counter += 1
        return self.take(f"{self.prefix}{self.counter}")

    def numbered(self, base, suffixes=("",)):
        k = 1
        while any(f"{base}{k}{s}" in self.taken for s in suffixes):
            k += 1
        return self.take(f"{base}{k}")
