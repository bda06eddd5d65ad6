"""The targets graphc writes code for, one folder each: numpy (one NumPy statement per
op), numba (fused loop nests compiled for the CPU), cuda (numba-cuda kernels), math
(a graph of scalars as plain Python floats and the math module).

A backend is a folder with a Target in its __init__.py (base.py says what a Target
holds) and its templates; adding one is adding a folder and a line below.
"""
from __future__ import annotations

from . import cuda, math, numba, numpy

TARGETS = {"numpy": numpy.TARGET, "numba": numba.TARGET, "cuda": cuda.TARGET, "math": math.TARGET}
