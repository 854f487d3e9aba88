"""Human-readable numbers for CLI and TUI output."""

from __future__ import annotations


def nbytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def count(n: int) -> str:
    """1234567 -> '1.2M'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


def shape(s: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, s)) + "]"


def dtypes(counts: dict[str, int]) -> str:
    """{'float32': 10, 'int64': 1} -> 'float32 (10), int64 (1)' (one dtype: just its name)."""
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{d} ({n})" for d, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def floor_share(done: int, total: int, digits: int = 2) -> float:
    """`100 * done / total` floored to `digits` decimals (a number for JSON): never 100.0 for a
    partial, 0.0 only for none."""
    if not total or done <= 0:
        return 0.0
    if done >= total:
        return 100.0
    scale = 10**digits
    return max((done * 100 * scale) // total, 0) / scale


def floor_percent(done: int, total: int, digits: int = 1) -> str:
    """`done/total` as a percentage floored to `digits` decimals: 99.89% prints `99.8%`, never
    `100%`; `100%` and `0%` print only when exact, whole numbers without decimals (`50%`), a
    share below the precision as `<0.1%`."""
    if not total or done <= 0:
        return "0%"
    if done >= total:
        return "100%"
    scale = 10**digits
    floored = (done * 100 * scale) // total  # integer arithmetic: no float rounding up
    if floored == 0:
        return f"<{1 / scale:.{digits}f}%"
    whole, frac = divmod(floored, scale)
    return f"{whole}%" if not frac else f"{floored / scale:.{digits}f}%"

Shape = tuple[int, ...]
