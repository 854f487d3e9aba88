"""`ckpt` command line: one module per subcommand, each with `add_arguments` and `run`.

Exit codes (docs/cli.md): 0 success / equal / pass, 1 differences or violations, 2 usage or
input error (a `CheckpointError`, a bad plan, a file that cannot be read or written), 141 output
pipe closed early (`ckpt ls --json X | head`: quiet, as git), 130 interrupted. Errors map to codes
by their class in `EXIT_CODES`, never by their message.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import signal
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from ..errors import (
    CheckpointError,
    PartialTransferError,
    PendingRowsError,
    PlanError,
    WriteError,
)

# subcommand -> (module under inspector.cli, one-line help)
SUBCOMMANDS = {
    "ls": ("ls", "list the tensors of a checkpoint as a module tree"),
    "hash": ("hash", "content digests per tensor and for the whole checkpoint"),
    "diff": ("diff", "compare two checkpoints: names, shapes, dtypes, values"),
    "map": ("map", "propose a mapping from source checkpoint(s) to a target"),
    "apply": ("apply", "write the target with an approved plan's tensors replaced"),
    "convert": ("convert", "write a checkpoint's tensors in another format, verified"),
    "average": ("average", "average checkpoints tensor by tensor (icefall --avg), verified"),
    "check": ("check", "CI gate: shape compatibility against a reference or manifest"),
    "scan": ("scan", "CI gate: report pickle globals and structural problems"),
    "plan": ("plan", "review a plan file: show it, approve or reject rows by pattern"),
}

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_PIPE = 128 + signal.SIGPIPE  # 141: what a shell reports for git killed by a closed pipe

# The one table from error class to exit code: the first class in an error's MRO that is listed
# decides (every class in inspector/errors.py derives from one of these; tests check it).
EXIT_CODES: dict[type[BaseException], int] = {
    PendingRowsError: EXIT_FOUND,  # apply refused: rows still proposed, nothing written
    PartialTransferError: EXIT_FOUND,  # --strict: rows would keep their init, nothing written
    CheckpointError: EXIT_ERROR,  # a malformed or unsupported checkpoint
    PlanError: EXIT_ERROR,  # a bad plan, rule or pattern
    WriteError: EXIT_ERROR,  # an output that cannot be written (nothing was left behind)
    OSError: EXIT_ERROR,  # a path that cannot be read or written: an input error, never "found"
}


def exit_code_for(error: BaseException) -> int | None:
    """The exit code for an error by its class (`EXIT_CODES`); None for a bug (re-raised)."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return None


def build_parser(command: str | None = None, *, every: bool = False) -> argparse.ArgumentParser:
    """The `ckpt` parser. Only `command`'s module is imported (every one with `every`), so that
    `ckpt ls` does not pay for the mapping and writer modules, and `ckpt --help` and
    `ckpt --version` for none of them."""
    parser = argparse.ArgumentParser(
        prog="ckpt",
        description="Inspect, hash, diff and migrate checkpoints without running pickle code.",
    )
    parser.add_argument("--version", action="version", version=f"ckpt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if every or name == command:
            from ..formats import CACHE_DIR_ENV

            mod = importlib.import_module(f"{__name__}.{module}")
            mod.add_arguments(p)
            p.add_argument(
                "--cache-dir", metavar="DIR",
                help="where compressed archives (a tar.gz .nemo) are expanded; default "
                     f"${CACHE_DIR_ENV}, else a per-user folder in the temp directory")
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)

    def run() -> int:
        with _cache_dir(args.cache_dir):
            code: int = args._run(args)
        return code

    return guarded(f"ckpt {args.command}", run)


def guarded(
    name: str, run: Callable[[], int], *, tell: Callable[[BaseException], bool] = lambda e: True
) -> int:
    """`run()`'s exit code, or the code of the error it raised (`EXIT_CODES`) with one line on
    stderr, no traceback (a bug, an error in no table, is re-raised). `tell(error)`: whether
    this process prints the line (in a distributed command, rank 0 speaks for all)."""
    try:
        code = run()
        sys.stdout.flush()  # a reader that left early shows here when the output was short
    except BrokenPipeError:  # before OSError: a closed pipe is not an input error
        _detach_stdout()
        return EXIT_PIPE
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        mapped = exit_code_for(e)
        if mapped is None:
            raise
        if tell(e):
            print(f"{name}: error: {e}", file=sys.stderr)
        return mapped
    return code


def _cache_dir(folder: str | None) -> contextlib.AbstractContextManager[None]:
    """`--cache-dir` for the command's run (the expansion module only when it is given)."""
    if folder is None:
        return contextlib.nullcontext()
    from ..formats.expand_cache import using_cache_dir

    return using_cache_dir(folder)


def _detach_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush of what is still buffered
    does not fail again (and print "Exception ignored ... BrokenPipeError"): the recipe of the
    Python docs (signal module, "Note on SIGPIPE")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return  # not a real file (captured in a test): nothing will be flushed to a pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
