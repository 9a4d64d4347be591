"""The PNG figures of ``t2m evaluate --output``: valid files, written atomically, lazy imports."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from t2m_cli.errors import DataError, RunFailure
from t2m_cli.evaluation.plots import (
    plot_gzsl_curves,
    plot_pair_matrix,
    plot_training_curves,
)
from t2m_cli.runs import read_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Check the PNG signature and return (width, height) from the IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def assert_only(folder: Path, *names: str) -> None:
    """The folder holds exactly these files: no temporary file left behind."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def pair_matrix(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = 0.4 + 0.6 * torch.rand(n, n, generator=g)
    m.fill_diagonal_(float("nan"))
    return m


def records(n: int = 12) -> list[dict]:
    out = []
    best = -1.0
    for epoch in range(1, n + 1):
        acc = 0.9 - 0.3 * math.exp(-epoch / 4) + 0.01 * ((-1) ** epoch)
        out.append(
            {
                "epoch": epoch,
                "tasks": 100 * epoch,
                "inner_loss": 0.7 * math.exp(-epoch / 5),
                "update_norm": 1.0 + 0.1 * epoch,
                "val_acc": acc,
                "val_sem": 0.02,
                "seconds": 3.5,
                "is_best": acc > best,
            }
        )
        best = max(best, acc)
    return out


@pytest.mark.parametrize("n", [2, 7, 60])
def test_pair_matrix_writes_png(tmp_path, n):
    classes = [f"class_{i:02d}" for i in range(n)]
    target = tmp_path / "pairs.png"
    assert plot_pair_matrix(classes, pair_matrix(n), target, f"{n} classes") == target
    width, height = png_size(target)
    assert 300 <= width <= 4000 and 300 <= height <= 4000
    assert_only(tmp_path, "pairs.png")


def test_pair_matrix_grows_with_classes_and_accepts_lists(tmp_path):
    small = plot_pair_matrix(
        ["a", "b"], [[math.nan, 0.7], [0.9, math.nan]], tmp_path / "s.png", "t"
    )
    big = plot_pair_matrix([f"c{i}" for i in range(30)], pair_matrix(30), tmp_path / "b.png", "t")
    assert png_size(big)[0] > png_size(small)[0]


def test_pair_matrix_many_classes_and_long_names(tmp_path):
    classes = [f"a_very_long_class_name_number_{i}" for i in range(120)]
    width, height = png_size(
        plot_pair_matrix(classes, pair_matrix(120), tmp_path / "m.png", "t", dpi=50)
    )
    assert width <= 1000 and height <= 1000


def test_pair_matrix_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        plot_pair_matrix(["a", "b", "c"], pair_matrix(2), tmp_path / "x.png", "t")
    assert_only(tmp_path)


def test_training_curves_writes_png(tmp_path):
    target = tmp_path / "sub" / "curves.png"
    assert plot_training_curves(records(), target, "run") == target
    width, height = png_size(target)
    assert 500 <= width <= 3000 and 300 <= height <= 3000
    assert_only(target.parent, "curves.png")


def test_training_curves_single_record_and_missing_optional_keys(tmp_path):
    only = [{"epoch": 1, "val_acc": 0.6}]
    png_size(plot_training_curves(only, tmp_path / "one.png", "one epoch"))


def test_training_curves_rejects_empty_or_incomplete(tmp_path):
    with pytest.raises(DataError):
        plot_training_curves([], tmp_path / "x.png", "t")
    with pytest.raises(DataError, match="val_acc"):
        plot_training_curves([{"epoch": 1}], tmp_path / "x.png", "t")
    assert_only(tmp_path)


def test_read_metrics_round_trip_skips_blank_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = records(3)
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n  \n" + json.dumps(rows[2]))
    assert read_metrics(path) == rows


def test_read_metrics_missing_file(tmp_path):
    path = tmp_path / "nope" / "metrics.jsonl"
    with pytest.raises(DataError, match=r"metrics\.jsonl"):
        read_metrics(path)


def test_read_metrics_malformed_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(records(1)[0]) + "\n{not json\n")
    with pytest.raises(DataError, match="line 2") as info:
        read_metrics(path)
    assert str(path) in str(info.value)


def test_read_metrics_line_not_an_object(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match="line 1"):
        read_metrics(path)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_read_metrics_empty_file(tmp_path, text):
    path = tmp_path / "metrics.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match="no records"):
        read_metrics(path)


def test_read_metrics_then_plot(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records(5)))
    png_size(plot_training_curves(read_metrics(path), tmp_path / "curves.png", "run"))


def test_gzsl_curves_two_methods_with_points(tmp_path):
    s1 = [0.7, 0.68, 0.6, 0.45, 0.2, 0.0]
    u1 = [0.0, 0.1, 0.3, 0.45, 0.55, 0.6]
    s2 = torch.tensor([0.65, 0.5, 0.3, 0.0], dtype=torch.float64)
    u2 = torch.tensor([0.0, 0.2, 0.35, 0.4], dtype=torch.float64)
    target = tmp_path / "gzsl.png"
    out = plot_gzsl_curves(
        {"T2M-HN": (s1, u1), "baseline": (s2, u2)},
        target,
        "GZSL",
        points={"T2M-HN": (0.6, 0.3), "baseline": (0.5, 0.2)},
    )
    assert out == target
    width, height = png_size(target)
    assert 400 <= width <= 3000 and 400 <= height <= 3000
    assert_only(tmp_path, "gzsl.png")


def test_gzsl_curves_without_points_and_rejects_ragged(tmp_path):
    png_size(plot_gzsl_curves({"m": ([1.0, 0.0], [0.0, 1.0])}, tmp_path / "g.png", "t"))
    with pytest.raises(ValueError, match="equal"):
        plot_gzsl_curves({"m": ([1.0, 0.5, 0.0], [0.0, 1.0])}, tmp_path / "bad.png", "t")
    assert_only(tmp_path, "g.png")


def test_gzsl_legend_reports_trapezoid_area(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    labels: list[str] = []
    real_legend = Axes.legend

    def spy(self, *args, **kwargs):
        labels.extend(args[1] if len(args) > 1 else [])
        return real_legend(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "legend", spy)
    # Given out of U order: the area must still be taken over U sorted ascending, 0.5 here.
    plot_gzsl_curves({"m": ([0.5, 1.0, 0.0], [0.5, 0.0, 1.0])}, tmp_path / "g.png", "t")
    assert "m (AUSUC 0.500)" in labels


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def boom(self, *args, **kwargs):
        Path(args[0]).write_bytes(b"partial")  # a half-written temporary file
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        plot_pair_matrix(["a", "b"], pair_matrix(2), tmp_path / "pairs.png", "t")
    with pytest.raises(RuntimeError):
        plot_training_curves(records(3), tmp_path / "curves.png", "t")
    with pytest.raises(RuntimeError):
        plot_gzsl_curves({"m": ([1.0, 0.0], [0.0, 1.0])}, tmp_path / "gzsl.png", "t")
    assert_only(tmp_path)


def test_failed_save_keeps_previous_file_and_os_error_is_run_failure(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    target = tmp_path / "pairs.png"
    target.write_bytes(b"old")

    def no_room(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", no_room)
    with pytest.raises(RunFailure, match=r"pairs\.png"):
        plot_pair_matrix(["a", "b"], pair_matrix(2), target, "t")
    assert target.read_bytes() == b"old"
    assert_only(tmp_path, "pairs.png")


def test_import_does_not_load_matplotlib():
    code = "import sys, t2m_cli.evaluation.plots; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"


def test_no_pyplot_state(tmp_path):
    plot_gzsl_curves({"m": ([1.0, 0.0], [0.0, 1.0])}, tmp_path / "g.png", "t")
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


def test_training_curves_of_a_run_without_an_inner_loop_show_its_loss_only():
    from t2m_cli.evaluation.plots import curve_panels

    paper = [{"epoch": e, "val_acc": 0.5, "inner_loss": 1.0, "update_norm": 0.3} for e in (1, 2)]
    induced = [{"epoch": e, "val_acc": 0.5, "inner_loss": 1.0, "update_norm": 0.0} for e in (1, 2)]
    assert [(k, label) for k, label, _ in curve_panels(paper)] == [
        ("inner_loss", "inner loss"),
        ("update_norm", "update norm"),
    ]
    assert [(k, label) for k, label, _ in curve_panels(induced)] == [("inner_loss", "loss")]
    # Records without the columns give no panel at all.
    assert curve_panels([{"epoch": 1, "val_acc": 0.5}]) == []
