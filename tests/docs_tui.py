"""`ckpt-tui ARGS` as the docs write it, run headless until the review has loaded, then closed:
the arguments are parsed, the checkpoints read and proposed exactly as `ckpt-tui` does."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from tui_waits import settled

from inspector.tui import build_parser, resolve
from inspector.tui.app import create_app


async def _review(app: Any) -> None:
    async with app.run_test(headless=True, size=(120, 40)) as pilot:
        await settled(pilot)
        assert app.review.state is not None, "the review did not load"
        assert app.review.state.plan.entries, "nothing to review"


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.demo:
            from inspector.demo import build_demo

            files = build_demo(tmp)
            sources: list[Any] = [str(files.source)]
            target, output = str(files.target), Path(args.output) if args.output else None
        else:
            sources, target, output = resolve(args)
        app = create_app(sources, target, plan=args.plan, output=output, rules=args.rules)
        asyncio.run(_review(app))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
