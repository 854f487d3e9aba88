"""With several sources the TUI's source tree shows each source by the label the plan, rules
(`source:`) and reports use (`b.nemo`, `b.nemo#2`), not by its dotless tree key (`b_nemo`)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from tui_waits import settled

import inspector
from inspector.demo import RNNTConfig, random_state, rnnt_shapes
from inspector.mapping.propose import propose
from inspector.tui.app import create_app
from inspector.tui.state import ReviewState
from inspector.tui.treemodel import TreeModel


def _state(labels: list[str]) -> ReviewState:
    shapes = rnnt_shapes(RNNTConfig(28))
    srcs = [inspector.open(random_state(shapes, i)) for i in range(len(labels))]
    tgt = inspector.open(random_state(shapes, 9))
    plan = propose(srcs, tgt)
    return ReviewState(plan, dict(zip(labels, srcs, strict=True)), tgt)


def test_tree_keys_are_dotless_unique_and_shown_as_labels() -> None:
    state = _state(["a.b", "a_b", "b.nemo#2"])
    keys = {n.split(".", 1)[0] for n in state.source_tensors}
    assert keys == {"a_b", "a_b~2", "b_nemo#2"}
    model = TreeModel(state.source_tensors, titles=state.source_titles)
    assert [r.label for r in model.roots()] == ["a.b", "a_b", "b.nemo#2"]
    key = state.source_key("a_b~2.encoder.pre_encode.out.bias")
    assert (key.label, key.name) == ("a_b", "encoder.pre_encode.out.bias")
    # the search finds a source tensor by the name the user reads, label and all
    state.set_filter(search="b.nemo#2.encoder.pre_encode.out.bias")
    assert state.visible_sources() == ["b_nemo#2.encoder.pre_encode.out.bias"]


def test_the_source_tree_shows_the_files_labels(files: tuple[Path, Path], tmp_path: Path) -> None:
    twin = tmp_path / "b.nemo.pt"
    shutil.copy(files[0], twin)

    async def run() -> list[str]:
        app = create_app([str(files[0]), str(twin)], str(files[1]))
        async with app.run_test(size=(100, 30)) as pilot:
            await settled(pilot)
            tree = app.review.source_tree
            return [str(n.label) for n in tree.root.children if n.data]

    shown = asyncio.run(run())
    assert [s.split()[0] for s in shown] == ["char.pt", "b.nemo.pt"]
    assert not any("_pt" in s or "b_nemo" in s for s in shown)
