"""GPU digests (csrc/cuda/treehash.cu) equal CPU digests. Runs where a CUDA build meets a GPU;
elsewhere only the error of a build without CUDA is checked."""

from __future__ import annotations

import pytest
import torch

from inspector import hashspec_reference as ref
from inspector._native import core
from inspector.hashing import Digest, tensor_digest_cuda

CHUNK = 1 << 20
HAVE_GPU = bool(core.has_cuda) and torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(
    not HAVE_GPU,
    reason="needs inspector._core built with INSPECTOR_CUDA=ON and a CUDA GPU "
    f"(has_cuda={core.has_cuda}, torch.cuda.is_available()={torch.cuda.is_available()})",
)


def _cpu(c: torch.Tensor, dtype: str) -> Digest:
    """The CPU digest of a contiguous CPU tensor, through the Python reference."""
    raw = c.reshape(-1).view(torch.uint8).numpy()
    return Digest(ref.tensor_digest(dtype, tuple(c.shape), raw.tobytes()))


@pytest.mark.skipif(bool(core.has_cuda), reason="this build has the CUDA kernels")
def test_cpu_build_says_how_to_get_cuda() -> None:
    with pytest.raises(RuntimeError, match="INSPECTOR_CUDA=ON"):
        core.hash_device(0, 0, "float32", (0,), 0)


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize(
    "n",
    [
        0,
        1,
        3,
        4,
        9,
        16,
        17,
        128,
        129,
        240,
        241,
        1000,
        1024,
        1025,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        3 * CHUNK + 17,
    ],
)
def test_gpu_matches_cpu_at_every_length_path(n: int) -> None:
    g = torch.Generator(device="cuda").manual_seed(n)
    t = torch.randint(0, 256, (n,), dtype=torch.uint8, device="cuda", generator=g)
    assert tensor_digest_cuda(t) == _cpu(t.cpu(), "uint8")


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64])
def test_gpu_matches_cpu_for_dtypes_and_views(dtype: torch.dtype) -> None:
    base = (torch.randn(700, 900, device="cuda") * 100).to(dtype)
    for t in (base, base.t(), base[3:, 1:], base[::2, ::3], base[5, 7]):
        assert tensor_digest_cuda(t) == _cpu(
            t.cpu().contiguous(), str(dtype).removeprefix("torch.")
        )


@needs_gpu
@pytest.mark.cuda
def test_gpu_rejects_cpu_tensors() -> None:
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        tensor_digest_cuda(torch.zeros(3))
