import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")   # CI has no GPU: numba-cuda's simulator runs the CUDA target
import pytest


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory, worker_id):
    """One cache for the run: under pytest-xdist the workers share it (writes are atomic),
    so a module one worker compiled serves the other."""
    if worker_id == "master":
        return tmp_path_factory.mktemp("cache")
    shared = tmp_path_factory.getbasetemp().parent / "cache"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(autouse=True)
def _private_cache(_session_cache, monkeypatch):
    """Compiled modules go to a temporary cache, not the user's: one for the whole session,
    so that a graph compiled by one test (and its Numba machine code) serves the others.
    The cache's key covers everything a module's text depends on, so sharing is safe; a
    test about the cache itself sets GRAPHC_CACHE_DIR to a directory of its own."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(_session_cache))


def _targets():
    """The targets whose runtime is installed: every test that takes `target` runs on each."""
    import importlib.util

    import graphc
    out = ["numpy"]
    if "numba" in graphc.TARGETS and importlib.util.find_spec("numba") is not None:
        out.append("numba")
    if "cuda" in graphc.TARGETS and importlib.util.find_spec("numba_cuda") is not None:
        out.append("cuda")
    return out


TARGETS = _targets()


@pytest.fixture(params=TARGETS)
def target(request):
    return request.param
