import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")   # CI has no GPU: numba-cuda's simulator runs the CUDA target
import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Compiled modules go to a temporary cache, not the user's."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))


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
