"""The long work ckpt-tui runs in thread workers, as plain library calls returning messages.

Opening and proposing, a tensor's digest and stats, a pair's comparison, writing the output.
No widgets here; the app decides when to run these and what to show.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..mapping.prefixed import split_source, with_prefix
from ..model import Checkpoint
from ..reader import open_checkpoint
from . import messages as msg
from .config import AppConfig

if TYPE_CHECKING:
    from ..mapping.plan import Plan

HIST_BINS = 16


class WriteCancelled(Exception):
    """Raised from the progress callback when the user cancels: apply removes its temp file."""


def _open(spec: Any) -> tuple[str, Checkpoint]:
    """(prefix, checkpoint) from a path, a Checkpoint, or a (prefix, path | Checkpoint) pair."""
    prefix, obj = split_source(spec)
    return prefix, open_checkpoint(obj)


def open_inputs(config: AppConfig) -> msg.Opened:
    """Open the checkpoints: headers only, what the first paint shows."""
    opened = [_open(s) for s in config.sources]
    return msg.Opened(opened, open_checkpoint(config.target))


def open_and_plan(config: AppConfig) -> msg.Loaded:
    """Open the checkpoints (headers only), then load and bind the plan or propose one."""
    return plan_for(config, open_inputs(config))


def plan_for(config: AppConfig, inputs: msg.Opened) -> msg.Loaded:
    """Load and bind the plan, or propose one, for the opened checkpoints."""
    from ..mapping.layersel import with_layers
    from ..mapping.plan import Plan
    from ..mapping.propose import bind, propose

    opened, target = inputs.sources, inputs.target
    checkpoints = [c for _, c in opened]
    plan = config.plan
    if isinstance(plan, (str, Path)):
        plan = Plan.load(plan)
    if plan is None:
        sources = [with_prefix(p, c) for p, c in opened]
        rules = with_layers(config.rules, config.layers, sources, target, config.layers_prefix)
        plan = propose(sources if len(sources) > 1 else sources[0], target, rules=rules)
    else:
        bind(plan, opened if len(opened) > 1 else opened[0], target)
    plan.prepare()
    return msg.Loaded(checkpoints, target, plan, architecture(plan, checkpoints, target))


def architecture(plan: Plan, sources: list[Checkpoint], target: Checkpoint) -> list[str]:
    """Lines comparing source and target architectures, with what to change when they differ."""
    from ..mapping import arch

    labelled = {ref.label: ckpt for ref, ckpt in zip(plan.sources, sources, strict=True)}
    return list(arch.explain(plan, labelled, target))


def tensor_facts(ckpt: Checkpoint, name: str) -> msg.TensorFacts:
    from ..compare import tensor_stats
    from ..hashing import hash_tensors

    try:
        digest = str(hash_tensors(ckpt, [name])[name])
        s = tensor_stats(ckpt, name, bins=HIST_BINS)
    except CheckpointError as e:
        return msg.TensorFacts(error=str(e))
    stats = None
    if s.min is not None and s.max is not None and s.mean is not None and s.std is not None:
        stats = msg.Stats(s.min, s.max, s.mean, s.std, tuple(s.hist), tuple(s.hist_edges))
    return msg.TensorFacts(digest, stats)


def pair_facts(src: Checkpoint, src_name: str, tgt: Checkpoint, tgt_name: str) -> msg.PairFacts:
    from ..compare import compare_tensors

    a, b = src.tensors[src_name], tgt.tensors[tgt_name]
    if a.shape != b.shape:
        return msg.PairFacts(False, error=f"shapes differ: {list(a.shape)} vs {list(b.shape)}")
    try:
        c = compare_tensors(src, src_name, tgt, tgt_name)
    except CheckpointError as e:
        return msg.PairFacts(False, error=str(e))
    return msg.PairFacts(c.n_diff == 0, c.max_abs_diff, c.cosine, rel_l2=c.rel_l2)


def write(
    plan: Plan, out: Path, accept_proposed: bool, progress: Callable[[int, int], None]
) -> msg.WriteFinished:
    """Write the output with `inspector.apply` and verify it; the report comes back as text.
    Accepting the pending rows skips the undecided ambiguous ones (they keep their init): the
    confirmation said so before (screens.write), the report says so after."""
    from ..applying import apply

    report = apply(plan, out, accept_proposed=accept_proposed, progress=progress,
                   skip_ambiguous=accept_proposed)
    v = report.verification
    if v is None:
        return msg.WriteFinished(str(out), report.to_text(), False, "not verified")
    text = (f"{v.checked} tensors re-read from the output: {v.replaced_ok} replaced and "
            f"{v.untouched_ok} untouched match their expected digests")
    if v.mismatches:
        text += "\n" + "\n".join(v.mismatches[:10])
    return msg.WriteFinished(str(out), report.to_text(), v.ok, text)
