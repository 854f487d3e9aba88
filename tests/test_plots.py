"""`ckpt diff --plot` (issue 15 part 4): per-layer change pictures, and the data behind them.

The files are checked as images (PNG signature and decoded size, SVG parsed as XML) with one bar
per layer, found by the ids the bars carry (`relchange-K`, `cosine-K`); the command runs in a
real child process, also with matplotlib made unimportable.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import pytest
from hypothesis import given
from hypothesis import strategies as st
from subproc import ckpt, python

from inspector.demo import DemoFiles, build_demo
from inspector.diffing import CHANGED, diff
from inspector.plotting import (
    DPI,
    ChangeRow,
    binned,
    change_rows,
    diff_changes,
    figure_size,
    module_titles,
    split_layer,
)

SVG = "{http://www.w3.org/2000/svg}"

# `ckpt ARGS` in a child where `import matplotlib` fails, as where the extra is not installed;
# then whether matplotlib got imported anyway.
_WITHOUT_MATPLOTLIB = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib' (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
from inspector.cli import main
code = main(sys.argv[1:])
print("matplotlib imported:", "matplotlib" in sys.modules)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return build_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def changed(demo: DemoFiles) -> list[str]:
    """The names of the demo pair's changed tensors (B's names)."""
    return diff(demo.source, demo.target).names(CHANGED)


def _layers(names: list[str]) -> set[str]:
    """The layers the demo's changed names fall into, written out by hand: the part before a
    numbered segment plus the number, or the whole name when it has no numbered segment."""
    out = set()
    for n in names:
        parts = n.split(".")
        numbered = [i for i, p in enumerate(parts) if i > 0 and p.isdigit()]
        out.add(".".join(parts[: numbered[0] + 1]) if numbered else n)
    return out


def _bars(svg: Path, kind: str) -> list[str]:
    root = ET.parse(svg).getroot()
    return [el.get("id", "") for el in root.iter(f"{SVG}g") if el.get("id", "").startswith(kind)]


def test_svg_has_one_bar_per_layer_on_each_axis(
    demo: DemoFiles, changed: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "change.svg"
    r = ckpt("diff", demo.source, demo.target, "--plot", out)
    assert r.returncode == 1, r.stderr  # the files differ: the plot does not change the verdict
    layers = _layers(changed)
    assert "encoder.layers.3" in layers
    assert "encoder.pre_encode.out.weight" in layers
    assert len(_bars(out, "relchange-")) == len(layers)
    assert len(_bars(out, "cosine-")) == len(layers)
    assert "changed values" in r.stdout  # the text report is still printed
    assert f"plot: {out} ({len(layers)} layers)" in r.stderr


def test_png_is_an_image_of_the_figure_size(demo: DemoFiles, tmp_path: Path) -> None:
    out = tmp_path / "change.png"
    r = ckpt("diff", demo.source, demo.target, "--plot", out)
    assert r.returncode == 1, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(out).shape[:2]
    inches = figure_size(change_rows(diff_changes(diff(demo.source, demo.target))))
    assert (width, height) == (round(inches[0] * DPI), round(inches[1] * DPI))
    assert width > 600


def test_html_embeds_the_svg_and_references_no_file(demo: DemoFiles, tmp_path: Path) -> None:
    out = tmp_path / "change.html"
    r = ckpt("diff", demo.source, demo.target, "--plot", out)
    assert r.returncode == 1, r.stderr
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    svg = text[text.index("<svg"): text.index("</svg>") + len("</svg>")]
    root = ET.fromstring(svg)
    ids = [el.get("id", "") for el in root.iter(f"{SVG}g")]
    assert sum(i.startswith("relchange-") for i in ids) > 10
    assert "<?xml" not in text
    assert " src=" not in text
    assert "encoder.layers.3" in text  # the table under the picture


def test_plot_of_equal_files_has_no_bars(demo: DemoFiles, tmp_path: Path) -> None:
    out = tmp_path / "same.svg"
    r = ckpt("diff", demo.target, demo.target, "--plot", out)
    assert r.returncode == 0, r.stderr
    assert _bars(out, "relchange-") == []
    assert "no changed tensors" in out.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--plot", "x.jpg"), "a plot is written as .svg, .png, .html, not .jpg"),
        (("--plot", "x.svg", "--no-values"), "cannot go with --no-values"),
        (("--plot", "nowhere/x.svg"), "x.svg: the destination folder nowhere does not exist"),
    ],
)
def test_bad_plot_requests_exit_2_before_reading(
    demo: DemoFiles, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    r = ckpt("diff", demo.source, demo.target, *args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""  # refused before the diff ran
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_plot_fails_naming_the_extra(demo: DemoFiles, tmp_path: Path) -> None:
    out = tmp_path / "change.svg"
    r = python("-c", _WITHOUT_MATPLOTLIB, "diff", demo.source, demo.target, "--plot", out)
    assert r.returncode == 2, r.stderr
    assert "plots need matplotlib" in r.stderr
    assert "pip install 'ckpt-inspector[plot]'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_diff_without_plot_never_imports_matplotlib(demo: DemoFiles) -> None:
    r = python("-c", _WITHOUT_MATPLOTLIB, "diff", demo.source, demo.target)
    assert r.returncode == 1, r.stderr
    assert "matplotlib imported: False" in r.stdout


def test_the_tui_plots_do_not_import_matplotlib() -> None:
    r = python("-c", "import sys, inspector.tui.app, inspector.tui.widgets.plots; "
                     "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', "
                     "'textual_plotext'))))")
    assert r.returncode == 0, r.stderr
    assert "matplotlib" not in r.stdout
    assert "textual_plotext" in r.stdout  # the check sees what the TUI imports


# -- the data: rows of module / layer / relative change / cosine -------------------------------


def test_split_layer_cuts_at_the_first_numbered_segment() -> None:
    assert split_layer("encoder.layers.3.ffn.weight") == ("encoder.layers", "3")
    assert split_layer("joint.joint_net.2.bias") == ("joint.joint_net", "2")
    assert split_layer("decoder.embed.weight") == ("decoder", "embed.weight")
    assert split_layer("scale") == ("", "scale")
    assert split_layer("0.weight") == ("0", "weight")  # a leading number is a module name


def test_a_layer_bar_is_its_most_changed_tensor() -> None:
    rows = change_rows([
        ("enc.layers.0.a", 0.1, 0.99),
        ("enc.layers.0.b", 0.5, 0.95),
        ("enc.layers.0.c", 0.2, 0.90),
        ("enc.layers.1.a", 0.3, 0.97),
        ("head.weight", math.inf, 0.0),
        ("enc.layers.2.a", math.nan, 0.5),
        ("enc.layers.2.b", 0.7, 0.6),
    ])
    assert rows[0] == ChangeRow("enc.layers", "0", 0.5, 0.90, 3, "enc.layers.0.b")
    assert rows[1] == ChangeRow("enc.layers", "1", 0.3, 0.97, 1, "enc.layers.1.a")
    assert rows[2] == ChangeRow("head", "weight", math.inf, 0.0, 1, "head.weight")
    assert math.isnan(rows[3].relchange)
    assert rows[3].worst == "enc.layers.2.a"
    assert module_titles(rows) == {"enc.layers": "enc.layers.{0..2}", "head": "head"}


@given(st.lists(st.tuples(st.floats(0, 10) | st.just(math.inf) | st.just(math.nan),
                          st.floats(-1, 1) | st.just(math.nan)), min_size=1, max_size=40),
       st.integers(1, 12))
def test_binned_rows_keep_each_runs_worst(values: list[tuple[float, float]], most: int) -> None:
    """Many layers drawn in at most `most` bars: each bar is a run of neighbours with its largest
    change (a NaN counts as the largest, as in change_rows), lowest cosine and every tensor."""
    rows = [ChangeRow("enc" if i < 25 else "dec", str(i), rel, cos, 2, f"x.{i}.w")
            for i, (rel, cos) in enumerate(values)]
    bars = binned(rows, most)
    assert len(bars) <= most
    assert len(bars) == (len(rows) if len(rows) <= most else -(-len(rows) // -(-len(rows) // most)))
    assert sum(b.tensors for b in bars) == sum(r.tensors for r in rows)
    size = -(-len(rows) // most)
    for k, bar in enumerate(bars):
        run = rows[k * size:(k + 1) * size] if len(bars) < len(rows) else [rows[k]]
        end = run[-1].layer if run[-1].module == run[0].module else run[-1].label
        assert bar.layer == (run[0].layer if len(run) == 1 else f"{run[0].layer}-{end}")
        assert bar.module == run[0].module
        if any(math.isnan(r.cosine) for r in run):
            assert math.isnan(bar.cosine)
        else:
            assert bar.cosine == min(r.cosine for r in run)
        worst = next(r for r in run if r.worst == bar.worst)
        assert all(not (r.relchange > worst.relchange) for r in run if not math.isnan(r.relchange))
        assert math.isnan(worst.relchange) or not any(math.isnan(r.relchange) for r in run)


def test_demo_diff_rows_fold_the_encoder_layers(demo: DemoFiles) -> None:
    """What the demo's diff draws: its encoder layers folded as the tree folds them."""
    rows = change_rows(diff_changes(diff(demo.source, demo.target)))
    titles = module_titles(rows)
    assert titles["encoder.layers"] == "encoder.layers.{0..3}"
    layers = [r for r in rows if r.module == "encoder.layers"]
    assert [r.layer for r in layers] == ["0", "1", "2", "3"]
    assert all(r.tensors > 10 and r.relchange > 0 and -1 <= r.cosine <= 1 for r in layers)


# -- the writing commands plot what their output changed -------------------------------------------
def test_apply_plots_the_output_against_the_target(demo: DemoFiles, tmp_path: Path) -> None:
    """`ckpt apply --plot` draws what `ckpt diff TARGET OUT --plot` draws: the same bars."""
    out, picture = tmp_path / "out.nemo", tmp_path / "migration.svg"
    r = ckpt("apply", "--source", demo.source, "--target", demo.target, "--accept-proposed",
             "-o", out, "--plot", picture)
    assert r.returncode == 0, r.stderr
    again = ckpt("diff", demo.target, out, "--plot", tmp_path / "diff.svg")
    assert again.returncode == 1, again.stderr
    bars = _bars(picture, "relchange-")
    assert bars, "the migration changed the encoder: bars expected"
    assert bars == _bars(tmp_path / "diff.svg", "relchange-")
    assert f"plot: {picture} ({len(bars)} layers)" in r.stderr


def test_average_plots_the_mean_against_the_first_input(demo: DemoFiles, tmp_path: Path) -> None:
    moved = tmp_path / "moved.nemo"
    assert ckpt("apply", "--source", demo.source, "--target", demo.target,
                "--accept-proposed", "-o", moved).returncode == 0
    out, picture = tmp_path / "avg.nemo", tmp_path / "avg.png"
    r = ckpt("average", demo.target, moved, "-o", out, "--plot", picture)
    assert r.returncode == 0, r.stderr
    with picture.open("rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    again = ckpt("diff", demo.target, out, "--json")
    assert again.returncode == 1
    assert "plot: " in r.stderr


def test_a_bad_plot_path_fails_before_anything_is_written(demo: DemoFiles, tmp_path: Path) -> None:
    for cmd in (["apply", "--source", str(demo.source), "--target", str(demo.target),
                 "--accept-proposed"], ["average", str(demo.target), str(demo.target)]):
        out = tmp_path / "never.nemo"
        r = ckpt(*cmd, "-o", out, "--plot", tmp_path / "picture.gif")
        assert r.returncode == 2, r.stderr
        assert ".gif" in r.stderr
        assert "Traceback" not in r.stderr
        assert not out.exists()


def test_a_plot_naming_the_output_or_an_input_is_refused_first(
    demo: DemoFiles, tmp_path: Path
) -> None:
    out = tmp_path / "av.svg"
    r = ckpt("average", demo.target, demo.target, "-o", out, "--plot", out)
    assert r.returncode == 2, r.stderr
    assert "path of its own" in r.stderr
    assert not out.exists()
    r = ckpt("apply", "--source", demo.source, "--target", demo.target, "--accept-proposed",
             "-o", tmp_path / "o.nemo", "--plot", demo.source)
    assert r.returncode == 2, r.stderr
    assert not (tmp_path / "o.nemo").exists()
    r = ckpt("average", demo.target, demo.target, "-o", tmp_path / "x.nemo", "--plot", tmp_path)
    assert r.returncode == 2, r.stderr
    assert "folder" in r.stderr
