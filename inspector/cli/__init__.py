"""`ckpt` command line: one module per subcommand, each with `add_arguments` and `run`.

Exit codes (docs/cli.md): 0 success / equal / pass, 1 differences or violations, 2 usage or
input error (a `CheckpointError`, a bad plan, a file that cannot be read or written).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import CheckpointError, PlanError, WriteError

# subcommand -> (module under inspector.cli, one-line help)
SUBCOMMANDS = {
    "ls": ("ls", "list the tensors of a checkpoint as a module tree"),
    "hash": ("hash", "content digests per tensor and for the whole checkpoint"),
    "diff": ("diff", "compare two checkpoints: names, shapes, dtypes, values"),
    "map": ("map", "propose a mapping from source checkpoint(s) to a target"),
    "apply": ("apply", "write the target with an approved plan's tensors replaced"),
    "check": ("check", "CI gate: shape compatibility against a reference or manifest"),
    "scan": ("scan", "CI gate: report pickle globals and structural problems"),
}

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `ckpt` parser. Only `command`'s module is imported (all of them when None), so that
    `ckpt ls` does not pay for the mapping and writer modules."""
    parser = argparse.ArgumentParser(
        prog="ckpt",
        description="Inspect, hash, diff and migrate checkpoints without running pickle code.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or name == command:
            mod = importlib.import_module(f"{__name__}.{module}")
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    try:
        code: int = args._run(args)
    except (CheckpointError, PlanError, WriteError) as e:
        print(f"ckpt {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # a path that cannot be read or written: an input error, never "found"
        print(f"ckpt {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"ckpt {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
