"""Lowering: a differentiated graph becomes a program of flat, named, commented statements.

naming (the lecture's names for values), program (Statement, Function and their text),
fusion (which elementwise nodes share a loop on the targets that fuse, in what order),
lowering (Lowering: names, comments, statements; the target prints each op), dump (the
graph as text, named as the generated code names it).
"""
from . import dump as _dump   # noqa: F401  (gives every Graph its text: str(graph))
