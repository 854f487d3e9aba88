"""Start-up (issue 12): `ckpt --version`, and what each command imports.

A command imports the reader the sniff picks and nothing heavier than it needs: no torch, no
textual, no yaml or numpy where the command does not use them. Checked in real child processes
(the same way a user runs `ckpt`), reading `sys.modules` when the command has finished.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from subproc import ckpt, python

import inspector
from inspector import formats
from inspector.demo import build_demo

# Runs `ckpt ARGS` in this process of the child and prints the modules it left imported.
_MODULES_AFTER = """
import json, sys
from inspector.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
sys.stdout.flush()
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

HEAVY = ("torch", "textual", "yaml", "numpy")
READER_MODULES = {f"inspector.formats.{c.module}" for c in formats.READERS}


def _imported(*args: str | Path) -> set[str]:
    r = python("-c", _MODULES_AFTER, *args)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["code"] in (0, None), r.stdout
    return set(doc["modules"])


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def _small_safetensors(path: Path) -> Path:
    header = {"a.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(8))
    return path


def test_version_prints_the_package_version() -> None:
    r = ckpt("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"ckpt {inspector.__version__}\n"


def test_version_and_help_import_no_command_and_no_reader() -> None:
    for args in (("--version",), ("--help",)):
        modules = _imported(*args)
        assert not _heavy(modules), args
        assert not {m for m in modules if m.startswith(("inspector.formats", "inspector.cli."))}
        assert "inspector.model" not in modules  # `import inspector` itself stays light


def test_ls_and_hash_of_safetensors_import_that_reader_only(tmp_path: Path) -> None:
    st_file = _small_safetensors(tmp_path / "x.safetensors")
    for command in ("ls", "hash"):
        modules = _imported(command, st_file)
        assert not _heavy(modules), command
        assert modules & READER_MODULES == {"inspector.formats.safetensors"}, command
        assert "inspector.formats.unpickler" not in modules  # no pickle machine for JSON


def test_map_imports_no_torch_textual_or_numpy(tmp_path: Path) -> None:
    """Proposing and printing the report (its transfer summary is counted as columns, without
    numpy) of two safetensors files."""
    st_file = _small_safetensors(tmp_path / "x.safetensors")
    modules = _imported("map", st_file, st_file)
    assert {m.split(".")[0] for m in _heavy(modules)} <= {"yaml"}  # yaml aside: plans and rules


def test_ls_of_a_pt_imports_the_zip_reader_only(tmp_path: Path) -> None:
    build_demo(tmp_path)
    modules = _imported("ls", tmp_path / "rnnt_char.pt")
    assert not _heavy(modules)
    assert modules & READER_MODULES == {"inspector.formats.torch_zip"}


def test_reader_modules_does_not_swallow_a_missing_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = formats.Claim("no_such_reader", files=True)
    monkeypatch.setattr(formats, "READERS", (*formats.READERS, missing))
    with pytest.raises(ModuleNotFoundError, match="no_such_reader"):
        formats.reader_modules()


# Every reader's claim must hold wherever its sniff says yes (else `pick` would skip it). ---------


def _brute_force(path: Path, head: bytes) -> str | None:
    for mod in formats.reader_modules():
        if mod.sniff(path, head):
            return str(mod.FORMAT)
    return None


def _check_claims(path: Path) -> None:
    head = path.read_bytes()[:512] if path.is_file() else b""
    for claim, mod in zip(formats.READERS, formats.reader_modules(), strict=True):
        if mod.sniff(path, head):
            assert claim.may_read(path, path.is_dir(), head), (claim.module, path)
    picked = formats.pick(path, head)
    assert (picked.FORMAT if picked else None) == _brute_force(path, head), path


def test_folder_claims_name_the_files_their_readers_look_for() -> None:
    """A folder claim's `holds` is what its reader's sniff requires (written out in the table,
    so choosing a reader imports none of them)."""
    from inspector.formats import dcp, hf_folder, nemo

    holds = {c.module: c.holds for c in formats.READERS}
    assert holds["nemo_folder"] == (nemo.CONFIG,)
    assert holds["dcp"] == (dcp.METADATA,)
    assert holds["hf_folder"] == (hf_folder.CONFIG,)


def test_listing_a_dcp_folder_imports_no_nemo_reader(tmp_path: Path) -> None:
    """Choosing the reader of a DCP folder does not import the .nemo readers (and yaml: 36 ms)."""
    (tmp_path / ".metadata").write_bytes(b"\x80\x02N.")
    code = ("import sys; from pathlib import Path; from inspector import formats; "
            f"m = formats.pick(Path({str(tmp_path)!r}), b''); "
            "print(m.__name__, sorted(n for n in sys.modules if 'nemo' in n or n == 'yaml'))")
    out = python("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(" ", 1) == ["inspector.formats.dcp", "[]\n"]


def test_claims_hold_for_the_demo_and_test_files(tmp_path: Path) -> None:
    build_demo(tmp_path)
    repo = Path(__file__).parent
    paths = [*tmp_path.iterdir(), *(repo / "data").iterdir()]
    paths += (repo / "fuzz" / "corpus").rglob("*")
    (tmp_path / "dcp").mkdir()
    (tmp_path / "dcp" / ".metadata").write_bytes(b"\x80\x02N.")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    _small_safetensors(tmp_path / "hf" / "model.safetensors")
    _small_safetensors(tmp_path / "renamed.bin")
    paths += [tmp_path / "dcp", tmp_path / "hf", tmp_path / "renamed.bin", tmp_path]
    for path in paths:
        _check_claims(path)
    found = {_brute_force(p, p.read_bytes()[:512] if p.is_file() else b"") for p in paths}
    assert {"safetensors", "nemo", "torch-zip", "dcp", "hf"} <= found  # the check saw them all


_NAMES = st.sampled_from(
    ["x.pt", "x.safetensors", "x.nemo", "x.bin", "x.safetensors.index.json", "x", ".nemo"]
)
_HEADS = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda n, rest: struct.pack("<Q", n) + b"{" + rest,
              st.integers(0, 1 << 40), st.binary(max_size=64)),
    st.builds(lambda a, b: a.ljust(257, b"\0") + b"ustar" + b, st.binary(max_size=300),
              st.binary(max_size=250)),
    st.builds(lambda b: b"PK\x03\x04" + b, st.binary(max_size=100)),
    st.builds(lambda b: b"\x80\x02" + b, st.binary(max_size=100)),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=_NAMES, data=_HEADS)
def test_claims_hold_for_any_file(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    _check_claims(path)
