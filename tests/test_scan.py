"""`inspector.scan`: payload corpus, benign checkpoints, structural findings, picklescan parity."""

from __future__ import annotations

import io
import json
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path
from posix import system as posix_system

import pytest
import scan_corpus
from hypothesis import given
from hypothesis import strategies as st
from picklescan.scanner import scan_directory_path, scan_file_path
from scan_corpus import Reduce

from inspector import scan_policy
from inspector.formats.unpickler import scan_pickle
from inspector.scanning import DANGEROUS, SAFE, UNKNOWN, classify, scan


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[scan_corpus.Item]:
    return scan_corpus.build(tmp_path_factory.mktemp("corpus"))


def _codes(result: object) -> set[str]:
    return {f.code for f in result.findings}  # type: ignore[attr-defined]


def _picklescan_flags(path: Path) -> bool:
    res = scan_directory_path(str(path)) if path.is_dir() else scan_file_path(str(path))
    return res.infected_files > 0


def test_every_payload_is_flagged(corpus: list[scan_corpus.Item]) -> None:
    missed = [it.name for it in corpus if it.malicious and scan(it.path).passed]
    assert missed == []
    for it in corpus:
        if it.malicious:
            result = scan(it.path)
            assert result.exit_code == 1
            assert {"global-dangerous", "pickle-zip-polyglot"} & _codes(result), it.name


def test_no_benign_checkpoint_is_flagged(corpus: list[scan_corpus.Item]) -> None:
    for it in corpus:
        if not it.malicious:
            result = scan(it.path, strict=True)  # not even an unknown global
            assert result.passed, (it.name, [f.message for f in result.failing])
            assert result.globals or it.name == "safetensors", it.name


def test_superset_of_picklescan(corpus: list[scan_corpus.Item]) -> None:
    flagged_by_picklescan = {it.name for it in corpus if _picklescan_flags(it.path)}
    flagged_by_us = {it.name for it in corpus if not scan(it.path).passed}
    assert flagged_by_picklescan <= flagged_by_us
    assert not any(not it.malicious for it in corpus if it.name in flagged_by_picklescan)
    # The bypasses picklescan 1.0.5 misses and ckpt scan catches (docs/ci.md lists them).
    bypasses = flagged_by_us - flagged_by_picklescan
    assert {
        "torch_load_recursive",
        "torch_hub_load",
        "whitespace_module",
        "types_function",
        "dotted_stack_global",
        "nemo_targz_payload",
        "dcp_metadata_payload",
    } <= bypasses


def test_payload_globals_are_named(corpus: list[scan_corpus.Item]) -> None:
    by_name = {it.name: it for it in corpus}
    expect = {
        "stack_global_memo": "os.system",
        "inst_opcode": "os.system",
        "obj_opcode": "os.system",
        "py2_builtin_name": "builtins.eval",
        "getattr_import_chain": "builtins.getattr",
        "nemo_targz_payload": "posix.system",
        "legacy_payload": "posix.system",
        "dotted_stack_global": "torch.serialization.load",
        "subprocess_popen": "subprocess.Popen",
    }
    for name, qual in expect.items():
        dangerous = {
            f"{g.module}.{g.name}"
            for g in scan(by_name[name].path).globals
            if g.verdict == DANGEROUS
        }
        assert qual in dangerous, (name, dangerous)


def test_locations_inside_archives(corpus: list[scan_corpus.Item]) -> None:
    item = next(it for it in corpus if it.name == "nemo_payload")
    bad = [f for f in scan(item.path).findings if f.code == "global-dangerous"]
    assert len(bad) == 1
    assert bad[0].key is not None
    assert bad[0].key.startswith("./model_weights.ckpt/")
    assert bad[0].key.endswith("/data.pkl")
    assert bad[0].file == str(item.path)


@pytest.mark.parametrize(
    ("module", "name", "verdict"),
    [
        ("torch._utils", "_rebuild_tensor_v2", SAFE),
        ("torch", "BFloat16Storage", SAFE),
        ("collections", "OrderedDict", SAFE),
        ("argparse", "Namespace", SAFE),
        ("__builtin__", "set", SAFE),
        ("numpy.dtypes", "Float32DType", SAFE),
        ("pathlib", "PosixPath", SAFE),
        ("pathlib", "Path.write_text", DANGEROUS),
        ("omegaconf.dictconfig", "DictConfig", UNKNOWN),
        ("torch.nn.modules.linear", "Linear", UNKNOWN),
        ("__main__", "Config", UNKNOWN),
        ("os", "system", DANGEROUS),
        ("nt", "system", DANGEROUS),
        ("builtins", "getattr", DANGEROUS),
        ("__builtin__", "eval", DANGEROUS),
        ("copy_reg", "add_extension", DANGEROUS),
        ("torch", "load", DANGEROUS),
        ("torch.serialization", "load", DANGEROUS),
        ("functools", "partial", DANGEROUS),
        ("collections", "OrderedDict.__class__.__base__", DANGEROUS),
        ("builtins ", "set", DANGEROUS),
        ("torch", "storage.UntypedStorage.__init__", DANGEROUS),
    ],
)
def test_classify(module: str, name: str, verdict: str) -> None:
    assert classify(module, name)[0] == verdict


def test_unknown_fails_only_in_strict(tmp_path: Path) -> None:
    p = tmp_path / "cfg.pkl"
    p.write_bytes(b"comegaconf.dictconfig\nDictConfig\n)R.")
    assert scan(p).passed
    strict = scan(p, strict=True)
    assert not strict.passed
    assert _codes(strict) == {"global-unknown"}


def test_walk_stops_at_stop_and_reports_malformed() -> None:
    data = pickle.dumps({"a": 1}, protocol=2)
    walk = scan_pickle(data + b"trailing", path="p")
    assert walk.error is None
    assert walk.end == len(data)
    broken = scan_pickle(b"cos\nsystem\n(S'x'\ntR", path="p")  # no STOP
    assert broken.error is not None
    assert [(r.module, r.name) for r in broken.globals] == [("os", "system")]


# --- structural ---------------------------------------------------------------------------------


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def test_zip_duplicate_member(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        p = _zip(
            tmp_path / "dup.pt",
            [("a/data.pkl", pickle.dumps({})), ("a/data.pkl", pickle.dumps({}))],
        )
    assert "zip-duplicate-member" in _codes(scan(p))


def test_zip_crc_mismatch(tmp_path: Path) -> None:
    p = _zip(tmp_path / "crc.pt", [("a/data.pkl", pickle.dumps({})), ("a/data/0", b"\1" * 64)])
    raw = bytearray(p.read_bytes())
    i = raw.rfind(b"\1" * 64)
    raw[i] = 2
    p.write_bytes(bytes(raw))
    result = scan(p)
    assert "zip-crc-mismatch" in _codes(result)
    assert "zip-crc-mismatch" not in _codes(scan(p, verify_crc=False))


def test_zip_overlap_and_size_beyond_file(tmp_path: Path) -> None:
    p = _zip(tmp_path / "ov.pt", [("a/data.pkl", pickle.dumps({})), ("a/data/0", b"x" * 100)])
    raw = bytearray(p.read_bytes())
    cd = raw.find(b"PK\x01\x02", raw.find(b"PK\x01\x02") + 4)  # second central entry
    struct.pack_into("<I", raw, cd + 42, 0)  # its local header offset -> the first member's
    p.write_bytes(bytes(raw))
    codes = _codes(scan(p))
    assert codes & {"zip-overlap", "zip-name-mismatch"}
    raw2 = bytearray(_zip(tmp_path / "big.pt", [("a/data.pkl", pickle.dumps({}))]).read_bytes())
    cd = raw2.find(b"PK\x01\x02")
    struct.pack_into("<I", raw2, cd + 20, 10**9)  # compressed size
    (tmp_path / "big.pt").write_bytes(bytes(raw2))
    assert "zip-size-beyond-file" in _codes(scan(tmp_path / "big.pt"))


def test_zip_compressed_record(tmp_path: Path) -> None:
    p = tmp_path / "c.pt"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/data.pkl", pickle.dumps({"x": 1}))
    result = scan(p)
    assert "zip-compressed-record" in _codes(result)
    assert result.passed
    assert not scan(p, strict=True).passed


def _tar_with(path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w") as tf:
        tf.addfile(info, io.BytesIO(data) if data else None)
    return path


def test_tar_links_and_traversal(tmp_path: Path) -> None:
    link = tarfile.TarInfo("./model_weights.ckpt")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    assert "tar-link" in _codes(scan(_tar_with(tmp_path / "l.nemo", link)))
    evil = tarfile.TarInfo("../../evil.yaml")
    evil.size = 3
    assert "tar-traversal" in _codes(scan(_tar_with(tmp_path / "t.nemo", evil, b"a: 1"[:3])))
    absolute = tarfile.TarInfo("/abs.yaml")
    absolute.size = 1
    assert "tar-traversal" in _codes(scan(_tar_with(tmp_path / "a.nemo", absolute, b"x")))


def _safetensors(header: dict[str, object], data: bytes, pad: bytes = b"") -> bytes:
    h = json.dumps(header).encode() + pad
    return struct.pack("<Q", len(h)) + h + data


def test_safetensors_polyglot_slack_and_header(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    ok = tmp_path / "ok.safetensors"
    ok.write_bytes(_safetensors(header, b"\0" * 8, b"  "))
    assert scan(ok, strict=True).passed
    slack = tmp_path / "slack.safetensors"
    slack.write_bytes(_safetensors(header, b"\0" * 8 + b"PK\x03\x04 hidden archive"))
    result = scan(slack)
    assert "safetensors-slack" in _codes(result)
    assert "zip" in next(f.message for f in result.findings if f.code == "safetensors-slack")
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(_safetensors(header, b"\0" * 8, b"\0\0"))
    assert "safetensors-header" in _codes(scan(odd))
    dup = tmp_path / "dup.safetensors"
    entry = b'{"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}'
    h = b'{"w": ' + entry + b', "w": ' + entry + b"}"
    dup.write_bytes(struct.pack("<Q", len(h)) + h + b"\0" * 8)
    assert "safetensors-header" in _codes(scan(dup))
    gap = tmp_path / "gap.safetensors"
    gap.write_bytes(
        _safetensors({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8)
    )
    assert "safetensors-offsets" in _codes(scan(gap))


def test_garbage_and_missing_paths(tmp_path: Path) -> None:
    from inspector.errors import CheckpointError

    junk = tmp_path / "notes.pt"
    junk.write_bytes(b"\xff\xfe not a checkpoint")
    result = scan(junk)
    assert _codes(result) == {"not-scanned"}
    assert result.passed
    assert not scan(junk, strict=True).passed
    with pytest.raises(CheckpointError, match="no such file"):
        scan(tmp_path / "missing.pt")


# --- one walker, collected problems, caps -----------------------------------------------------


def _finding_keys(result: object, code: str) -> set[str | None]:
    return {f.key for f in result.findings if f.code == code}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "blob"),
    [
        # the reader refuses NEWOBJ on a call's result; real pickle runs it, then the payload
        ("newobj_on_call_result", b"\x80\x02cmymod\nFactory\n)R)\x810cos\nsystem\n(S'true'\ntR."),
        # STOP over two values: real pickle returns the top one after running both calls
        ("stop_over_extra_values", b"cmymod\nf\n)Rcposix\nsystem\n(S'true'\ntR."),
        # BUILD on a list, then a payload
        ("build_on_a_list", b"\x80\x02]}b0cos\nsystem\n(S'true'\ntR."),
    ],
)
def test_walk_goes_on_past_what_the_reader_refuses(tmp_path: Path, name: str, blob: bytes) -> None:
    assert scan_pickle(blob, path="p").error is None  # real pickle reads it to the end too
    p = tmp_path / f"{name}.pkl"
    p.write_bytes(blob)
    result = scan(p)
    assert not result.passed
    assert "pickle-malformed" not in _codes(result)
    assert {"os.system", "posix.system"} & {
        f"{g.module}.{g.name}" for g in result.globals if g.verdict == DANGEROUS
    }


def test_computed_stack_global_operands_are_dangerous(tmp_path: Path) -> None:
    # module and name are the results of calls: nothing can tell what they import
    p = tmp_path / "computed.pkl"
    p.write_bytes(b"\x80\x04cmymod\nf\n)Rcmymod\ng\n)R\x93)R.")
    result = scan(p)
    assert "global-dangerous" in _codes(result)
    assert any(g.module == "?" for g in result.globals)


def test_long_strings_are_stepped_over() -> None:
    blob = pickle.dumps(["x" * 300_000, b"y" * 300_000, Reduce(posix_system, "true")], protocol=4)
    found = scan_pickle(blob, path="p")
    assert found.error is None
    assert found.end == len(blob)
    assert [(g.module, g.name) for g in found.globals] == [("posix", "system")]


def test_every_tar_problem_is_reported_and_later_members_scanned(tmp_path: Path) -> None:
    path = tmp_path / "many.nemo"
    payload = scan_corpus.RAW_PAYLOADS["os_system_global"][0]
    with tarfile.open(path, "w") as tf:
        link = tarfile.TarInfo("./model_weights.ckpt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        for name in ("../up.pkl", "./a.pkl", "./a.pkl"):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    result = scan(path)
    assert _finding_keys(result, "tar-link") == {"./model_weights.ckpt"}
    assert "/etc/passwd" in next(f.message for f in result.findings if f.code == "tar-link")
    assert _finding_keys(result, "tar-traversal") == {"../up.pkl"}
    assert _finding_keys(result, "tar-duplicate-member") == {"./a.pkl"}
    # after the link, the traversal and the duplicate: every pickle is still walked
    assert _finding_keys(result, "global-dangerous") == {"../up.pkl", "./a.pkl"}


def test_every_zip_problem_is_reported(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        p = _zip(
            tmp_path / "many.pt",
            [("a/data.pkl", pickle.dumps({})), ("a/data/0", b"\1" * 64), ("a/data/0", b"\2" * 64)],
        )
    raw = bytearray(p.read_bytes())
    raw[raw.find(b"\1" * 64)] = 3  # first copy's CRC
    p.write_bytes(bytes(raw))
    result = scan(p)
    assert _codes(result) >= {"zip-duplicate-member", "zip-crc-mismatch"}
    assert _finding_keys(result, "zip-crc-mismatch") == {"a/data/0"}


def test_deflated_pickle_over_the_limit_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inspector.scanning as scan_module

    p = tmp_path / "c.pt"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/data.pkl", scan_corpus.RAW_PAYLOADS["os_system_global"][0] + b" " * 4096)
    assert "global-dangerous" in _codes(scan(p))
    monkeypatch.setattr(scan_module, "PICKLE_LIMIT", 1024)
    result = scan(p)
    assert "scan-limit" in _codes(result)
    assert "global-dangerous" not in _codes(result)
    assert not result.passed  # what was not scanned is not passed as safe


def test_inflating_stops_at_the_spool_limit(corpus: list[scan_corpus.Item]) -> None:
    item = next(it for it in corpus if it.name == "nemo_targz")
    assert scan(item.path, strict=True).passed
    result = scan(item.path, spool_limit=1024)
    assert _codes(result) == {"scan-limit"}
    assert not result.passed
    assert "1024-byte limit" in result.findings[0].message


def test_deflated_nested_archive_is_inflated_and_scanned(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    import torch

    torch.save({"hook": scan_corpus.Reduce(posix_system, "true")}, evil)
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(evil, "inner/model.pt")
    result = scan(outer)
    keys = _finding_keys(result, "global-dangerous")
    assert len(keys) == 1
    (key,) = keys
    assert key is not None
    assert key.startswith("inner/model.pt/")
    assert key.endswith("/data.pkl")


# Attribute walks: pickle resolves a dotted name attribute by attribute from the imported module,
# and a module's attributes include the modules it imported (torch.serialization.os is os).
_SAFE_MODULES = sorted({q.rsplit(".", 1)[0] for q in scan_policy.ALLOW})
_ORDINARY_MODULES = ["posixpath", "json", "collections", "omegaconf.dictconfig", "mylib.models"]
_DENIED = sorted(scan_policy.DENY)


def _global(module: str, name: str, protocol4: bool) -> bytes:
    """`module.name('true')` as GLOBAL (protocol 0) or STACK_GLOBAL (protocol 4)."""
    if not protocol4:
        return f"c{module}\n{name}\n(S'true'\ntR.".encode()
    m, n = module.encode(), name.encode()
    return (b"\x80\x04\x8c" + bytes([len(m)]) + m + b"\x8c" + bytes([len(n)]) + n
            + b"\x93\x8c\x04true\x85R.")


@given(denied=st.sampled_from(_DENIED),
       module=st.sampled_from(_SAFE_MODULES + _ORDINARY_MODULES),
       via=st.sampled_from(["", "serialization.", "sub.mod."]),
       leaf=st.sampled_from(["", ".system", ".Popen"]))
def test_a_denied_name_reached_by_attribute_walk_is_dangerous(
        denied: str, module: str, via: str, leaf: str) -> None:
    name = f"{via}{denied}{leaf}"
    assert classify(module, name)[0] == DANGEROUS, (module, name)


@pytest.mark.parametrize("protocol4", [False, True], ids=["GLOBAL", "STACK_GLOBAL"])
@pytest.mark.parametrize(("module", "name"), [
    ("torch.serialization", "os.system"),
    ("torch", "serialization.os.system"),
    ("posixpath", "os.system"),
    ("torch._utils", "subprocess.Popen"),
    ("collections", "builtins.eval"),
])
def test_scan_fails_a_pickle_that_walks_to_os_system(
        tmp_path: Path, module: str, name: str, protocol4: bool) -> None:
    path = tmp_path / "payload.pkl"
    path.write_bytes(_global(module, name, protocol4))
    result = scan([path])
    assert result.exit_code == 1
    assert "global-dangerous" in _codes(result), result.findings
