"""PNG figures written by ``t2m evaluate --output DIR``.

Three figures: the ordered-pair accuracy matrix of a set of classes, a run's training curves
(read from its ``metrics.jsonl``), and the GZSL seen-unseen curves with their areas.

matplotlib (and numpy/torch) are imported inside the functions, so importing this module, and so
``t2m --help``, stays fast. Figures are built on `matplotlib.figure.Figure` with the Agg canvas
directly: no pyplot, no global state, safe from any thread, and nothing to close by hand beyond
dropping the figure. Every file is written atomically with `t2m_cli.atomic.atomic_path`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.atomic import atomic_path
from t2m_cli.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_gzsl_curves", "plot_pair_matrix", "plot_training_curves"]

DPI = 150
"""Default resolution of the PNG files (dots per inch)."""

_MAX_LABEL = 28
"""Class names longer than this are shortened with an ellipsis on the matrix's axes."""


def _array(values: Any, name: str) -> np.ndarray:
    """A float64 numpy array from a list, a numpy array or a torch tensor (any device)."""
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor: leave the graph and the device first
        values = values.detach().to("cpu").double().numpy()
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numbers (a list, an array or a tensor): {exc}") from exc


def _point_text(points: Mapping[str, tuple[float, float]] | None, name: str) -> str:
    """Legend text of a method's operating point, '' when it has none."""
    if not points or name not in points:
        return ""
    s_point, u_point = points[name]
    return f"; point S {float(s_point):.3f}, U {float(u_point):.3f}"


def _new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure on an Agg canvas, with constrained (tight) layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically, then free the figure's artists."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            # A tight bounding box keeps axis labels that the layout pushed past the edge.
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    finally:
        fig.clear()
    return path


def _title(fig: Figure, title: str, width_in: float, fontsize: float = 12) -> None:
    """Set the figure's title, wrapped to its width."""
    chars = max(30, int(width_in * 120 / fontsize))
    fig.suptitle("\n".join(textwrap.wrap(title, chars)) or title, fontsize=fontsize)


def _short(name: str) -> str:
    """A class name cut to `_MAX_LABEL` characters."""
    return name if len(name) <= _MAX_LABEL else name[: _MAX_LABEL - 1] + "\u2026"


# --------------------------------------------------------------------------------------------
# Pair matrix
# --------------------------------------------------------------------------------------------


def plot_pair_matrix(
    classes: Sequence[str], matrix: Any, path: Path, title: str, *, dpi: int = DPI
) -> Path:
    """Draw the ordered-pair accuracy matrix of a set of classes as an annotated heatmap.

    Cell (i, j) is the accuracy of the binary classifier induced for the ordered pair
    (classes[i], classes[j]), on the rows of those two classes: rows are the first class of the
    pair, columns the second. The colour scale is fixed to 0.5 (chance) .. 1.0 (perfect); lower
    values take the bottom colour. NaN cells (the diagonal, or any undefined pair) are grey.
    Cells are annotated with their accuracy in % up to 20 classes; class names are shown while
    they fit (up to about 100 classes), and the figure grows with the number of classes up to a
    cap.

    Args:
        classes: the n class names, in the matrix's order.
        matrix: (n, n) accuracies in [0, 1] (nested lists, numpy array or torch tensor).
        path: the PNG file to write; its folder is created.
        title: the figure's title.
        dpi: resolution of the PNG.

    Returns:
        ``path``.

    Raises:
        ValueError: the matrix is not (n, n) for n = len(classes), or there are no classes.
        RunFailure: the file could not be written.
    """
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    names = [str(c) for c in classes]
    n = len(names)
    acc = _array(matrix, "matrix")
    if n == 0:
        raise ValueError("plot_pair_matrix needs at least one class")
    if acc.shape != (n, n):
        raise ValueError(f"matrix has shape {acc.shape}; expected ({n}, {n}) for {n} classes")

    # Size: about 0.45 in per class plus room for labels and the colourbar, capped at 13 in of
    # cells. Tick labels are sized to the cell and dropped when they could not be read.
    cells = min(max(0.45 * n, 2.2), 13.0)
    cell_pt = cells * 72 / n
    font = min(10.0, 0.75 * cell_pt)
    named = font >= 4.0
    longest = max(len(_short(c)) for c in names) if named else 4
    label_room = min(0.075 * longest * font / 10, 2.0) + 0.6
    width = min(cells + label_room + 1.8, 18.0)
    height = min(cells + label_room + 0.9, 17.0)
    big = width > 10
    fig = _new_figure(width, height)
    ax = fig.add_subplot()

    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    norm = Normalize(vmin=0.5, vmax=1.0, clip=False)
    image = ax.imshow(acc, cmap=cmap, norm=norm, interpolation="nearest", aspect="equal")
    below = bool(np.any(acc[np.isfinite(acc)] < 0.5))
    bar = fig.colorbar(
        image,
        ax=ax,
        extend="min" if below else "neither",
        shrink=0.8,
        fraction=0.05 if big else 0.08,
        pad=0.02,
    )
    bar.set_label("pair accuracy", fontsize=12 if big else 10)
    bar.set_ticks([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    bar.set_ticklabels(["50% (chance)", "60%", "70%", "80%", "90%", "100%"])
    bar.ax.tick_params(labelsize=11 if big else 9)

    label_size = 12 if big else 10
    if named:
        short = [_short(c) for c in names]
        # 45 degrees reads best but needs room between ticks; upright (90) packs tighter.
        if n <= 20:
            ax.set_xticks(range(n), short, rotation=45, ha="right", rotation_mode="anchor")
        else:
            ax.set_xticks(range(n), short, rotation=90)
        ax.set_yticks(range(n), short)
        ax.tick_params(axis="both", labelsize=font, length=2)
        ax.set_xlabel("second class of the pair", fontsize=label_size)
        ax.set_ylabel("first class of the pair", fontsize=label_size)
    else:
        # Too many classes for names: number them instead, so a cell can still be looked up.
        from matplotlib.ticker import MaxNLocator

        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(nbins=10, integer=True))
        ax.tick_params(axis="both", labelsize=9)
        ax.set_xlabel(
            f"second class of the pair (index of {n} classes; names omitted)", fontsize=label_size
        )
        ax.set_ylabel(f"first class of the pair (index of {n} classes)", fontsize=label_size)
    # Thin white lines between cells keep neighbours apart while there are few of them.
    if n <= 40:
        ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=1.0 if n <= 20 else 0.5)
        ax.tick_params(which="minor", length=0)

    if n <= 20:
        _annotate_cells(ax, acc, cmap, norm, cell_pt)

    finite = acc[np.isfinite(acc) & ~np.eye(n, dtype=bool)]
    subtitle = (
        f"mean {100 * finite.mean():.1f}% over {finite.size} ordered pairs" if finite.size else ""
    )
    ax.set_title(subtitle, fontsize=11 if big else 9, color="#444444")
    _title(fig, title, width, fontsize=15 if big else 12)
    return _save(fig, path, dpi)


def _annotate_cells(ax: Axes, acc: np.ndarray, cmap: Any, norm: Any, cell_pt: float) -> None:
    """Write each finite cell's accuracy (in %) in it, dark or light against its colour."""
    import numpy as np

    n = acc.shape[0]
    decimals = 1 if n <= 10 else 0
    size = max(5.0, min(10.0, cell_pt * (0.3 if decimals else 0.38)))
    for i in range(n):
        for j in range(n):
            value = acc[i, j]
            if not np.isfinite(value):
                continue
            r, g, b, _ = cmap(norm(value))
            light = 0.299 * r + 0.587 * g + 0.114 * b > 0.5
            ax.text(
                j,
                i,
                f"{100 * value:.{decimals}f}",
                ha="center",
                va="center",
                fontsize=size,
                color="black" if light else "white",
            )


# --------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------


def _column(records: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """The float values of ``key`` across records; missing or null values become NaN."""
    out = []
    for record in records:
        value = record.get(key)
        try:
            out.append(math.nan if value is None else float(value))
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def _best_index(records: Sequence[Mapping[str, Any]], val_acc: list[float]) -> int | None:
    """Index of the best epoch: the last record flagged ``is_best``, else the highest val_acc."""
    flagged = [i for i, r in enumerate(records) if r.get("is_best") is True]
    if flagged:
        return flagged[-1]
    finite = [(v, i) for i, v in enumerate(val_acc) if math.isfinite(v)]
    return max(finite)[1] if finite else None


def curve_panels(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, Any]]:
    """The panels below validation accuracy: (metrics key, label, values) of each loss curve
    the records have.

    A run with no inner loop (``train.objective: induced``) logs an update norm of 0 every
    epoch: it gets no update-norm panel, and its loss is the induced classifier's.
    """
    import numpy as np

    loss = np.array(_column(records, "inner_loss"))
    norm = np.array(_column(records, "update_norm"))
    no_inner_loop = bool(np.isfinite(norm).any()) and bool(np.all(np.nan_to_num(norm) == 0))
    panels = [
        ("inner_loss", "loss" if no_inner_loop else "inner loss", loss),
        ("update_norm", "update norm", norm),
    ]
    return [
        (key, label, v)
        for key, label, v in panels
        if np.isfinite(v).any() and not (key == "update_norm" and no_inner_loop)
    ]


def plot_training_curves(
    records: Sequence[Mapping[str, Any]], path: Path, title: str, *, dpi: int = DPI
) -> Path:
    """Draw a run's training curves from its ``metrics.jsonl`` records.

    Panels share the epoch axis: validation pair accuracy (%) with a shaded +-SEM band and the
    best epoch marked; then the inner loss and the update norm, each when the records have it
    (log scale when it spans more than a factor of 30). Records are sorted by epoch.

    Args:
        records: dicts with keys epoch, val_acc (in [0, 1]) and optionally val_sem, inner_loss,
            update_norm, is_best (as `t2m_cli.training.loggers.read_metrics` returns them).
        path, title, dpi: as for `plot_pair_matrix`.

    Returns:
        ``path``.

    Raises:
        DataError: no records, or a record without an epoch or val_acc.
        RunFailure: the file could not be written.
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    if not records:
        raise DataError("No training records to plot; the run's metrics.jsonl is empty.")
    for number, record in enumerate(records, start=1):
        missing = [k for k in ("epoch", "val_acc") if record.get(k) is None]
        if missing:
            raise DataError(f"Training record {number} lacks {', '.join(missing)}: {record}")
    records = sorted(records, key=lambda r: float(r["epoch"]))

    epoch = np.array(_column(records, "epoch"))
    acc = 100 * np.array(_column(records, "val_acc"))
    sem = 100 * np.nan_to_num(np.array(_column(records, "val_sem")), nan=0.0)
    extra = curve_panels(records)

    heights = [2.0] + [1.0] * len(extra)
    fig = _new_figure(7.5, 3.2 + 1.7 * len(extra))
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    axes = list(np.atleast_1d(axes))
    marker = "o" if len(records) <= 40 else None

    ax = axes[0]
    ax.fill_between(epoch, acc - sem, acc + sem, color="C0", alpha=0.2, linewidth=0, label="± SEM")
    ax.plot(epoch, acc, color="C0", marker=marker, markersize=3, label="validation")
    best = _best_index(records, list(acc))
    if best is not None:
        ax.plot(
            epoch[best],
            acc[best],
            marker="*",
            markersize=14,
            color="C3",
            markeredgecolor="black",
            linestyle="none",
            zorder=5,
            label=f"best: {acc[best]:.1f}% at epoch {int(epoch[best])}",
        )
    ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylabel("validation pair accuracy (%)")
    low = np.nanmin(acc - sem)
    ax.set_ylim(min(50.0, math.floor(low / 5) * 5) - 1, 101)
    ax.legend(loc="lower right", fontsize=8)

    for ax, (_, label, values), colour in zip(axes[1:], extra, ("C1", "C2")):
        ax.plot(epoch, values, color=colour, marker=marker, markersize=3)
        positive = values[np.isfinite(values)]
        if positive.size and positive.min() > 0 and positive.max() / positive.min() > 30:
            ax.set_yscale("log")
        ax.set_ylabel(label)

    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(records) == 1:
        axes[-1].set_xlim(epoch[0] - 1, epoch[0] + 1)
    _title(fig, title, 7.5)
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------------------------
# GZSL seen-unseen curves
# --------------------------------------------------------------------------------------------


def _auc(s: np.ndarray, u: np.ndarray) -> float:
    """Area under the seen-unseen curve (trapezoids of S over U sorted ascending)."""
    import torch

    from t2m_cli.scoring.metrics import ausuc

    return ausuc(torch.from_numpy(s), torch.from_numpy(u))


def plot_gzsl_curves(
    curves: Mapping[str, tuple[Any, Any]],
    path: Path,
    title: str,
    points: Mapping[str, tuple[float, float]] | None = None,
    *,
    dpi: int = DPI,
) -> Path:
    """Draw GZSL seen-unseen curves: seen accuracy S against unseen accuracy U per method.

    Each curve is drawn as given (in order of increasing calibration constant), no point added;
    its legend entry gives its area (AUSUC, trapezoids over U sorted ascending).

    Args:
        curves: method name -> (S, U), two equal-length sequences (lists, arrays or tensors)
            of accuracies in [0, 1].
        path: the PNG file to write; its folder is created.
        title: the figure's title.
        points: optional method name -> (S, U) operating point (e.g. the calibrated one), marked
            with a star in the method's colour.
        dpi: resolution of the PNG.

    Returns:
        ``path``.

    Raises:
        ValueError: no curves, or a curve's S and U differ in length or are empty.
        RunFailure: the file could not be written.
    """
    from matplotlib.lines import Line2D

    if not curves:
        raise ValueError("plot_gzsl_curves needs at least one curve")
    fig = _new_figure(6.4, 6.4)
    ax = fig.add_subplot()
    colours: dict[str, str] = {}
    for index, (name, (s_values, u_values)) in enumerate(curves.items()):
        s = _array(s_values, f"S of {name!r}").reshape(-1)
        u = _array(u_values, f"U of {name!r}").reshape(-1)
        if s.shape != u.shape or s.size == 0:
            raise ValueError(
                f"curve {name!r}: S has {s.size} values and U {u.size}; they must be equal and > 0"
            )
        colour = f"C{index % 10}"
        colours[name] = colour
        ax.plot(
            u,
            s,
            color=colour,
            linewidth=1.8,
            marker="." if s.size <= 30 else None,
            clip_on=False,
            label=f"{name} (AUSUC {_auc(s, u):.3f}{_point_text(points, name)})",
        )

    if points:
        for index, (name, (s_point, u_point)) in enumerate(points.items(), start=len(curves)):
            colour = colours.get(name, f"C{index % 10}")
            ax.plot(
                float(u_point),
                float(s_point),
                marker="*",
                markersize=15,
                color=colour,
                markeredgecolor="black",
                linestyle="none",
                zorder=5,
                clip_on=False,
                label=None if name in colours else f"{name}{_point_text(points, name)}",
            )
    handles, labels = ax.get_legend_handles_labels()
    if points:
        handles.append(
            Line2D(
                [],
                [],
                marker="*",
                markersize=12,
                color="grey",
                markeredgecolor="black",
                linestyle="none",
            )
        )
        labels.append("calibrated operating point")
    # Below the axes: inside, it would hide the top right, where a good curve runs.
    ax.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=9, frameon=False
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("unseen accuracy (U)")
    ax.set_ylabel("seen accuracy (S)")
    ax.grid(True, alpha=0.3)
    _title(fig, title, 6.4)
    return _save(fig, path, dpi)
