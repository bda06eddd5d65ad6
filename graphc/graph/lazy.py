"""SymPy, imported where it is first used rather than when graphc is imported.

Importing SymPy takes 0.3-0.4 s, more than the rest of `import graphc`, and only building
a graph (symbolic dimensions, constants), differentiating and compiling use it: a program
that runs a compiled module, or only imports graphc, needs none of it. So the modules that
use SymPy write `from .lazy import sp` where they would write `import sympy as sp`, and
code reads `sp.exp` as ever: the first attribute read imports SymPy. Nothing is put in
sys.modules before then, so `"sympy" in sys.modules` tells whether it was imported.
"""
from __future__ import annotations

import importlib
import sys
import types


class LazyModule(types.ModuleType):
    """A module imported on the first read of one of its attributes. Every read is passed to
    the module itself, not to a copy of it, so that what is set on it later (a submodule
    imported, a function a test monkeypatches) is seen here too."""

    def __getattribute__(self, attr):
        name = types.ModuleType.__getattribute__(self, "__name__")   # this object's own: which module
        return getattr(sys.modules.get(name) or importlib.import_module(name), attr)


sp = LazyModule("sympy")
cfunctions = LazyModule("sympy.codegen.cfunctions")   # log1p, expm1, log2, log10, hypot
