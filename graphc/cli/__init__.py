"""The command line (`graphc compile | render | check | show`): main (arguments, errors as
one line), commands (what each does), loader (model files), sampling (random inputs)."""
from .main import main

__all__ = ["main"]
