"""ckpt-tui with a source at a URL (issue 14): the app opens it through `inspector.open` like
any input, by range requests to a server on 127.0.0.1, and writes what `ckpt apply` writes."""

from __future__ import annotations

from pathlib import Path

import torch
from range_server import serving
from test_tui_pilot import SIZE, settle, sync
from tui_waits import until

from inspector import remote
from inspector.tui.app import create_app
from inspector.tui.screens.write import ResultScreen


@sync
async def test_a_url_source_is_reviewed_and_written_like_a_local_one(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch
) -> None:
    remote.clear_cache()
    monkeypatch.setenv("CKPT_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out.pt"
    with serving(files[0].parent) as (base, counts):
        url = f"{base}/{files[0].name}"
        app = create_app([url], str(files[1]), output=out, plan_path=tmp_path / "ui.plan.yaml")
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.review.state is not None
            assert app.review.state.plan.sources[0].path == url
            listed = counts.bytes
            assert 0 < listed < files[0].stat().st_size  # the headers, not the weights
            await pilot.press("w", "a", "enter")  # accept as proposed, write
            await until(pilot, lambda: isinstance(app.screen, ResultScreen), "the result screen")
            await settle(app, pilot)
            report = app.review.last_report
            assert report is not None
            assert report.verified
    written = torch.load(out, weights_only=True)
    source = torch.load(files[0], weights_only=True)["state_dict"]
    name = "encoder.layers.0.feed_forward1.linear1.weight"
    assert torch.equal(written[name], source[name])
