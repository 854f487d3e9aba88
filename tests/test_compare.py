"""compare() and stats() of the C++ core against a numpy reference of the same definitions, on
random data with NaN, Inf, -0.0 and subnormals, for the dtype pairs checkpoints hold; and the
Python layer (compare_tensors, tensor_stats) on files written by torch and safetensors."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from subproc import CTRL_C_RAISES, child_env, python

from inspector import _core as core
from inspector.compare import compare_tensors, tensor_stats
from inspector.errors import ShapeError
from inspector.reader import open_checkpoint

TORCH = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
    "int64": torch.int64,
    "int32": torch.int32,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def sample(n: int, seed: int) -> torch.Tensor:
    """float64 values at many scales with NaN, +-Inf, -0.0, subnormals and repeats."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, n)
    k = n // 20
    idx = rng.choice(n, 6 * k, replace=False)
    x[idx[:k]] = np.nan
    x[idx[k : 2 * k]] = np.inf
    x[idx[2 * k : 3 * k]] = -np.inf
    x[idx[3 * k : 4 * k]] = -0.0
    x[idx[4 * k : 5 * k]] = 1e-310 * rng.standard_normal(k)
    x[idx[5 * k :]] = 0.0
    return torch.from_numpy(x)


def as_dtype(x: torch.Tensor, name: str) -> torch.Tensor:
    if TORCH[name].is_floating_point:
        return x.to(TORCH[name])
    return (
        torch.nan_to_num(x, nan=0.0, posinf=100.0, neginf=-100.0).clamp(-100, 100).to(TORCH[name])
    )


def raw(t: torch.Tensor) -> np.ndarray:
    return t.contiguous().view(torch.uint8).numpy()


def reference(
    a: np.ndarray, b: np.ndarray, rtol: float, atol: float, equal_nan: bool = False
) -> dict:
    a, b = a.ravel(), b.ravel()
    na, nb = np.isnan(a), np.isnan(b)
    valid = ~(na | nb)
    eq = a == b
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.where(eq, 0.0, np.abs(a - b))
        dv, bv = d[valid], b[valid]
        fin = valid & np.isfinite(a) & np.isfinite(b)
        num, den = math.sqrt(np.sum(dv * dv)), math.sqrt(np.sum(bv * bv))
        norm_a, norm_b = np.linalg.norm(a[fin]), np.linalg.norm(b[fin])
    rel = 0.0 if num == 0 else math.inf if den == 0 else num / den
    if norm_a == 0 and norm_b == 0:
        cos = 1.0
    elif norm_a == 0 or norm_b == 0:
        cos = 0.0
    else:
        cos = float(np.clip(np.dot(a[fin], b[fin]) / (norm_a * norm_b), -1, 1))
    close = np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)
    return {
        "numel": a.size,
        "max_abs_diff": float(dv.max()) if dv.size else 0.0,
        "mean_abs_diff": float(dv.mean()) if dv.size else 0.0,
        "rel_l2": rel,
        "cosine": cos,
        "n_diff": int(np.sum(~(eq | (na & nb)))),
        "n_not_close": int(np.sum(~close)),
        "allclose": bool(close.all()),
        "nan_a": int(na.sum()),
        "nan_b": int(nb.sum()),
        "inf_a": int(np.isinf(a).sum()),
        "inf_b": int(np.isinf(b).sum()),
    }


def assert_matches(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, v in want.items():
        if isinstance(v, float):
            assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-300, nan_ok=True), k
        else:
            assert got[k] == v, k


PAIRS = [
    ("float32", "float32"),
    ("float16", "float32"),
    ("bfloat16", "float32"),
    ("float8_e4m3fn", "float32"),
    ("float8_e5m2", "float32"),
    ("float64", "float16"),
    ("bfloat16", "float16"),
    ("int32", "float32"),
    ("int8", "uint8"),
    ("bool", "float32"),
    ("int64", "float64"),
]


@pytest.mark.parametrize(("da", "db"), PAIRS)
@pytest.mark.parametrize("equal_nan", [False, True])
def test_compare_matches_reference(da: str, db: str, equal_nan: bool) -> None:
    x = sample(5003, 1)
    y = x + 1e-3 * sample(5003, 2).nan_to_num(0.0, 0.0, 0.0)  # close, with its own NaN/Inf spots
    y[::7] = x[::7]
    ta, tb = as_dtype(x, da), as_dtype(y, db)
    got = core.compare(
        raw(ta),
        da,
        (5003,),
        (1,),
        0,
        raw(tb),
        db,
        (5003,),
        (1,),
        0,
        rtol=1e-3,
        atol=1e-5,
        equal_nan=equal_nan,
    )
    want = reference(ta.double().numpy(), tb.double().numpy(), 1e-3, 1e-5, equal_nan)
    assert_matches(got, want)


# Pairs the in-place kernel reads (with AVX2); 3 blocks of 2048 and a 5-element tail.
FAST_PAIRS = [
    ("float32", "float32"),
    ("bfloat16", "float32"),
    ("float16", "bfloat16"),
    ("float32", "float16"),
    ("float64", "float32"),
]
N_FAST = 3 * 2048 + 5


def finite_pair(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 values at many scales, b close to a, every 7th pair equal; no NaN or Inf."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, n)
    y = x + 1e-3 * rng.standard_normal(n)
    y[::7] = x[::7]
    return torch.from_numpy(x), torch.from_numpy(y)


def compare_flat(ta: torch.Tensor, tb: torch.Tensor, **kw: object) -> dict:
    n = (ta.numel(),)
    return core.compare(
        raw(ta), dtype_name(ta), n, (1,), 0, raw(tb), dtype_name(tb), n, (1,), 0, **kw
    )


def dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


@pytest.mark.parametrize(("da", "db"), FAST_PAIRS)
def test_finite_values_match_reference(da: str, db: str) -> None:
    """The all-finite kernels (SIMD in place, or portable) against numpy."""
    x, y = finite_pair(N_FAST, 5)
    ta, tb = as_dtype(x, da), as_dtype(y, db)
    got = compare_flat(ta, tb, rtol=1e-3, atol=1e-5)
    want = reference(ta.double().numpy(), tb.double().numpy(), 1e-3, 1e-5)
    assert_matches(got, want)
    assert compare_flat(ta, ta)["cosine"] == 1.0


def spread(x: np.ndarray) -> tuple[np.ndarray, tuple[int], int]:
    """x's values as a stride-2 view of a bigger buffer: the same logical tensor, read by the
    decoding path instead of in place."""
    buf = np.zeros(2 * x.size + 1, x.dtype)
    buf[1::2] = x
    return buf, (2,), 1


@pytest.mark.parametrize(("da", "db"), FAST_PAIRS)
def test_in_place_and_decoding_paths_give_identical_figures(da: str, db: str) -> None:
    """Contiguous float tensors are read in place; strided or byte-swapped ones are decoded. The
    figures must be bit-identical, also with NaN/Inf in some blocks and for any thread count."""
    x, y = finite_pair(2 * (1 << 20) + 3 * 2048 + 5, 6)
    x[5000] = math.nan  # block 2 goes through the general kernel
    y[2 * (1 << 20) + 100] = math.inf
    ta, tb = as_dtype(x, da), as_dtype(y, db)
    a, b = raw(ta).view(f"u{ta.element_size()}"), raw(tb).view(f"u{tb.element_size()}")
    n = (a.size,)
    ref = core.compare(a, da, n, (1,), 0, b, db, n, (1,), 0, rtol=1e-3, atol=1e-5)
    (sa, st, so), (sb, sst, sbo) = spread(a), spread(b)
    for threads in (1, 3):
        got = core.compare(
            sa, da, n, st, so, sb, db, n, sst, sbo, rtol=1e-3, atol=1e-5, threads=threads
        )
        assert repr(got) == repr(ref)  # rel_l2 is inf/inf = nan here
    swapped = b.byteswap()
    got = core.compare(
        a, da, n, (1,), 0, swapped, db, n, (1,), 0, rtol=1e-3, atol=1e-5, b_byteswap=True
    )
    assert repr(got) == repr(ref)
    assert (ref["nan_a"], ref["inf_b"]) == (1, 1)


_PORTABLE_SCRIPT = """
import json, sys
import numpy as np
from inspector import _core as core
cases = json.load(sys.stdin)
out = []
for da, db, a, b in cases:
    a, b = bytes.fromhex(a), bytes.fromhex(b)
    n = (len(a) // {"float64": 8, "float32": 4}.get(da, 2),)
    out.append(core.compare(a, da, n, (1,), 0, b, db, n, (1,), 0, rtol=1e-3, atol=1e-5))
print(json.dumps([core._numeric_simd(), out]))
"""


@pytest.mark.skipif(
    not core._numeric_simd(), reason="SIMD kernels off (no AVX2 or INSPECTOR_DISABLE_SIMD=1)"
)
def test_simd_and_portable_kernels_give_identical_figures() -> None:
    """The same comparisons in a process with INSPECTOR_DISABLE_SIMD=1 (the portable kernels)."""
    cases, here = [], []
    for k, (da, db) in enumerate(FAST_PAIRS):
        x, y = finite_pair(N_FAST, 10 + k)
        if k % 2:
            x[3000] = math.inf
        ta, tb = as_dtype(x, da), as_dtype(y, db)
        cases.append([da, db, raw(ta).tobytes().hex(), raw(tb).tobytes().hex()])
        here.append(compare_flat(ta, tb, rtol=1e-3, atol=1e-5))
    proc = python(
        "-c",
        _PORTABLE_SCRIPT,
        input=json.dumps(cases),
        env=child_env(INSPECTOR_DISABLE_SIMD="1"),
        check=True,
    )
    simd, portable = json.loads(proc.stdout)
    assert simd is False
    assert portable == json.loads(json.dumps(here))


def test_int64_differences_beyond_double_precision_are_counted() -> None:
    a = np.array([2**62, 2**53 + 1, 5, -(2**63)], np.int64)
    b = np.array([2**62 + 1, 2**53, 5, -(2**63)], np.int64)
    got = core.compare(a, "int64", (4,), (1,), 0, b, "int64", (4,), (1,), 0)
    assert got["n_diff"] == 2


def test_strided_big_endian_and_thread_count_do_not_change_results() -> None:
    x = sample(3 * (1 << 20) + 11, 3).float().numpy().reshape(-1, 1)
    y = (x * np.float32(1.001)).T.copy().T  # same logical values, other layout
    ref = core.compare(
        x, "float32", x.shape, (1, 1), 0, x * np.float32(1.001), "float32", x.shape, (1, 1), 0
    )
    for threads in (1, 2, 4):
        got = core.compare(
            x, "float32", x.shape, (1, 1), 0, y, "float32", y.shape, (1, 1), 0, threads=threads
        )
        assert got == ref
    big = y.astype(">f4")
    got = core.compare(
        x, "float32", x.shape, (1, 1), 0, big, "float32", y.shape, (1, 1), 0, b_byteswap=True
    )
    assert got == ref
    t = np.arange(12, dtype=np.float32).reshape(3, 4)
    tt = np.ascontiguousarray(t.T)
    got = core.compare(t, "float32", (4, 3), (1, 4), 0, tt, "float32", (4, 3), (3, 1), 0)
    assert got["n_diff"] == 0
    assert got["max_abs_diff"] == 0.0


def test_empty_scalar_and_errors() -> None:
    z = np.zeros(4, np.float32)
    empty = core.compare(z, "float32", (0, 3), (3, 1), 0, z, "float16", (0, 3), (3, 1), 0)
    assert empty["numel"] == 0
    assert empty["allclose"]
    assert empty["cosine"] == 1.0
    assert empty["rel_l2"] == 0.0
    one = core.compare(
        np.float32([2.0]), "float32", (), (), 0, np.float32([0.0]), "float32", (), (), 0
    )
    assert one["rel_l2"] == math.inf
    assert one["cosine"] == 0.0
    assert one["max_abs_diff"] == 2.0
    with pytest.raises(ValueError, match="different shapes"):
        core.compare(z, "float32", (4,), (1,), 0, z, "float32", (2, 2), (2, 1), 0)
    with pytest.raises(ValueError, match=r"tensor b: view spans bytes \[0, 16\) of a 12-byte"):
        core.compare(z, "float32", (4,), (1,), 0, z[:3], "float32", (4,), (1,), 0)
    with pytest.raises(ValueError, match="rtol"):
        core.compare(z, "float32", (4,), (1,), 0, z, "float32", (4,), (1,), 0, rtol=-1.0)
    with pytest.raises(ValueError, match="finite"):
        core.compare(z, "float32", (4,), (1,), 0, z, "float32", (4,), (1,), 0, atol=math.inf)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float8_e4m3fn", "int32", "float64"])
@pytest.mark.parametrize("bins", [1, 7, 16])
def test_stats_match_numpy(dtype: str, bins: int) -> None:
    t = as_dtype(sample(20011, 4), dtype)
    x = t.double().numpy()
    s = core.stats(raw(t), dtype, (20011,), (1,), 0, bins=bins)
    fin = x[np.isfinite(x)]
    assert (s["numel"], s["finite"]) == (x.size, fin.size)
    assert (s["zeros"], s["nan"], s["inf"]) == (
        np.sum(x == 0),
        np.isnan(x).sum(),
        np.isinf(x).sum(),
    )
    assert (s["min"], s["max"]) == (fin.min(), fin.max())
    assert s["mean"] == pytest.approx(fin.mean(), rel=1e-9, abs=1e-12)
    assert s["std"] == pytest.approx(fin.std(), rel=1e-9)
    np.testing.assert_allclose(
        s["hist_edges"], np.linspace(fin.min(), fin.max(), bins + 1), rtol=1e-12
    )
    assert s["hist"] == np.histogram(fin, bins=np.array(s["hist_edges"]))[0].tolist()


def test_stats_edge_cases() -> None:
    nan = np.full(5, np.nan, np.float32)
    s = core.stats(nan, "float32", (5,), (1,), 0, bins=4)
    assert s["min"] is None
    assert s["std"] is None
    assert s["nan"] == 5
    assert s["hist"] == [0, 0, 0, 0]
    const = np.full(6, 3.0, np.float32)
    s = core.stats(const, "float32", (2, 3), (3, 1), 0, bins=2)
    assert s["hist_edges"] == [2.5, 3.0, 3.5]
    assert s["hist"] == [0, 6]
    assert s["std"] == 0.0
    assert core.stats(const, "float32", (0,), (1,), 0)["numel"] == 0
    with pytest.raises(ValueError, match="bins"):
        core.stats(const, "float32", (6,), (1,), 0, bins=0)


def test_python_layer_on_real_files(tmp_path: Path) -> None:
    w = torch.randn(30, 20)
    torch.save({"w": w, "wt": w.t(), "b": torch.zeros(20)}, tmp_path / "a.pt")
    changed = w.clone()
    changed[3, 4] += 1.0
    save_file(
        {"w": changed.to(torch.bfloat16), "wt": w.t().contiguous(), "b": torch.ones(20)},
        tmp_path / "b.safetensors",
    )
    with open_checkpoint(tmp_path / "a.pt") as a, open_checkpoint(tmp_path / "b.safetensors") as b:
        same = compare_tensors(a, "wt", b, "wt")
        assert same.equal
        assert same.allclose
        assert same.cosine == pytest.approx(1.0)
        c = compare_tensors(a, "w", b, "w", rtol=1e-2, atol=1e-2)
        want = reference(
            w.double().numpy(), changed.to(torch.bfloat16).double().numpy(), 1e-2, 1e-2
        )
        assert_matches({k: v for k, v in vars(c).items() if k in want}, want)
        assert c.to_json()["n_diff"] == c.n_diff
        zero = compare_tensors(a, "b", b, "b")
        assert zero.cosine == 0.0
        assert zero.rel_l2 == 1.0
        with pytest.raises(ShapeError, match="'w'"):
            compare_tensors(a, "wt", b, "w")
        st = tensor_stats(b, "w", bins=5)
        x = changed.to(torch.bfloat16).double().numpy()
        assert st.numel == 600
        assert st.max == x.max()
        assert sum(st.hist) == 600


def test_diff_compares_changed_tensors_in_parallel_with_the_same_figures(tmp_path: Path) -> None:
    """inspector.diff runs small changed tensors side by side and splits big ones over threads;
    each row's figures equal a direct one-thread comparison."""
    from inspector.diffing import CHANGED, IDENTICAL, diff

    rng = np.random.default_rng(8)
    a = {
        f"small.{i}": torch.from_numpy(rng.standard_normal(1000 + i).astype(np.float32))
        for i in range(6)
    }
    a["big"] = torch.from_numpy(rng.standard_normal(2 * (1 << 20) + 3).astype(np.float32))
    b = {k: (v + 1e-3 if k == "big" or int(k[-1]) % 2 else v.clone()) for k, v in a.items()}
    save_file(a, tmp_path / "a.safetensors")
    save_file(b, tmp_path / "b.safetensors")
    r = diff(tmp_path / "a.safetensors", tmp_path / "b.safetensors", threads=2)
    status = {row.name: row.status for row in r.rows}
    assert status == {k: CHANGED if k == "big" or int(k[-1]) % 2 else IDENTICAL for k in a}
    with (
        open_checkpoint(tmp_path / "a.safetensors") as ca,
        open_checkpoint(tmp_path / "b.safetensors") as cb,
    ):
        for row in r.rows:
            if row.status == CHANGED:
                assert row.comparison == compare_tensors(ca, row.name, cb, row.name, threads=1)
            else:
                assert row.comparison is None


# ---- progress, cancel, Ctrl-C: the same wait loop as hash_tensors ------------------------------

HUGE_ROWS, ROW = (
    16384,
    1 << 20,
)  # a stride-0 view: 16 G elements from one 4 MiB row, minutes of work


class Cancelled(Exception):
    pass


def _huge_compare(**kwargs: object) -> object:
    row = np.linspace(-1, 1, ROW, dtype=np.float32)
    return core.compare(
        row,
        "float32",
        (HUGE_ROWS, ROW),
        (0, 1),
        0,
        row,
        "float32",
        (HUGE_ROWS, ROW),
        (0, 1),
        0,
        **kwargs,
    )


def test_compare_and_stats_progress_end_at_total() -> None:
    x = np.arange(3 << 20, dtype=np.float32)
    calls: list[tuple[int, int]] = []
    core.compare(
        x,
        "float32",
        (x.size,),
        (1,),
        0,
        x,
        "float32",
        (x.size,),
        (1,),
        0,
        threads=2,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (x.size, x.size)
    assert all(t == x.size and 0 <= d <= t for d, t in calls)
    calls.clear()
    core.stats(
        x, "float32", (x.size,), (1,), 0, threads=2, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (2 * x.size, 2 * x.size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    with pytest.raises(TypeError, match="progress"):
        core.stats(x, "float32", (x.size,), (1,), 0, progress=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("threads", [1, 2])
def test_raising_progress_cancels_a_long_compare(threads: int) -> None:
    seen: list[tuple[int, int]] = []

    def cancel(done: int, total: int) -> None:
        seen.append((done, total))
        raise Cancelled("stop")

    with pytest.raises(Cancelled, match="stop"):
        _huge_compare(threads=threads, progress=cancel)
    assert len(seen) == 1  # no report after the cancel: the workers stopped
    assert seen[0][0] < seen[0][1] == HUGE_ROWS * ROW


def test_raising_progress_cancels_long_stats() -> None:
    row = np.ones(ROW, dtype=np.float16)
    seen: list[int] = []

    def cancel(done: int, total: int) -> None:
        seen.append(done)
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        core.stats(row, "float16", (HUGE_ROWS, ROW), (0, 1), 0, threads=2, progress=cancel)
    assert len(seen) == 1
    assert seen[0] < 2 * HUGE_ROWS * ROW


def test_ctrl_c_stops_a_long_compare(ctrl_c_raises: None) -> None:
    seen: list[int] = []
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            _huge_compare(threads=2, progress=lambda d, t: seen.append(d))
    finally:
        timer.cancel()
    assert max(seen, default=0) < HUGE_ROWS * ROW  # interrupted before the end


def test_ctrl_c_stops_a_long_compare_without_a_callback() -> None:
    """Ctrl-C alone, in a fresh interpreter: KeyboardInterrupt, exit code 1, not a crash."""
    code = CTRL_C_RAISES + (
        "import os, signal, threading, numpy as np\n"
        "from inspector import _core as core\n"
        "row = np.ones(1 << 20, np.float32)\n"
        "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "try:\n"
        "    core.compare(row, 'float32', (16384, 1 << 20), (0, 1), 0,\n"
        "                 row, 'float32', (16384, 1 << 20), (0, 1), 0, threads=2)\n"
        "except KeyboardInterrupt:\n"
        "    raise SystemExit(7)\n"
    )
    proc = python("-c", code, timeout=60)
    assert proc.returncode == 7, proc.stderr


OVERFLOW_VIEWS = [
    ((3, 4), (1 << 62, 1), 0, "strides overflow"),
    ((2, 2), (1, 1), (1 << 63) - 1, "overflow"),
    ((1 << 40, 1 << 40), (1, 1), 0, "element count overflows"),
    ((1 << 31, 1 << 31), (1, 1), 0, "byte count overflows"),
    ((2,), (-(1 << 63),), 0, "before the buffer start"),
    ((3,), (-(1 << 63),), 0, "strides overflow"),
    ((2,), (1,), 1 << 62, "view spans bytes"),
]


@pytest.mark.parametrize(("shape", "strides", "offset", "message"), OVERFLOW_VIEWS)
def test_overflowing_views_are_rejected(
    shape: tuple[int, ...], strides: tuple[int, ...], offset: int, message: str
) -> None:
    z = np.zeros(16, np.float32)
    ok = ((4,), (1,), 0)
    with pytest.raises(ValueError, match=f"tensor a: .*{message}"):
        core.compare(z, "float32", shape, strides, offset, z, "float32", *ok)
    with pytest.raises(ValueError, match=f"tensor b: .*{message}"):
        core.compare(z, "float32", *ok, z, "float32", shape, strides, offset)
    with pytest.raises(ValueError, match=f"tensor: .*{message}"):
        core.stats(z, "float32", shape, strides, offset)
