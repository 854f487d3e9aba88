"""Every `ckpt` subcommand as users run it: a real child process on the demo files.

Each command runs through `python -m inspector.cli` and, where the interpreter's bin folder has
it (an installed wheel), the `ckpt` console script; with its exit code, `--help`, a closed output
pipe (`| head -c 10`) and bad input (a missing file, a broken one), never with a traceback.
"""

from __future__ import annotations

import fcntl
import inspect
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from subproc import child_env

import inspector.errors
from inspector.cli import EXIT_CODES, EXIT_PIPE, SUBCOMMANDS, exit_code_for
from inspector.demo import build_demo
from inspector.mapping import Plan

SCRIPT = Path(sys.executable).parent / "ckpt"
RUNNERS = [
    pytest.param([sys.executable, "-m", "inspector.cli"], id="module"),
    pytest.param(
        [str(SCRIPT)],
        id="script",
        marks=pytest.mark.skipif(not SCRIPT.exists(), reason=f"no console script {SCRIPT}"),
    ),
]
MODULE = [sys.executable, "-m", "inspector.cli"]
PIPE_SIZE = 4096  # the smallest pipe Linux makes: outputs past it meet the closed pipe for sure
needs_pipe_size = pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"),
                                     reason="needs Linux F_SETPIPE_SZ to shrink the pipe")


def run(cmd: list[str], *args: str | Path, cwd: str | Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=300,
                          cwd=cwd or tempfile.gettempdir(), env=child_env(NO_COLOR="1"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    files = build_demo(d)
    from inspector.mapping import propose, rules

    plan = propose(files.source, files.target, rules.load_rules("nemo"))
    plan.save(d / "proposed.yaml")
    plan.approve(list(plan.entries))
    plan.save(d / "approved.yaml")
    broken = d / "broken.pt"
    broken.write_bytes(files.source.read_bytes()[:5000])
    return {"src": files.source, "tgt": files.target, "proposed": d / "proposed.yaml",
            "approved": d / "approved.yaml", "broken": broken, "dir": d}


# command -> (arguments, exit code on the demo files); {dir} is a fresh output folder
COMMANDS: dict[str, tuple[list[str], int]] = {
    "ls": (["ls", "{src}"], 0),
    "hash": (["hash", "{src}"], 0),
    "diff": (["diff", "{src}", "{tgt}"], 1),
    "map": (["map", "{src}", "{tgt}", "--rules", "nemo", "-o", "{out}/plan.yaml"], 0),
    "apply": (["apply", "{approved}", "-o", "{out}/migrated.nemo"], 0),
    "convert": (["convert", "{src}", "-o", "{out}/char.safetensors"], 0),
    "average": (["average", "{tgt}", "{tgt}", "-o", "{out}/avg.nemo"], 0),
    "check": (["check", "{src}", "--against", "{tgt}"], 1),
    "scan": (["scan", "{src}", "{tgt}"], 0),
    "plan": (["plan", "show", "{proposed}"], 0),
}
# commands whose output is larger than the pipe: `| head -c 10` closes it under them
LARGE = {
    "ls --json": ["ls", "--json", "{src}"],
    "ls --flat": ["ls", "--flat", "{src}"],
    "hash": ["hash", "{src}"],
    "diff --json": ["diff", "--json", "{src}", "{tgt}"],
    "map --json": ["map", "--json", "{src}", "{tgt}"],
    "apply --json": ["apply", "--json", "{approved}", "-o", "{out}/piped.nemo"],
}


def fill(args: list[str], demo: dict[str, Path], out: Path) -> list[str]:
    return [a.format(out=out, **demo) for a in args]


def test_every_subcommand_is_covered() -> None:
    assert set(COMMANDS) == set(SUBCOMMANDS)


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_subcommand_runs(runner: list[str], name: str, demo: dict[str, Path],
                         tmp_path: Path) -> None:
    args, code = COMMANDS[name]
    r = run(runner, *fill(args, demo, tmp_path))
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.strip()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help(name: str) -> None:
    r = run(MODULE, name, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: ckpt {name}")


def test_top_level_and_nested_help() -> None:
    top = run(MODULE, "--help")
    assert top.returncode == 0
    assert all(name in top.stdout for name in SUBCOMMANDS)
    for action in ("show", "approve", "reject"):
        r = run(MODULE, "plan", action, "--help")
        assert r.returncode == 0
        assert r.stdout.startswith(f"usage: ckpt plan {action}")


@pytest.mark.parametrize("tui", [
    pytest.param([sys.executable, "-m", "inspector.tui"], id="module"),
    pytest.param([str(SCRIPT.with_name("ckpt-tui"))], id="script", marks=pytest.mark.skipif(
        not SCRIPT.with_name("ckpt-tui").exists(), reason="no ckpt-tui console script")),
])
def test_tui_help(tui: list[str]) -> None:
    r = run(tui, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: ckpt-tui")


def head_c10(args: list[str]) -> tuple[int, bytes, str]:
    """`ckpt ARGS | head -c 10` through a real `head`, the pipe shrunk to `PIPE_SIZE`: the exit
    code of ckpt, what head printed, ckpt's stderr."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen([*MODULE, *args], stdout=write_end, stderr=err,
                                 cwd=tempfile.gettempdir(), env=child_env())
        head = subprocess.Popen(["head", "-c", "10"], stdin=read_end, stdout=subprocess.PIPE)
        os.close(read_end)
        os.close(write_end)
        shown, _ = head.communicate(timeout=300)
        code = child.wait(timeout=300)
        err.seek(0)
        return code, shown, err.read().decode()


@needs_pipe_size
@pytest.mark.parametrize("name", sorted(LARGE))
def test_closed_pipe_ends_quietly_with_141(name: str, demo: dict[str, Path],
                                           tmp_path: Path) -> None:
    code, shown, err = head_c10(fill(LARGE[name], demo, tmp_path))
    assert len(shown) == 10
    assert err == ""  # no "Broken pipe", no "Exception ignored", no traceback
    assert code == EXIT_PIPE == 141  # as a shell reports git killed by SIGPIPE


@needs_pipe_size
@pytest.mark.parametrize("name", ["check", "scan", "plan"])
def test_small_output_through_head_is_quiet(name: str, demo: dict[str, Path],
                                            tmp_path: Path) -> None:
    args, normal = COMMANDS[name]
    code, shown, err = head_c10(fill(args, demo, tmp_path))
    assert len(shown) == 10
    assert err == ""
    assert code in (normal, EXIT_PIPE)  # the pipe may take the whole output before head exits


# command -> arguments with {bad} where a checkpoint (or plan) goes
BAD_INPUT = {
    "ls": ["ls", "{bad}"],
    "hash": ["hash", "{bad}"],
    "diff": ["diff", "{src}", "{bad}"],
    "map": ["map", "{bad}", "{tgt}"],
    "check": ["check", "{bad}", "--against", "{tgt}"],
    "scan": ["scan", "{bad}"],
}


@pytest.mark.parametrize("kind", ["missing", "broken"])
@pytest.mark.parametrize("name", sorted(BAD_INPUT))
def test_bad_input_exits_2_naming_the_file(name: str, kind: str, demo: dict[str, Path],
                                           tmp_path: Path) -> None:
    bad = tmp_path / "absent.pt" if kind == "missing" else demo["broken"]
    r = run(MODULE, *(a.format(bad=bad, **demo) for a in BAD_INPUT[name]))
    assert "Traceback" not in r.stderr
    if name == "scan" and kind == "broken":  # scan reports a broken file as a finding: exit 1
        assert r.returncode == 1
        assert "zip-malformed" in r.stdout
        assert str(bad) in r.stdout
        return
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith(f"ckpt {name}: error: ")
    assert str(bad) in r.stderr


def test_bad_plans_exit_2_naming_the_file(demo: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsources: [\n")
    missing = tmp_path / "absent.yaml"
    for plan in (bad, missing):
        for args in (["plan", "show", plan], ["plan", "approve", plan, "*"],
                     ["apply", plan, "-o", tmp_path / "x.nemo"]):
            r = run(MODULE, *args)
            assert r.returncode == 2, (args, r.stderr)
            assert str(plan) in r.stderr
            assert "Traceback" not in r.stderr
    # a plan whose checkpoint is broken: the message names that checkpoint
    text = demo["approved"].read_text().replace(str(demo["tgt"]), str(demo["broken"]))
    (tmp_path / "p.yaml").write_text(text)
    r = run(MODULE, "apply", tmp_path / "p.yaml", "-o", tmp_path / "x.nemo")
    assert r.returncode == 2
    assert str(demo["broken"]) in r.stderr
    assert not (tmp_path / "x.nemo").exists()


def test_proposed_rows_exit_1_by_class(demo: dict[str, Path], tmp_path: Path) -> None:
    r = run(MODULE, "apply", demo["proposed"], "-o", tmp_path / "x.nemo")
    assert r.returncode == 1, r.stderr
    assert "still proposed" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.nemo").exists()


def test_every_error_class_has_an_exit_code() -> None:
    classes = [c for _, c in inspect.getmembers(inspector.errors, inspect.isclass)
               if issubclass(c, Exception) and c.__module__ == inspector.errors.__name__]
    assert len(classes) > 15
    for cls in classes:
        e = cls.__new__(cls)
        assert exit_code_for(e) in (1, 2), cls
    assert exit_code_for(inspector.errors.PendingRowsError("x")) == 1
    assert exit_code_for(inspector.errors.UnsafePickleError("f", "x")) == 2
    assert exit_code_for(FileNotFoundError(2, "no", "f")) == 2
    assert exit_code_for(ValueError("a bug")) is None  # bugs keep their traceback
    assert set(EXIT_CODES.values()) == {1, 2}


def test_plan_paths_resolve_against_the_plan_folder(demo: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """`ckpt map` run in one folder, the plan written to another, applied from a third."""
    work = tmp_path / "work"
    (work / "plans").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for k in ("src", "tgt"):
        (work / demo[k].name).symlink_to(demo[k])
    r = run(MODULE, "map", demo["src"].name, demo["tgt"].name, "--rules", "nemo",
            "-o", "plans/plan.yaml", cwd=work)
    assert r.returncode == 0, r.stderr
    plan_text = (work / "plans/plan.yaml").read_text()
    assert f"path: ../{demo['src'].name}" in plan_text  # written from the plan's folder
    r = run(MODULE, "plan", "approve", "plans/plan.yaml", "*", cwd=work)
    assert r.returncode == 0, r.stderr
    r = run(MODULE, "apply", "../work/plans/plan.yaml", "-o", "x.nemo", cwd=tmp_path / "elsewhere")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "elsewhere/x.nemo").is_file()
    loaded = Plan.load(work / "plans/plan.yaml")  # in memory: from the current folder again
    assert loaded.sources[0].path is not None
    assert Path(loaded.sources[0].path).resolve() == (work / demo["src"].name).resolve()


def test_apply_without_suffix_writes_the_targets_format(demo: dict[str, Path],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "migrated"
    r = run(MODULE, "apply", demo["approved"], "-o", out)
    assert r.returncode == 0, r.stderr
    assert "verified: OK" in r.stdout
    r = run(MODULE, "ls", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{out}  (nemo:")
