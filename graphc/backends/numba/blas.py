"""Which BLAS the numba target's matrix products call.

By default the numba target's products call the BLAS that SciPy ships (OpenBLAS), through
numba_xxgemm, the C function that Numba's own `@` calls. Where Intel's MKL is installed (the
`mkl` package: `pip install 'graphc[mkl]'`), they call MKL's `cblas_?gemm` instead: for the
products of a small network's training step on a recent Intel CPU it is about 1.4x as fast
as that OpenBLAS (it is what PyTorch's CPU build uses). The environment
variable GRAPHC_BLAS chooses: `mkl`, `scipy`, or unset (MKL where it is installed).

The choice is made when graphc writes a module and is part of its text (a module written for
MKL loads MKL's runtime library when imported, and says so if it cannot).

Threads: sharing a product between threads paid only from about half a million (OpenBLAS)
to a million (MKL) multiply-adds (m*n*k) on 2 cores, and not at all beside a busy process; a
small model's products are far below that. MKL shares even a 32x16 @ 16x16 product, so the
module runs a product of fewer than 2**20 multiply-adds on one of MKL's threads (blas.py.j2),
unless the environment sets MKL_NUM_THREADS or OMP_NUM_THREADS. OpenBLAS decides alone: a
product of up to 262,144 multiply-adds runs on one thread, where one thread and all the cores
measure the same. bench/threads.py measures both.
"""
from __future__ import annotations

import functools
import os
import re

from ...graph.ir import GraphError

CHOICES = ("mkl", "scipy")

# the file name of MKL's single runtime library: libmkl_rt.so.3 (Linux), mkl_rt.3.dll
# (Windows), libmkl_rt.3.dylib (macOS); the generated module searches with the same pattern
MKL_RUNTIME = r"(lib)?mkl_rt(\.\d+)*\.(so|dll|dylib)(\.\d+)*"


@functools.lru_cache(maxsize=1)
def mkl_library():
    """The path of MKL's runtime library, from the installed `mkl` package's files, or None."""
    from importlib import metadata
    try:
        files = metadata.files("mkl") or ()
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if re.fullmatch(MKL_RUNTIME, file.name):
            return os.path.normpath(file.locate())
    return None


def choice():
    """'mkl' or 'scipy', as GRAPHC_BLAS asks (unset: MKL where it is installed)."""
    wanted = os.environ.get("GRAPHC_BLAS", "").strip().lower()
    if wanted not in ("", *CHOICES):
        raise GraphError(f"GRAPHC_BLAS={os.environ['GRAPHC_BLAS']!r} is not a BLAS graphc knows; "
                         f"choose one of {', '.join(CHOICES)}, or unset it (MKL where it is installed)")
    if wanted == "scipy":
        return "scipy"
    if mkl_library() is None:
        if wanted == "mkl":
            raise GraphError("GRAPHC_BLAS=mkl, but MKL is not installed: pip install 'graphc[mkl]' "
                             "(or unset GRAPHC_BLAS to use SciPy's BLAS)")
        return "scipy"
    return "mkl"
