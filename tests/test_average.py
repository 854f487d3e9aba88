"""`ckpt average` / inspector.average: exact means against exact references, icefall's arithmetic,
containers kept, inputs that disagree refused with nothing written."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from subproc import ckpt

import inspector
from inspector.demo import build_demo
from inspector.errors import CheckpointError, MismatchError

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
BITS = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
        torch.float64: torch.int64}


def exact_mean(inputs: list[torch.Tensor], weights: list[float]) -> list[Fraction]:
    """The exact weighted mean, element by element (rational arithmetic: no rounding at all)."""
    cols = [t.double().reshape(-1).tolist() for t in inputs]
    total = sum(Fraction(w) for w in weights)
    return [sum(Fraction(w) * Fraction(x) for w, x in zip(weights, xs, strict=True)) / total
            for xs in zip(*cols, strict=True)]


def assert_within_one_ulp(out: torch.Tensor, exact: list[Fraction]) -> None:
    """Each value of `out` is within one ulp (the spacing of its dtype at that value) of `exact`."""
    flat = out.reshape(-1)
    up = (flat.view(BITS[out.dtype]) + 1).view(out.dtype)  # the next value away from zero
    for i, (got, nxt) in enumerate(zip(flat.double().tolist(), up.double().tolist(), strict=True)):
        ulp = abs(Fraction(nxt) - Fraction(got))
        assert abs(Fraction(got) - exact[i]) <= ulp, (i, got, float(exact[i]), out.dtype)


def save(tensors: dict[str, torch.Tensor], path: Path, **extra: Any) -> Path:
    torch.save({"state_dict": tensors, **extra}, path)
    return path


@settings(max_examples=30, deadline=None)
@given(
    dtype=st.sampled_from(FLOATS),
    scales=st.lists(st.sampled_from([1e-4, 1.0, 3.0, 1e3]), min_size=2, max_size=5),
    weights=st.none() | st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0]), min_size=5, max_size=5),
    shape=st.sampled_from([(), (7,), (3, 5), (2, 3, 4)]),
    seed=st.integers(0, 2**16),
)
def test_mean_within_one_ulp_of_exact(dtype: torch.dtype, scales: list[float],
                                      weights: list[float] | None, shape: tuple[int, ...],
                                      seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    inputs = [(torch.randn(shape, generator=g, dtype=torch.float64) * s).to(dtype)
              for s in scales]
    w = None if weights is None else weights[: len(inputs)]
    with tempfile.TemporaryDirectory() as d:
        paths = [save({"x": t}, Path(d) / f"in{i}.pt") for i, t in enumerate(inputs)]
        inspector.average(paths, Path(d) / "out.pt", weights=w)
        out = torch.load(Path(d) / "out.pt", weights_only=True)["state_dict"]["x"]
    assert out.dtype == dtype
    assert out.shape == inputs[0].shape
    assert_within_one_ulp(out, exact_mean(inputs, w or [1.0] * len(inputs)))


def test_cancellation_keeps_the_small_terms(tmp_path: Path) -> None:
    """2^40 + 2^-20 - 2^40: a plain double sum loses 2^-20; the mean keeps it."""
    vals = [torch.tensor([2.0**40]), torch.tensor([2.0**-20]), torch.tensor([-(2.0**40)])]
    paths = [save({"x": v}, tmp_path / f"{i}.pt") for i, v in enumerate(vals)]
    inspector.average(paths, tmp_path / "out.pt")
    out = torch.load(tmp_path / "out.pt", weights_only=True)["state_dict"]["x"]
    assert out.item() == np.float32(2.0**-20 / 3)


def lightning(seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 4, generator=g)
    sd = {"enc.weight": w, "dec.weight": w,  # tied
          "proj.weight": torch.randn(3, 5, generator=g).t(),  # a stored transpose
          "half": torch.randn(9, generator=g).half(), "bf": torch.randn(9, generator=g).bfloat16(),
          "bn.num_batches_tracked": torch.tensor(-3 + 4 * seed),
          "mask": torch.tensor([seed % 2 == 0, True])}
    return {"state_dict": sd, "epoch": seed, "global_step": 100 * seed,
            "optimizer_states": [{"state": {0: {"exp_avg": torch.full((2,), float(seed))}}}],
            "hyper_parameters": {"lr": 0.1}}


def test_lightning_output_is_the_torch_average(tmp_path: Path) -> None:
    dicts = [lightning(s) for s in range(3)]
    paths = []
    for i, d in enumerate(dicts):
        torch.save(d, tmp_path / f"epoch={i}.ckpt")
        paths.append(tmp_path / f"epoch={i}.ckpt")
    report = inspector.average(paths, tmp_path / "avg.ckpt")
    out = torch.load(tmp_path / "avg.ckpt", weights_only=True)
    sds = [d["state_dict"] for d in dicts]
    for name, first in sds[0].items():
        got = out["state_dict"][name]
        assert (got.dtype, got.shape) == (first.dtype, first.shape), name
        if first.is_floating_point():  # the torch average, up to its own float32 rounding
            ref = sum(s[name].double() for s in sds) / 3
            torch.testing.assert_close(got.double(), ref, rtol=2e-2, atol=1e-3)
            assert_within_one_ulp(got, exact_mean([s[name] for s in sds], [1.0] * 3))
    assert out["state_dict"]["bn.num_batches_tracked"].item() == (-3 + 1 + 5) // 3  # icefall's //
    assert out["state_dict"]["mask"].tolist() == [True, True]  # bool: the first input's
    assert out["state_dict"]["dec.weight"].data_ptr() == out["state_dict"]["enc.weight"].data_ptr()
    for key in ("epoch", "global_step", "hyper_parameters"):
        assert out[key] == dicts[0][key]
    assert torch.equal(out["optimizer_states"][0]["state"][0]["exp_avg"], torch.zeros(2))
    assert (report.tensors, report.int_tensors, report.bool_tensors, report.tied) == (4, 1, 1, 1)
    assert set(report.kept) == {"epoch", "global_step", "optimizer_states", "hyper_parameters"}
    assert report.verified == len(sds[0])
    assert report.mode == "patch"


@pytest.mark.parametrize(("rule", "expected"), [("mean", [-2, 3, 0]), ("first", [-3, 5, 0]),
                                                 ("last", [0, 2, 1])])
def test_integer_rules(tmp_path: Path, rule: str, expected: list[int]) -> None:
    a = save({"n": torch.tensor([-3, 5, 0], dtype=torch.int32)}, tmp_path / "a.pt")
    b = save({"n": torch.tensor([0, 2, 1], dtype=torch.int32)}, tmp_path / "b.pt")
    report = inspector.average([a, b], tmp_path / "out.pt", ints=rule)
    out = torch.load(tmp_path / "out.pt", weights_only=True)["state_dict"]["n"]
    assert out.dtype == torch.int32
    assert out.tolist() == expected
    if rule == "mean":
        assert out.tolist() == ((torch.tensor([-3, 5, 0]) + torch.tensor([0, 2, 1])) // 2).tolist()
    assert report.int_rule == rule
    assert report.int_tensors == 1


def test_weights_weigh_the_inputs(tmp_path: Path) -> None:
    a = save({"x": torch.tensor([1.0, 2.0]), "n": torch.tensor([1, 10])}, tmp_path / "a.pt")
    b = save({"x": torch.tensor([5.0, 6.0]), "n": torch.tensor([5, 3])}, tmp_path / "b.pt")
    inspector.average([a, b], tmp_path / "out.pt", weights=[1, 3])
    out = torch.load(tmp_path / "out.pt", weights_only=True)["state_dict"]
    assert out["x"].tolist() == [4.0, 5.0]
    assert out["n"].tolist() == [(1 + 15) // 4, (10 + 9) // 4]


# -- icefall --------------------------------------------------------------------------------------


def icefall_model(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"encoder.layers.0.weight": torch.randn(8, 4, generator=g),
            "encoder.layers.0.bias": torch.randn(8, generator=g),
            "bn.num_batches_tracked": torch.tensor(seed)}


def icefall_save(path: Path, seed: int, batch_idx_train: int, drop: tuple[str, ...] = ()) -> Path:
    """The dict icefall's save_checkpoint writes (icefall/checkpoint.py), params included."""
    checkpoint: dict[str, Any] = {
        "model": icefall_model(seed + 100),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.045}]},
        "scheduler": {"base_lrs": [0.045]}, "grad_scaler": None, "sampler": None,
        "model_avg": icefall_model(seed),
    }
    params = {"best_train_loss": float("inf"), "best_valid_loss": 0.5, "best_train_epoch": -1,
              "batch_idx_train": batch_idx_train, "log_interval": 50, "average_period": 200,
              "cur_epoch": seed}
    checkpoint.update(params)
    for key in drop:
        del checkpoint[key]
    torch.save(checkpoint, path)
    return path


def icefall_average(start: Path, end: Path) -> dict[str, torch.Tensor]:
    """icefall's average_checkpoints_with_averaged_model and average_state_dict, as written."""
    state_dict_start = torch.load(start, weights_only=False)
    state_dict_end = torch.load(end, weights_only=False)
    average_period = state_dict_start["average_period"]
    batch_idx_train_start = state_dict_start["batch_idx_train"]
    batch_idx_train_start = (batch_idx_train_start // average_period) * average_period
    batch_idx_train_end = state_dict_end["batch_idx_train"]
    batch_idx_train_end = (batch_idx_train_end // average_period) * average_period
    interval = batch_idx_train_end - batch_idx_train_start
    weight_end = batch_idx_train_end / interval
    weight_start = 1 - weight_end
    avg, model_start = state_dict_end["model_avg"], state_dict_start["model_avg"]
    for k, v in avg.items():
        if torch.is_floating_point(v):
            v *= 1.0
            v += model_start[k] * (weight_start / weight_end)
            v *= weight_end
    return avg


def test_from_averaged_follows_icefall(tmp_path: Path) -> None:
    start = icefall_save(tmp_path / "epoch-20.pt", 1, 30_150)
    end = icefall_save(tmp_path / "epoch-30.pt", 2, 45_390)
    report = inspector.average([start, end], tmp_path / "avg.pt", from_averaged=True)
    out = torch.load(tmp_path / "avg.pt", weights_only=True)
    want = icefall_average(start, end)
    s = torch.load(start, weights_only=True)["model_avg"]
    e = torch.load(end, weights_only=True)
    n_start, n_end = 30_000, 45_200  # rounded down to average_period
    for name, value in out["model"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, want[name], rtol=1e-4, atol=1e-5)
            exact = exact_mean([s[name], e["model_avg"][name]], [-n_start, n_end])
            assert_within_one_ulp(value, exact)
        else:  # icefall leaves integer tensors as END's model_avg has them
            assert torch.equal(value, e["model_avg"][name])
    for key, kept in e.items():
        if key != "model":
            assert str(out[key]) == str(kept), key
    assert report.from_averaged == {"n_start": n_start, "n_end": n_end, "average_period": 200}
    assert report.int_rule == "last"


@pytest.mark.parametrize("key", ["average_period", "batch_idx_train", "model_avg"])
def test_from_averaged_missing_key_names_file_and_key(tmp_path: Path, key: str) -> None:
    start = icefall_save(tmp_path / "start.pt", 1, 1000, drop=(key,))
    end = icefall_save(tmp_path / "end.pt", 2, 2000)
    r = ckpt("average", "--from-averaged", start, end, "-o", tmp_path / "avg.pt")
    assert r.returncode == 2, r.stderr
    assert str(start) in r.stderr
    assert repr(key) in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "avg.pt").exists()


def test_from_averaged_end_before_start_is_refused(tmp_path: Path) -> None:
    start = icefall_save(tmp_path / "start.pt", 1, 2000)
    end = icefall_save(tmp_path / "end.pt", 2, 1000)
    with pytest.raises(CheckpointError, match="batch_idx_train"):
        inspector.average([start, end], tmp_path / "avg.pt", from_averaged=True)


# -- inputs that disagree -------------------------------------------------------------------------


@pytest.mark.parametrize(("b", "words"), [
    ({"x": torch.zeros(2, 3), "y": torch.zeros(4)}, ["'x'", "[2, 3]", "[2, 2]"]),
    ({"x": torch.zeros(2, 2, dtype=torch.float16), "y": torch.zeros(4)}, ["'x'", "float16"]),
    ({"x": torch.zeros(2, 2)}, ["lacks", "y"]),
    ({"x": torch.zeros(2, 2), "y": torch.zeros(4), "z": torch.zeros(1)}, ["lacks", "z"]),
])
def test_mismatch_exits_2_naming_tensor_and_files(tmp_path: Path, b: dict[str, torch.Tensor],
                                                  words: list[str]) -> None:
    a = save({"x": torch.zeros(2, 2), "y": torch.zeros(4)}, tmp_path / "a.pt")
    bp = save(b, tmp_path / "b.pt")
    r = ckpt("average", a, bp, "-o", tmp_path / "out.pt")
    assert r.returncode == 2, r.stderr
    for word in [*words, "b.pt"]:
        assert word in r.stderr, (word, r.stderr)
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out.pt").exists()
    with pytest.raises(MismatchError):
        inspector.average([a, bp], tmp_path / "out.pt")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    a = save({"x": torch.zeros(2)}, tmp_path / "a.pt")
    for args in (["--weights", "1,2,3"], ["--weights", "1,-1"], ["--weights", "1,nan"],
                 ["--weights", "1,inf"], ["--weights", "1e308,1e308"],
                 ["--weights", "1,1e-300"]):
        r = ckpt("average", a, a, "-o", tmp_path / "out.pt", *args)
        assert r.returncode == 2
        assert "weights" in r.stderr
        assert "Traceback" not in r.stderr
    r = ckpt("average", "--from-averaged", a, a, "--root", "model", "-o", tmp_path / "out.pt")
    assert r.returncode == 2
    assert "'model_avg'" in r.stderr
    r = ckpt("average", a, "-o", tmp_path / "out.pt")
    assert r.returncode == 2
    assert "two inputs" in r.stderr


# -- containers and the command line --------------------------------------------------------------


def nemo_with_other_weights(src: Path, dest: Path) -> Path:
    """A copy of a .nemo whose weights are changed (every float + 1), other members unchanged."""
    with tarfile.open(src) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
                   for m in tar.getmembers()]
    with tarfile.open(dest, "w") as out:
        for m, data in members:
            if m.name.endswith("model_weights.ckpt"):
                sd = torch.load(io.BytesIO(data or b""), weights_only=True)
                sd = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}
                buf = io.BytesIO()
                torch.save(sd, buf)
                data = buf.getvalue()
                m.size = len(data)
            out.addfile(m, io.BytesIO(data) if data is not None else None)
    return dest


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def test_nemo_keeps_its_members_byte_for_byte(tmp_path: Path) -> None:
    demo = build_demo(tmp_path / "demo")
    a = demo.target  # rnnt_bpe.nemo
    b = nemo_with_other_weights(a, tmp_path / "b.nemo")
    r = ckpt("average", a, b, "-o", tmp_path / "avg.nemo", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    got, first = tar_members(tmp_path / "avg.nemo"), tar_members(a)
    assert got.keys() == first.keys()
    for name, data in first.items():
        if not name.endswith("model_weights.ckpt"):
            assert got[name] == data, name
    assert report["kept"][0] == "model_config.yaml"
    assert len(report["kept"]) == 3
    out = torch.load(io.BytesIO(got["./model_weights.ckpt"]), weights_only=True)
    wa = torch.load(io.BytesIO(first["./model_weights.ckpt"]), weights_only=True)
    for k, v in out.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, wa[k] + 0.5, rtol=0, atol=1e-6)
        else:
            assert torch.equal(v, wa[k])


def test_cli_report_and_json(tmp_path: Path) -> None:
    a = save({"x": torch.ones(3), "n": torch.tensor(4)}, tmp_path / "a.pt", epoch=1)
    b = save({"x": torch.zeros(3), "n": torch.tensor(1)}, tmp_path / "b.pt", epoch=2)
    r = ckpt("average", a, b, "-o", tmp_path / "out.pt", "--weights", "3,1")
    assert r.returncode == 0, r.stderr
    assert "1 averaged, 1 integer (floor of the mean)" in r.stdout
    assert "kept: 1 non-weight entries (epoch)" in r.stdout
    assert "verified: OK: 2" in r.stdout
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    assert out["state_dict"]["x"].tolist() == [0.75] * 3
    assert out["state_dict"]["n"].item() == 3
    assert out["epoch"] == 1
    r = ckpt("average", a, b, "-o", tmp_path / "out2.pt", "--int", "last", "--json")
    report = json.loads(r.stdout)
    assert (report["tensors"], report["int_tensors"], report["int_rule"]) == (1, 1, "last")
    assert report["verified"] == 2
    assert report["bytes_written"] > 0


def test_other_format_and_like(tmp_path: Path) -> None:
    a = save({"x": torch.ones(2, 3)}, tmp_path / "a.pt")
    b = save({"x": torch.zeros(2, 3)}, tmp_path / "b.pt")
    report = inspector.average([a, b], tmp_path / "out.safetensors")
    assert report.mode == "rewrite"
    assert report.format == "safetensors"
    assert torch.equal(safetensors.torch.load_file(tmp_path / "out.safetensors")["x"],
                       torch.full((2, 3), 0.5))
    like = tmp_path / "like.safetensors"
    safetensors.torch.save_file({"x": torch.zeros(2, 3, dtype=torch.bfloat16)}, like,
                                metadata={"origin": "target"})
    inspector.average([a, b], tmp_path / "into.safetensors", like=like)
    got = safetensors.torch.load_file(tmp_path / "into.safetensors")["x"]
    assert got.dtype == torch.bfloat16
    assert torch.equal(got.float(), torch.full((2, 3), 0.5))
    assert inspector.open(tmp_path / "into.safetensors").metadata.get("safetensors_metadata") == {
        "origin": "target"}


def test_api_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    dicts = [lightning(s) for s in range(2)]
    paths = []
    for i, d in enumerate(dicts):
        torch.save(d, tmp_path / f"{i}.ckpt")
        paths.append(tmp_path / f"{i}.ckpt")
    r1 = inspector.average(paths, tmp_path / "one.ckpt")
    r2 = inspector.average([inspector.open(p) for p in paths], tmp_path / "two.ckpt")
    assert (tmp_path / "one.ckpt").read_bytes() == (tmp_path / "two.ckpt").read_bytes()
    assert r1.verified == r2.verified == 7


def test_a_corrupt_write_is_caught_and_nothing_written(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector import averaging

    a = save({"x": torch.ones(64), "y": torch.ones(8)}, tmp_path / "a.pt")
    b = save({"x": torch.zeros(64), "y": torch.zeros(8)}, tmp_path / "b.pt")
    real = averaging._verify

    def corrupt_then_verify(path: Path, *args: Any, **kwargs: Any) -> None:
        t = inspector.open(path)["x"]
        assert t.byte_range is not None
        with open(path, "r+b") as f:  # one bit of one averaged value flipped on disk
            f.seek(t.byte_range[0])
            byte = f.read(1)
            f.seek(t.byte_range[0])
            f.write(bytes([byte[0] ^ 1]))
        real(path, *args, **kwargs)

    monkeypatch.setattr(averaging, "_verify", corrupt_then_verify)
    with pytest.raises(inspector.WriteError, match=r"verification failed.*x: digest"):
        inspector.average([a, b], tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt", "b.pt"]


def test_digest_while_producing_equals_a_second_computation(tmp_path: Path) -> None:
    from inspector.writers.averaged import AverageValue
    from inspector.writers.verify import value_digest

    inputs = [torch.randn(300, 7).t() for _ in range(3)]  # strided: computed by rows
    paths = [save({"x": t}, tmp_path / f"{i}.pt") for i, t in enumerate(inputs)]
    parts = [(c, c["x"]) for c in map(inspector.open, paths)]
    value = AverageValue(parts, "bfloat16", [1.0, 2.0, 3.0], 6.0)
    assert value.produced_digest() is None  # nothing produced yet
    first = value_digest(value)
    assert value.produced_digest() == first == value_digest(value)


def test_safetensors_inputs_patch_the_first(tmp_path: Path) -> None:
    tensors = [{"w": torch.randn(16, 8, dtype=torch.float64) * i, "b": torch.arange(4) * i}
               for i in range(1, 4)]
    paths = []
    for i, t in enumerate(tensors):
        paths.append(tmp_path / f"{i}.safetensors")
        safetensors.torch.save_file(t, paths[-1], metadata={"epoch": str(i)})
    report = inspector.average(paths, tmp_path / "avg.safetensors")
    assert report.mode == "patch"
    got = safetensors.torch.load_file(tmp_path / "avg.safetensors")
    assert_within_one_ulp(got["w"], exact_mean([t["w"] for t in tensors], [1.0] * 3))
    assert got["b"].tolist() == (sum(t["b"] for t in tensors) // 3).tolist()
    assert inspector.open(tmp_path / "avg.safetensors").metadata["safetensors_metadata"] == {
        "epoch": "0"}


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
def test_dcp_inputs_and_explicit_roots(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp

    states = [{"model": {"w": torch.randn(6, 5)}, "step": torch.tensor(i)} for i in range(2)]
    for i, s in enumerate(states):
        dcp.save(s, checkpoint_id=str(tmp_path / f"dcp{i}"))
    roots = [f"{tmp_path / f'dcp{i}'}::model" for i in range(2)]
    report = inspector.average(roots, tmp_path / "avg.pt")
    out = torch.load(tmp_path / "avg.pt", weights_only=True)
    assert_within_one_ulp(out["model"]["w"], exact_mean([s["model"]["w"] for s in states],
                                                        [1.0, 1.0]))
    assert report.verified == 1
    lightning_like = [save({"w": s["model"]["w"]}, tmp_path / f"l{i}.pt",
                           extra={"w": s["model"]["w"].clone() + 1})
                      for i, s in enumerate(states)]
    inspector.average(lightning_like, tmp_path / "extra.pt", root="extra")
    out = torch.load(tmp_path / "extra.pt", weights_only=True)
    assert torch.equal(out["state_dict"]["w"], states[0]["model"]["w"])  # not the root: kept
    assert_within_one_ulp(out["extra"]["w"], exact_mean([s["model"]["w"] + 1 for s in states],
                                                         [1.0, 1.0]))


def test_a_float_mean_into_an_integer_target_is_refused(tmp_path: Path) -> None:
    a = save({"x": torch.ones(2)}, tmp_path / "a.pt")
    like = save({"x": torch.ones(2, dtype=torch.int64)}, tmp_path / "like.pt")
    r = ckpt("average", a, a, "--like", like, "-o", tmp_path / "out.pt")
    assert r.returncode == 2
    assert "'x'" in r.stderr
    assert "like.pt" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out.pt").exists()


def test_extreme_but_finite_weights_give_the_same_mean(tmp_path: Path) -> None:
    """Weights are scaled by a power of two (exact) when they are extreme: 1e300 and 3e300
    weigh as 1 and 3."""
    a = save({"x": torch.tensor([1.0, 2.0])}, tmp_path / "a.pt")
    b = save({"x": torch.tensor([5.0, 6.0])}, tmp_path / "b.pt")
    inspector.average([a, b], tmp_path / "big.pt", weights=[1e300, 3e300])
    inspector.average([a, b], tmp_path / "small.pt", weights=[1, 3])
    big = torch.load(tmp_path / "big.pt", weights_only=True)["state_dict"]["x"]
    small = torch.load(tmp_path / "small.pt", weights_only=True)["state_dict"]["x"]
    assert torch.equal(big, small)
    assert big.tolist() == [4.0, 5.0]


def test_tied_in_the_target_but_not_in_an_input_is_refused(tmp_path: Path) -> None:
    """The output holds one tensor for a tied pair: the pair's means must be one mean."""
    w = torch.zeros(4)
    tied = save({"a": w, "b": w}, tmp_path / "tied.pt")
    apart = save({"a": torch.zeros(4) + 2, "b": torch.zeros(4) + 10}, tmp_path / "apart.pt")
    r = ckpt("average", tied, apart, "-o", tmp_path / "out.pt")
    assert r.returncode == 2, r.stderr
    assert "apart.pt" in r.stderr
    assert "tied" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out.pt").exists()
    v = torch.zeros(4) + 4
    also_tied = save({"a": v, "b": v}, tmp_path / "also.pt")
    inspector.average([tied, also_tied], tmp_path / "ok.pt")
    out = torch.load(tmp_path / "ok.pt", weights_only=True)["state_dict"]
    assert out["a"].tolist() == out["b"].tolist() == [2.0] * 4
    assert out["a"].untyped_storage().data_ptr() == out["b"].untyped_storage().data_ptr()
