"""`ckpt plan show|approve|reject PLAN PATTERN...`: review a plan file without Python or the TUI.

Patterns select target tensor names as rules match names (`rules.name_matcher`): a glob
(`decoder.*`, `*.bias`), a template prefix (`encoder` is the subtree, `encoder.layers.*.conv`
the conv of every layer, `{x}` one component), or with `--regex` a full-match regular
expression. `approve`/`reject` write the plan back (in place, or to `-o OTHER.yaml`) through
the one atomic writer; fingerprints and everything else in the plan are kept, so it stays valid
for `ckpt apply`. Exit codes: 0 done; 2 a bad plan, a bad pattern or one that matches no row.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from ..errors import PlanError
from ..mapping import names as nm
from ..mapping.entries import fold_summaries
from ..mapping.plan import STATUSES, Entry, Plan, is_pending, is_problem
from ..mapping.rules import name_matcher
from ..tree import fold_names
from . import EXIT_OK
from .rowruns import alike, folded_reason, reason_keys

MAX_LISTED = 8  # changed rows listed as folded names up to this many lines, else per module
MAX_FOLDED = 3  # `show`: a line lists up to this many folded names (all with --all)
PAST = {"approve": "approved", "reject": "rejected"}


class _Intermixed(argparse.ArgumentParser):
    """Patterns may follow options (`show PLAN --pending encoder`): with plain parsing a `*`
    positional takes nothing once an option comes first, and the patterns are refused."""

    _mixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._mixing:  # parse_known_intermixed_args parses twice through this method
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION",
                           parser_class=_Intermixed)
    show = sub.add_parser(
        "show", help="print the plan grouped by module", description="print the plan grouped by "
        "module: status, decision, target names (layer ranges folded), sources, flags, reason")
    show.add_argument("plan", metavar="PLAN", help="a plan file (from `ckpt map -o`)")
    show.add_argument("patterns", nargs="*", metavar="PATTERN", help="only rows matching these")
    show.add_argument("--all", action="store_true", help="list every name, never a count")
    _filters(show)
    for action in ("approve", "reject"):
        what = "apply copies them" if action == "approve" else "the target keeps its own init"
        q = sub.add_parser(action, help=f"{action} rows matching patterns ({what})",
                           description=f"{action} the rows whose target names match a PATTERN "
                           f"({what}); the plan is written back in place unless -o is given")
        q.add_argument("plan", metavar="PLAN", help="a plan file (from `ckpt map -o`)")
        q.add_argument("patterns", nargs="+", metavar="PATTERN",
                       help="target names: glob, template prefix ('encoder'), or --regex")
        _filters(q)
        q.add_argument("-o", "--output", metavar="OTHER.yaml",
                       help="write the edited plan here (default: PLAN itself)")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--regex", action="store_true", help="patterns are full-match regexes")
    p.add_argument("--problems", action="store_true",
                   help="only problem rows: target tensors that would keep their init with no "
                   "declared reason, not approved or rejected yet (as ckpt map and the TUI "
                   "count them)")
    p.add_argument("--pending", action="store_true",
                   help="only rows still proposed that change the output (what apply refuses)")
    p.add_argument("--status", action="append", choices=STATUSES, default=[],
                   help="only rows with this status (repeatable)")


def run(args: argparse.Namespace) -> int:
    plan = Plan.load(args.plan)
    names = select(plan, args.patterns, regex=args.regex)
    names = [n for n in names if _kept(plan.entries[n], args)]
    if args.action == "show":
        for line in show_lines(plan, names, args.plan, args.all):
            print(line)
        return EXIT_OK
    edit = plan.approve(names) if args.action == "approve" else plan.reject(names)
    out = args.output or args.plan
    plan.save(out)
    changed = [target for target, _, _ in edit.changes]
    for line in change_lines(PAST[args.action], changed, len(names) - len(changed), plan):
        print(line)
    print(f"plan written to {out}")
    return EXIT_OK


def select(plan: Plan, patterns: list[str], *, regex: bool = False) -> list[str]:
    """Target names matching any of `patterns` (all when none), in plan order. A pattern that
    matches no row is a PlanError: it is most likely a typo."""
    if not patterns:
        return list(plan.entries)
    chosen: set[str] = set()
    for pattern in patterns:
        match = name_matcher(pattern, regex=regex)
        hits = {n for n in plan.entries if match(n)}
        if not hits:
            example = next(iter(plan.entries), "")
            raise PlanError(f"pattern {pattern!r} matches no row of the plan (rows are target "
                            f"tensor names such as {example!r})")
        chosen |= hits
    return [n for n in plan.entries if n in chosen]


def _kept(e: Entry, args: argparse.Namespace) -> bool:
    return ((not args.problems or is_problem(e))
            and (not args.pending or is_pending(e))
            and (not args.status or e.status in args.status))


def change_lines(done: str, changed: list[str], unchanged: int, plan: Plan) -> list[str]:
    """`approved 12 rows: encoder.layers.{0..3}.x`: folded names, or rows per module when the
    folded names are many."""
    rows = "row" if len(changed) == 1 else "rows"
    folded = fold_names(changed)
    if len(folded) > MAX_LISTED:
        root = nm.common_root(list(plan.entries))
        per = Counter(nm.module_of(n, root) for n in changed)
        folded = [", ".join(f"{m} ({n})" for m, n in per.items())]
    if not changed:
        out = [f"{done} 0 rows"]
    elif len(folded) <= 3:
        out = [f"{done} {len(changed)} {rows}: {', '.join(folded)}"]
    else:
        out = [f"{done} {len(changed)} {rows}:", *(f"  {x}" for x in folded)]
    if unchanged:
        out.append(f"{unchanged} selected row(s) were already {done}")
    return out


def show_lines(plan: Plan, names: list[str], where: str, show_all: bool = False) -> list[str]:
    """The plan grouped by module: a summary line per module, then runs of rows that differ only
    in layer indices on one line each: `STATUS DECISION TARGETS [<- SOURCES] [FLAGS] (REASON)`."""
    statuses = Counter(e.status for e in plan.entries.values())
    counts = ", ".join(f"{statuses[s]} {s}" for s in STATUSES)
    sources = ", ".join(s.label for s in plan.sources)
    out = [f"{where}: {sources} -> {plan.target.label}, {len(plan.entries)} rows ({counts})"]
    for i, rule in enumerate(plan.rules):
        out.append(f"rules[{i}]: {rule.describe()}{f' ({rule.note})' if rule.note else ''}")
    if len(names) != len(plan.entries):
        out.append(f"showing {len(names)} of {len(plan.entries)} rows")
    root = nm.common_root(list(plan.entries))
    summary = plan.summary()
    groups: dict[str, list[Entry]] = {}
    for n in names:
        groups.setdefault(nm.module_of(n, root), []).append(plan.entries[n])
    for mods in alike(groups):  # `model.layers.{0..59}`: one section for a model's layers
        rows = [e for m in mods for e in groups[m]]
        per = Counter(e.status for e in rows)
        head = "; ".join(fold_summaries(summary[m] for m in mods))
        out.append(f"{head}  [{', '.join(f'{n} {s}' for s, n in per.items())}]")
        out += [f"  {line}" for line in _runs(rows, show_all)]
    pending = plan.pending()
    out.append(f"{len(pending)} proposed row(s) change the output: approve them before "
               "`ckpt apply`" if pending else "every row that changes the output is reviewed")
    return out


def _runs(rows: list[Entry], show_all: bool) -> list[str]:
    """Rows with equal status, decision, flags and reason (layer indices aside) on one line;
    rows copied from the same name in their source are not told apart by name."""
    runs: dict[tuple[Any, ...], list[Entry]] = {}
    targets = nm.blanked_many([e.target for e in rows])  # one regex pass each, not one a row
    reasons = reason_keys([e.reason for e in rows])
    sources = iter(nm.blanked_many([name for e in rows for _, name in e.sources]))
    for e, target, reason in zip(rows, targets, reasons, strict=True):
        blanked = tuple(next(sources) for _ in e.sources)
        renamed = any(name != e.target for _, name in e.sources)
        names = (target, blanked) if renamed else ()
        key = (e.status, e.decision, tuple(sorted(e.flags)),
               tuple(label for label, _ in e.sources), names, reason)
        runs.setdefault(key, []).append(e)
    return [_run_line(members, len(rows), show_all) for members in runs.values()]


def _run_line(members: list[Entry], module_rows: int, show_all: bool) -> str:
    e = members[0]
    targets = _names_text([m.target for m in members], module_rows, show_all)
    labels = dict.fromkeys(label for m in members for label, _ in m.sources)
    renamed = any(name != m.target for m in members for _, name in m.sources)
    src = ", ".join(
        f"{lb}:" + ", ".join(fold_names(n for m in members for b, n in m.sources if b == lb))
        if renamed else lb
        for lb in labels
    )
    arrow = f" <- {src}" if src else ""
    flags = f" [{', '.join(sorted(e.flags))}]" if e.flags else ""
    reason = folded_reason([m.reason for m in members])
    return f"{e.status:<8} {e.decision:<4} {targets}{arrow}{flags}  ({reason})"


def _names_text(names: list[str], module_rows: int, show_all: bool) -> str:
    """Folded names; past `MAX_FOLDED` of them (and without --all) a count under their root."""
    folded = fold_names(names)
    if show_all or len(folded) <= MAX_FOLDED:
        return ", ".join(folded)
    root = ".".join(nm.common_root(names))
    if len(names) == module_rows:
        return f"{root}.* ({len(names)} rows)"
    return f"{len(names)} rows under {root}" if root else f"{len(names)} rows"
