"""`inspector.check` and `assert_compatible`: references, manifests, plans, models in code."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import inspector
from inspector.checking import check, check_model
from inspector.errors import CheckpointError
from inspector.manifest import load_manifest, write_manifest
from inspector.testing import assert_compatible


def _sd(layers: int = 4, d: int = 8, vocab: int = 10) -> dict[str, torch.Tensor]:
    sd = {}
    for i in range(layers):
        sd[f"encoder.layers.{i}.fc.weight"] = torch.randn(d, d)
        sd[f"encoder.layers.{i}.fc.bias"] = torch.randn(d)
    sd["decoder.out.weight"] = torch.randn(vocab, d)
    return sd


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    base = _sd()
    paths = {"ref": tmp_path / "ref.pt", "same": tmp_path / "same.safetensors"}
    torch.save(base, paths["ref"])
    save_file(base, paths["same"])
    wide = _sd(d=16)
    paths["wide"] = tmp_path / "wide.pt"
    torch.save(wide, paths["wide"])
    vocab = {**base, "decoder.out.weight": torch.randn(12, 8)}
    paths["vocab"] = tmp_path / "vocab.pt"
    torch.save(vocab, paths["vocab"])
    return paths


def test_identical_layouts_pass_across_formats(files: dict[str, Path]) -> None:
    result = check(files["same"], against=files["ref"])
    assert result.passed
    assert result.exit_code == 0
    assert result.checked == 9
    assert result.findings == []


def test_every_violation_is_reported(files: dict[str, Path]) -> None:
    result = check(files["wide"], against=files["ref"])
    assert not result.passed
    codes = [f.code for f in result.findings]
    assert codes.count("shape-mismatch") == 9  # 4 weights + 4 biases + the output layer
    weight = next(f for f in result.findings if f.key == "encoder.layers.3.fc.weight")
    assert weight.message == f"shape [16, 16], {files['ref']} has [8, 8]"


def test_require_and_allow_missing(files: dict[str, Path]) -> None:
    assert check(files["vocab"], against=files["ref"], require=["encoder.*"]).passed
    failing = check(files["vocab"], against=files["ref"], require=["encoder.*", "decoder.*"])
    assert [f.key for f in failing.errors] == ["decoder.out.weight"]
    typo = check(files["vocab"], against=files["ref"], require=["encoderr.*"])
    assert [f.code for f in typo.errors] == ["require-unmatched"]
    partial = {k: v for k, v in _sd().items() if not k.startswith("decoder.")}
    p = files["ref"].parent / "partial.pt"
    torch.save(partial, p)
    missing = check(p, against=files["ref"])
    assert [(f.code, f.key) for f in missing.errors] == [("missing", "decoder.out.weight")]
    allowed = check(p, against=files["ref"], allow_missing=["decoder.*"])
    assert allowed.passed
    assert [f.code for f in allowed.findings] == ["allowed-missing"]
    extra = check(files["ref"], against=p)
    assert [f.code for f in extra.errors] == ["unexpected"]


def test_dtypes_cast_warns_kind_change_fails(tmp_path: Path, files: dict[str, Path]) -> None:
    half = {k: v.half() for k, v in _sd().items()}
    torch.save(half, tmp_path / "half.pt")
    result = check(tmp_path / "half.pt", against=files["ref"])
    assert result.passed
    assert {f.code for f in result.findings} == {"dtype-cast"}
    assert not check(tmp_path / "half.pt", against=files["ref"], strict=True).passed
    ints = {k: v.long() for k, v in _sd().items()}
    torch.save(ints, tmp_path / "int.pt")
    assert {f.code for f in check(tmp_path / "int.pt", against=files["ref"]).findings} == {
        "dtype-mismatch"
    }


def test_manifest_round_trip_and_gate(tmp_path: Path, files: dict[str, Path]) -> None:
    text = write_manifest(inspector.open(files["ref"]), optional=["decoder.*"])
    (tmp_path / "shapes.yaml").write_text(text)
    m = load_manifest(tmp_path / "shapes.yaml")
    assert m.tensors["encoder.layers.0.fc.weight"].shape == (8, 8)
    assert m.optional == ["decoder.*"]
    assert check(files["vocab"], manifest=m, require=["encoder.*"]).passed
    assert check(files["same"], manifest=tmp_path / "shapes.yaml").passed
    assert not check(files["vocab"], manifest=tmp_path / "shapes.yaml").passed
    result = check(files["wide"], manifest=tmp_path / "shapes.yaml")
    assert len(result.errors) == 9


def test_manifest_values(tmp_path: Path, files: dict[str, Path]) -> None:
    from inspector.hashing import hash_tensors

    ref = inspector.open(files["ref"])
    (tmp_path / "d.yaml").write_text(write_manifest(ref, digests=hash_tensors(ref)))
    assert check(files["same"], manifest=tmp_path / "d.yaml", values=True).passed
    changed = {**_sd(), "decoder.out.weight": torch.zeros(10, 8)}
    changed.update({k: v for k, v in torch.load(files["ref"]).items() if k != "decoder.out.weight"})
    torch.save(changed, tmp_path / "changed.pt")
    result = check(tmp_path / "changed.pt", manifest=tmp_path / "d.yaml", values=True)
    assert [(f.code, f.key) for f in result.errors] == [("value-mismatch", "decoder.out.weight")]
    assert check(tmp_path / "changed.pt", manifest=tmp_path / "d.yaml").passed
    (tmp_path / "plain.yaml").write_text(write_manifest(ref))
    nodigest = check(files["same"], manifest=tmp_path / "plain.yaml", values=True)
    assert {f.code for f in nodigest.errors} == {"no-digest"}  # --values needs recorded digests
    assert check(files["same"], against=files["ref"], values=True).passed
    assert not check(tmp_path / "changed.pt", against=files["ref"], values=True).passed


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("tensors: {a: {dtype: float33, shape: [1]}}", "unknown dtype"),
        ("tensors: {a: {dtype: float32, shape: [-1]}}", "non-negative"),
        ("tensors: [1, 2]", "'tensors' mapping"),
        ("tensors: {}\noptional: 3", "glob patterns"),
        ("tensors: {a: [", "not valid YAML"),
    ],
)
def test_bad_manifest(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(CheckpointError, match=match):
        load_manifest(tmp_path / "m.yaml")


def test_plan_gate(tmp_path: Path, files: dict[str, Path]) -> None:
    from inspector.mapping import propose

    plan = propose(str(files["ref"]), str(files["vocab"]))
    plan.approve(plan.under("encoder"))
    plan.save(tmp_path / "plan.yaml")
    result = check(files["ref"], against=files["vocab"], plan=tmp_path / "plan.yaml")
    assert result.passed, [f.message for f in result.findings]
    assert result.checked == 8
    # the target's encoder grew: every approved copy no longer fits
    result = check(files["ref"], against=files["wide"], plan=tmp_path / "plan.yaml")
    assert {f.code for f in result.errors} == {"shape-mismatch"}
    assert len(result.errors) == 8
    # a required part the plan does not copy
    required = check(
        files["ref"], against=files["vocab"], plan=tmp_path / "plan.yaml", require=["decoder.*"]
    )
    assert [f.code for f in required.errors] == ["plan-not-mapped"]
    # a source that lost tensors
    partial = {k: v for k, v in _sd().items() if ".3." not in k}
    torch.save(partial, tmp_path / "partial.pt")
    lost = check(tmp_path / "partial.pt", against=files["vocab"], plan=tmp_path / "plan.yaml")
    assert {f.code for f in lost.errors} == {"plan-source-missing", "plan-source-mismatch"}
    assert [f.details["label"] for f in lost.errors if f.code == "plan-source-mismatch"] == [
        plan.sources[0].label
    ]


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "ckpt_models_for_test.py").write_text(
        textwrap.dedent("""
        import torch

        class Net(torch.nn.Module):
            def __init__(self, d=8, layers=4):
                super().__init__()
                self.encoder = torch.nn.Module()
                self.encoder.layers = torch.nn.ModuleList(
                    torch.nn.Module() for _ in range(layers))
                for layer in self.encoder.layers:
                    layer.fc = torch.nn.Linear(d, d)

        def build_model():
            return Net()

        def build_wide():
            return Net(d=16)

        def build_needs_data():
            net = Net()
            assert net.encoder.layers[0].fc.weight.abs().sum().item() >= 0
            return net
    """)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "ckpt_models_for_test", raising=False)
    return "ckpt_models_for_test"


def test_model_factory_on_meta(factory_module: str, files: dict[str, Path]) -> None:
    result = check_model(
        f"{factory_module}:build_model", against=files["ref"], require=["encoder.*"]
    )
    assert result.passed
    assert result.targets[0] == f"{factory_module}:build_model"
    wide = check_model(f"{factory_module}:build_wide", against=files["ref"], require=["encoder.*"])
    assert len(wide.errors) == 8
    cpu = check_model(
        f"{factory_module}:build_needs_data", against=files["ref"], require=["encoder.*"]
    )
    assert cpu.passed
    assert [f.code for f in cpu.findings] == ["model-built-on-cpu"]
    with pytest.raises(CheckpointError, match="cannot import"):
        check_model(f"{factory_module}:nope", against=files["ref"])
    with pytest.raises(CheckpointError, match="meta device"):
        check_model(f"{factory_module}:build_model", against=files["ref"], values=True)


def test_assert_compatible_message_is_folded(files: dict[str, Path]) -> None:
    assert assert_compatible(files["same"], against=files["ref"]).passed
    with pytest.raises(AssertionError) as info:
        assert_compatible(files["wide"], against=files["ref"])
    message = str(info.value)
    assert "(9 violations)" in message
    assert (
        f"encoder.layers.{{0..3}}.fc.weight: shape [16, 16], {files['ref']} has [8, 8]" in message
    )
    assert "encoder.layers.1.fc.weight" not in message


def test_argument_errors(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        check(files["ref"])
    with pytest.raises(ValueError, match="plan"):
        check(files["ref"], manifest="x.yaml", plan="p.yaml")
