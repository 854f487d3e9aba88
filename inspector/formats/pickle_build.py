"""What the pickle machine and its builders share: the builder signature, the error a builder
raises, and the dict that pickled dict types become. A leaf: the machine (`unpickler`) and the
builders (`pickle_builtins`, `torch_pickle`) import it, it imports neither."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import CheckpointError, PickleError

Builder = Callable[..., Any]


class AttrDict(dict[Any, Any]):
    """A dict rebuilt from a pickled dict type (OrderedDict, defaultdict, Counter).

    `attrs` holds the instance attributes the pickle set with BUILD (torch's state dicts carry
    `_metadata`, the per-module version table that `load_state_dict` reads).
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.attrs: dict[str, Any] = {}


class BuildError(Exception):
    """Raised by a builder: the machine adds the file and position. `error` is the class."""

    def __init__(self, what: str, error: type[CheckpointError] = PickleError):
        super().__init__(what)
        self.what = what
        self.error = error
