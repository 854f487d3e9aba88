"""Real-library tier: Lightning checkpoints whose hyper-parameters are OmegaConf configs.

OmegaConf nodes pickle their `_parent`, so a `trainer.save_checkpoint` file of a model that
called `save_hyperparameters(cfg)` points back into itself. These files are written here by the
real libraries (omegaconf, torch, lightning) and read back by every command.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from subproc import ckpt

import inspector
from inspector.model import Record

omegaconf = pytest.importorskip("omegaconf")


def _cfg() -> Any:
    return omegaconf.OmegaConf.create(
        {
            "model": {"d_model": 4, "layers": [1, 2, {"kernel": 3}]},
            "optim": {"name": "adam", "lr": 0.1, "betas": [0.9, 0.98]},
        }
    )


def _net() -> Any:
    torch.manual_seed(0)
    return torch.nn.ModuleDict(
        {
            "encoder": torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)),
            "decoder": torch.nn.Linear(3, 2),
        }
    )


def _signature_torch(sd: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()}


def _signature_ours(c: inspector.Checkpoint) -> dict[str, tuple[tuple[int, ...], str]]:
    return {n: (t.shape, t.dtype) for n, t in c.items()}


def _assert_lists_as_torch_loads(path: Path) -> inspector.Checkpoint:
    c = inspector.open(path)
    expected = torch.load(path, weights_only=False)["state_dict"]
    assert c.root == ("state_dict",)
    assert list(c) == list(expected)  # names, in order
    assert _signature_ours(c) == _signature_torch(expected)
    return c


def _assert_every_command_succeeds(path: Path, tmp_path: Path) -> dict[str, Any]:
    for args in (
        ["ls", path],
        ["ls", "--flat", path],
        ["hash", path],
        ["diff", path, path],
        ["map", path, path, "-o", tmp_path / "plan.yaml"],
        ["check", path, "--against", path],
        ["scan", path],
    ):
        out = ckpt(*args)
        assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}"
    listed = ckpt("ls", "--json", path)
    assert listed.returncode == 0, listed.stderr
    doc: dict[str, Any] = json.loads(listed.stdout)
    return doc


def _parents(node: Any) -> list[Any]:
    """Every `_parent` value in the records under `node` (iteratively: the tree has cycles)."""
    found, seen, stack = [], set(), [node]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, Record) and isinstance(n.state, dict):
            if "_parent" in n.state:
                found.append(n.state["_parent"])
            stack.extend(n.state.values())
        elif isinstance(n, dict):
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    return found


def _refs(doc: Any) -> list[str]:
    text = json.dumps(doc)
    return [part.split(">")[0] for part in text.split("<ref to ")[1:]]


def test_a_torch_saved_lightning_layout_with_omegaconf_config(tmp_path):
    net = _net()
    path = tmp_path / "omegaconf.ckpt"
    torch.save(
        {
            "epoch": 1,
            "global_step": 10,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {"cfg": _cfg()},
            "optimizer_states": [],
        },
        path,
    )
    c = _assert_lists_as_torch_loads(path)
    cfg = c.tree["hyper_parameters"]["cfg"]
    assert cfg.cls == "omegaconf.dictconfig.DictConfig"
    parents = _parents(cfg)
    assert any(p is cfg for p in parents), "omegaconf pickles _parent back-references"
    doc = _assert_every_command_succeeds(path, tmp_path)
    config = doc["container"]["hyper_parameters"]["cfg"]
    assert config["__class__"] == "omegaconf.dictconfig.DictConfig"
    assert "hyper_parameters.cfg" in _refs(doc)
    out = tmp_path / "applied.ckpt"
    applied = ckpt("apply", tmp_path / "plan.yaml", "--accept-proposed", "-o", out)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    back = torch.load(out, weights_only=False)["hyper_parameters"]["cfg"]
    assert back == _cfg()
    assert back.model._get_parent() is back  # the written pickle keeps the back-reference


@pytest.mark.filterwarnings("ignore")  # Lightning warns about workers, logging and devices
def _trained_checkpoint(tmp_path: Path) -> tuple[Path, Any]:
    """`trainer.save_checkpoint` of a LightningModule holding `_net()` as `self.net` (its
    weights are saved as `net.` + the bare module's names), and that module."""
    pl = pytest.importorskip("lightning.pytorch")

    class Tiny(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self, cfg: Any) -> None:
            super().__init__()
            self.save_hyperparameters(cfg)
            self.net = _net()

        def training_step(self, batch: Any, index: int) -> Any:
            return self.net["decoder"](self.net["encoder"](batch[0])).sum()

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters())

    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4
    )
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    module = Tiny(_cfg())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, data)
    path = tmp_path / "trained.ckpt"
    trainer.save_checkpoint(path)
    return path, module.net


def test_a_lightning_trainer_checkpoint_with_saved_omegaconf_hyperparameters(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    c = _assert_lists_as_torch_loads(path)
    assert type(torch.load(path, weights_only=False)["hyper_parameters"]).__name__ == "DictConfig"
    assert any(p is c.tree["hyper_parameters"] for p in _parents(c.tree["hyper_parameters"]))
    doc = _assert_every_command_succeeds(path, tmp_path)
    assert "hyper_parameters" in _refs(doc)
    optimizer = inspector.open(f"{path}::optimizer_states")
    assert any("optimizer or training state" in n for n in optimizer.notes)


def test_a_trained_lightning_checkpoint_moves_into_the_bare_model(tmp_path):
    """The user's step after training: the weights of a Lightning checkpoint (`net.` before
    every name) into the bare model's state dict. `ckpt map` finds the prefix (no rule, no
    similarity to review), `plan approve` and `apply` write what torch loads strictly into the
    bare module, which then computes what the trained one computes."""
    path, trained = _trained_checkpoint(tmp_path)
    bare = _net()
    torch.save(bare.state_dict(), tmp_path / "bare.pt")
    plan_file, out = tmp_path / "plan.yaml", tmp_path / "out.pt"
    done = ckpt("map", str(path), str(tmp_path / "bare.pt"), "-o", str(plan_file))
    assert done.returncode == 0, done.stdout + done.stderr
    plan = inspector.mapping.Plan.load(plan_file)
    assert {e.evidence[0].kind for e in plan.entries.values()} == {"prefix"}
    assert all("prefix 'net.' taken off" in e.reason for e in plan.entries.values())
    for argv in (("plan", "approve", str(plan_file), "*"),
                 ("apply", str(plan_file), "-o", str(out))):
        done = ckpt(*argv)
        assert done.returncode == 0, done.stdout + done.stderr
    bare.load_state_dict(torch.load(out, weights_only=True), strict=True)
    bare.eval()
    trained.eval()
    x = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.equal(bare["decoder"](bare["encoder"](x)),
                           trained["decoder"](trained["encoder"](x)))


def _nemo_ctc_config(labels: list[str]) -> Any:
    return omegaconf.OmegaConf.create(
        {
            "sample_rate": 16000,
            "labels": labels,
            "preprocessor": {
                "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                "features": 16,
                "n_fft": 128,
                "window_size": 0.008,
                "window_stride": 0.004,
            },
            "encoder": {
                "_target_": "nemo.collections.asr.modules.ConvASREncoder",
                "feat_in": 16,
                "activation": "relu",
                "conv_mask": True,
                "jasper": [
                    {
                        "filters": 8,
                        "repeat": 1,
                        "kernel": [3],
                        "stride": [1],
                        "dilation": [1],
                        "dropout": 0.0,
                        "residual": False,
                        "separable": False,
                    }
                ],
            },
            "decoder": {
                "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
                "feat_in": 8,
                "num_classes": len(labels),
                "vocabulary": labels,
            },
            "optim": {"name": "adam", "lr": 0.01},
        }
    )


@pytest.mark.filterwarnings("ignore")  # NeMo and Lightning warn on import and on CPU
def test_a_nemo_asr_training_checkpoint(tmp_path):
    """The file of issue 10: `trainer.save_checkpoint` of a NeMo ASR model (random weights)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl = pytest.importorskip("lightning.pytorch")
        asr = pytest.importorskip("nemo.collections.asr")
        model = asr.models.EncDecCTCModel(cfg=_nemo_ctc_config(list(" abc")))
        trainer = pl.Trainer(
            max_epochs=0,
            logger=False,
            enable_checkpointing=False,
            accelerator="cpu",
            default_root_dir=tmp_path,
        )
        trainer.strategy.connect(model)
        path = tmp_path / "asr.ckpt"
        trainer.save_checkpoint(path)

    c = _assert_lists_as_torch_loads(path)
    assert any(name.startswith("encoder.") for name in c)
    assert c.tree["hyper_parameters"].cls == "omegaconf.dictconfig.DictConfig"
    doc = _assert_every_command_succeeds(path, tmp_path)
    assert "hyper_parameters" in _refs(doc)
