"""Globals an output pickle would carry that are not plain data, found before anything is written.

The safe reader keeps every call it does not recognise as data as a `Record(kind=
"unsupported-global")` (`os.system("...")`, an unknown factory). Writing the target's tree back
(the torch pickler, or a patch that copies data.pkl verbatim) would put that call into the output,
where a full `torch.load` runs it. `find_unknown_globals` lists them with where they are, so that
apply refuses them unless the user opts in. Object records (a class instantiated with its state,
argparse.Namespace) are data, but `torch.load(weights_only=True)` accepts only the classes on its
own allow-list: `weights_only_refused` names the others, for the report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import dtypes
from ..containers import dotted
from ..formats.unpickler import AttrDict
from ..model import Record, TreePath
from ..scan_policy import DANGEROUS, classify

# Record classes `torch.load(weights_only=True)` rebuilds without help; the pickler writes them as
# torch does (a device, a size, a dtype global). Other classes need torch's add_safe_globals.
WEIGHTS_ONLY_CLASSES = frozenset(
    {"torch.device", "torch.Size", *(f"torch.{name}" for name in dtypes.DTYPES)}
)


@dataclass(frozen=True)
class ForeignGlobal:
    where: str  # dotted path in the checkpoint's tree ("<top>" for the root itself)
    name: str  # the global, "posix.system"
    why: str  # what the safe reader or the scan policy says about it

    def describe(self) -> str:
        return f"{self.where}: {self.name} ({self.why})"


def find_unknown_globals(tree: Any) -> list[ForeignGlobal]:
    """Every call to a global the safe reader did not recognise as data, and every object or
    global reference whose class the scan policy calls dangerous, in tree order."""
    found = []
    for path, rec in iter_records(tree):
        module, _, name = rec.cls.rpartition(".")
        verdict, reason = classify(module, name)
        if rec.kind == "unsupported-global":
            why = f"a call the safe reader did not recognise as data; {verdict}: {reason}"
        elif verdict == DANGEROUS:
            why = f"{verdict}: {reason}"
        else:
            continue
        found.append(ForeignGlobal(dotted(path) or "<top>", rec.cls, why))
    return found


def weights_only_refused(tree: Any) -> dict[str, list[str]]:
    """Object classes in `tree` that torch.load(weights_only=True) refuses -> where they are."""
    out: dict[str, list[str]] = {}
    for path, rec in iter_records(tree):
        if rec.kind != "unsupported-global" and rec.cls not in WEIGHTS_ONLY_CLASSES:
            out.setdefault(rec.cls, []).append(dotted(path) or "<top>")
    return out


def iter_records(tree: Any) -> Iterator[tuple[TreePath, Record]]:
    """Every Record in `tree`, nested ones included (in a record's arguments and state, a dict's
    keys, an OrderedDict's attributes). Each container and record is visited once, at its first
    path, as a hostile pickle may share one container 2**60 ways."""
    seen: set[int] = set()
    stack: list[tuple[TreePath, Any]] = [((), tree)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, (Record, dict, list, tuple)) or id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[TreePath, Any]]
        if isinstance(node, Record):
            yield path, node
            children = [((*path, "args"), node.args), ((*path, "state"), node.state)]
        elif isinstance(node, dict):
            children = [((*path, k), v) for k, v in node.items()]
            children += [(path, k) for k in node if isinstance(k, (Record, tuple))]
            if isinstance(node, AttrDict):
                children.append((path, dict(node.attrs)))
        else:
            children = [((*path, i), v) for i, v in enumerate(node)]
        stack.extend(reversed(children))
