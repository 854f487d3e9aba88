"""Write the fuzz seed corpus: small valid files of every format, one folder per harness.

    python tests/fuzz/make_corpus.py      (needs torch and safetensors: the test environment)

Writes tests/fuzz/corpus/<harness>/ and tests/fuzz/siblings/<folder>/ (the fixed files next to
a fuzzed index or .metadata). Each file stays under 64 KiB. Deterministic up to torch's own
output; rerun it when a format writer changes and commit the result.
"""

from __future__ import annotations

import io
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from inspector.manifest import write_manifest
from inspector.reader import open_checkpoint
from inspector.writers.build import build_output
from inspector.writers.safetensors import write_sharded
from inspector.writers.torch_zip import write as write_torch_zip

HERE = Path(__file__).resolve().parent
CORPUS, SIBLINGS = HERE / "corpus", HERE / "siblings"
SUFFIX_BYTE = {".pt": 0, ".bin": 1, ".safetensors": 2, ".nemo": 3}  # fuzz_scan.SUFFIXES


def state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "encoder.weight": torch.randn(4, 3, generator=g),
        "encoder.bias": torch.zeros(4, dtype=torch.float16),
        "decoder.embed": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "decoder.mask": torch.tensor([True, False]),
        "scalar": torch.tensor(1.5, dtype=torch.bfloat16),
    }


def torch_bytes(obj: object, *, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def own_torch_zip(tmp: Path) -> bytes:
    path = tmp / "own.pt"
    arrays = {k: v.numpy() for k, v in state(3).items() if v.dtype != torch.bfloat16}
    write_torch_zip(build_output(open_checkpoint(arrays), {}), path)
    return path.read_bytes()


def safetensors_bytes(tmp: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None
                      ) -> bytes:
    path = tmp / "x.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return path.read_bytes()


def nemo_bytes(weights: bytes) -> bytes:
    config = b"target: nemo.collections.asr.models.EncDecCTCModel\nsample_rate: 16000\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("./model_config.yaml", config), ("./model_weights.ckpt", weights)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pickles() -> dict[str, bytes]:
    data = {"a": [1, 2.5, "x", b"y", None, True], "b": (1, {2, 3}), "c": {"d": bytearray(b"z")}}
    out = {f"plain-p{p}.pkl": pickle.dumps(data, protocol=p) for p in range(6)}
    zipped = torch_bytes({"state_dict": state(1), "epoch": 3})
    with zipfile.ZipFile(io.BytesIO(zipped)) as z:
        out["torch-data.pkl"] = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    out["torch-legacy.pkl"] = torch_bytes(state(2), legacy=True)
    return out


def data_pkl(obj: object, protocol: int) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_protocol=protocol)
    with zipfile.ZipFile(buf) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))


def torch_pickles() -> dict[str, bytes]:
    """data.pkl as torch.save writes it, per protocol: what the C++ fast path reads (a module's
    state dict with _metadata, parameters, a shared storage, a view, a v3 dtype, plain values)."""
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    base = torch.arange(12.0)
    obj = {"model": module.state_dict(), "param": torch.nn.Parameter(torch.ones(2)),
           "view": base[2:10:2], "base": base, "u16": torch.zeros(3, dtype=torch.uint16),
           "step": 7, "lr": 0.5, "name": "run", "tags": [1, None, True], "big": 1 << 40}
    return {f"torch-p{p}.pkl": data_pkl(obj, p) for p in (2, 3, 4, 5)}


def dcp_files(tmp: Path) -> tuple[bytes, Path]:
    folder = tmp / "dcp"
    code = (
        "import sys, torch, torch.distributed.checkpoint as dcp\n"
        "g = torch.Generator().manual_seed(4)\n"
        "dcp.save({'w': torch.randn(3, 2, generator=g), 'b': torch.ones(2),\n"
        "          'step': 7}, checkpoint_id=sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True)
    return (folder / ".metadata").read_bytes(), folder


def plan_and_manifest(tmp: Path, src: bytes, tgt: bytes) -> tuple[bytes, bytes]:
    (tmp / "src.pt").write_bytes(src)
    (tmp / "tgt.safetensors").write_bytes(tgt)
    subprocess.run([sys.executable, "-m", "inspector.cli", "map", "--rules", "ddp",
                    str(tmp / "src.pt"), str(tmp / "tgt.safetensors"), "-o",
                    str(tmp / "plan.yaml")], check=True, capture_output=True)
    manifest = write_manifest(open_checkpoint(tmp / "tgt.safetensors"), optional=["scalar"])
    return (tmp / "plan.yaml").read_bytes(), manifest.encode()


def compact_plan(tmp: Path) -> bytes:
    """A plan in the compact form (templates, entries that name one), over two small files whose
    layers differ only in indices and a `model.` prefix."""
    from inspector.mapping.propose import propose

    for name, prefix in (("moe-src", ""), ("moe-tgt", "model.")):
        save_file({f"{prefix}layers.{i}.experts.{j}.{w}": torch.full((2,), float(i))
                   for i in range(3) for j in range(2) for w in ("w1", "w2")},
                  str(tmp / f"{name}.safetensors"))
    plan = propose(str(tmp / "moe-src.safetensors"), str(tmp / "moe-tgt.safetensors"))
    return plan.to_yaml(compact=True).replace(str(tmp) + "/", "").encode()


def zips() -> dict[str, bytes]:
    """Plain zips for the compiled directory walk: clean ones it reads (stored, deflated, zip64
    extras on every member) and ones it declines (a duplicate name, a non-ASCII name)."""

    def write(members: list[tuple[str, bytes, int]]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, data, method in members:
                z.writestr(name, data, compress_type=method)
        return buf.getvalue()

    stored, deflated = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
    zip64 = io.BytesIO()
    with zipfile.ZipFile(zip64, "w", allowZip64=True) as z:
        for i in range(3):
            with z.open(f"a/data/{i}", "w", force_zip64=True) as w:
                w.write(b"\1" * 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate it writes
        duplicate = write([("a/x", b"1", stored), ("a/x", b"2", stored)])
    return {
        "stored.zip": write([("a/data.pkl", b"x" * 10, stored), ("a/data/0", bytes(16), stored)]),
        "deflated.zip": write(
            [("a/data.pkl", b"x" * 100, deflated), ("a/data/0", bytes(64), deflated)]),
        "duplicate.zip": duplicate,
        "non-ascii.zip": write([("a/caf\u00e9", b"1", stored)]),
        "zip64.zip": zip64.getvalue(),
    }


def corpus(tmp: Path) -> dict[str, dict[str, bytes]]:
    tz = {"state.pt": torch_bytes(state(1)),
          "lightning.pt": torch_bytes({"state_dict": state(1), "epoch": 3, "hp": {"lr": 0.1}}),
          "own-writer.pt": own_torch_zip(tmp)}
    legacy = {"state.bin": torch_bytes(state(2), legacy=True),
              "nested.bin": torch_bytes({"model": state(2), "step": 9}, legacy=True)}
    st = {"plain.safetensors": safetensors_bytes(tmp, state(5), None),
          "meta.safetensors": safetensors_bytes(tmp, {"x": torch.ones(2)}, {"format": "pt"}),
          "empty.safetensors": safetensors_bytes(tmp, {}, None)}
    nemo = {"small.nemo": nemo_bytes(tz["state.pt"])}
    metadata, dcp_folder = dcp_files(tmp)
    shutil.rmtree(SIBLINGS / "dcp", ignore_errors=True)
    (SIBLINGS / "dcp").mkdir(parents=True)
    for f in dcp_folder.iterdir():
        if f.name != ".metadata":
            shutil.copyfile(f, SIBLINGS / "dcp" / f.name)
    shard_folder = tmp / "sharded"
    shard_folder.mkdir()
    write_sharded(build_output(open_checkpoint({k: v.numpy() for k, v in state(6).items()
                                                if v.dtype != torch.bfloat16}), {}),
                  shard_folder, max_bytes=64)
    shutil.rmtree(SIBLINGS / "hf_index", ignore_errors=True)
    (SIBLINGS / "hf_index").mkdir(parents=True)
    index = {}
    for f in shard_folder.iterdir():
        if f.name.endswith(".index.json"):
            index[f.name] = f.read_bytes()
        else:
            shutil.copyfile(f, SIBLINGS / "hf_index" / f.name)
    plan, manifest = plan_and_manifest(tmp, tz["state.pt"], st["plain.safetensors"])
    rules = {p.name: p.read_bytes()
             for p in (HERE.parents[1] / "inspector" / "mapping" / "data").glob("*.yaml")}
    files = {**tz, **legacy, **st, **nemo}
    scan = {f"{n}": bytes([SUFFIX_BYTE[Path(n).suffix]]) + b for n, b in files.items()}
    return {
        "open_torch_zip": tz, "open_pickle": legacy, "open_safetensors": st, "open_nemo": nemo,
        "open_hf_index": index, "open_dcp": {"metadata": metadata},
        "st_header": st, "unpickler": pickles(), "pickle_fast": torch_pickles(),
        "plan": {"plan.yaml": plan, "plan-compact.yaml": compact_plan(tmp)},
        "rules": rules, "manifest": {"manifest.yaml": manifest}, "scan": scan,
        "zip_directory": {**tz, **zips()},
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for harness, files in corpus(Path(tmp)).items():
            folder = CORPUS / harness
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for name, data in files.items():
                assert len(data) < 1 << 16, (harness, name, len(data))
                (folder / name).write_bytes(data)


if __name__ == "__main__":
    main()
