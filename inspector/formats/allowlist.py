"""The allow-list of the pickle machine, composed outside it: the globals a pickle may call, each
mapped to a builder that makes plain data (see `pickle_build.Builder`)."""

from __future__ import annotations

from .pickle_build import Builder
from .pickle_builtins import BUILTIN_BUILDERS
from .torch_pickle import TORCH_BUILDERS


def default_builders() -> dict[str, Builder]:
    """The allow-list: Python builtins, numpy reconstruction as data, and torch's rebuilders."""
    return {**BUILTIN_BUILDERS, **TORCH_BUILDERS}
