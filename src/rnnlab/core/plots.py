"""Figures, drawn only from run records (metrics, predictions, summaries).

Every function takes records (and for image grids the dataset the record names),
writes PNGs atomically and returns their paths.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from rnnlab.core.fileio import atomic_open
from rnnlab.core.records import RunRecord


def subplots(*grid: int, figsize: tuple[float, float], **options) -> tuple[Figure, object]:
    """A figure and its axes, made without pyplot: figures only go to files, and a
    notebook's own plotting backend (inline plots) stays as the user set it."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **options)


def save(fig: Figure, path: Path) -> Path:
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    return path


def metric_by_epoch(record: RunRecord, key: str) -> tuple[list[int], list[float]]:
    rows = record.metrics()
    return [r["epoch"] for r in rows], [r[key] for r in rows]


def curves_figure(runs: Sequence[tuple[str, RunRecord]], keys: Sequence[tuple[str, str]],
                  ylabel: str, title: str, percent: bool = False):
    """One line per (run, metric): ``keys`` is a list of (metric key, legend suffix)."""
    fig, ax = subplots(figsize=(6, 4))
    for label, record in runs:
        for key, suffix in keys:
            epochs, values = metric_by_epoch(record, key)
            scale = 100.0 if percent else 1.0
            ax.plot(epochs, [scale * v for v in values], marker="o", ms=3,
                    label=f"{label} {suffix}".strip())
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def draw_learning_curves(runs: Sequence[tuple[str, RunRecord]], out_dir: Path,
                         prefix: str = "") -> list[Path]:
    """Training/validation loss and validation accuracy by epoch, one line per run."""
    loss = curves_figure(runs, [("train_loss", "train"), ("valid_loss", "valid")], "loss",
                         "Loss by epoch")
    acc = curves_figure(runs, [("valid_accuracy", "")], "validation accuracy (%)",
                        "Validation accuracy by epoch", percent=True)
    return [save(loss, out_dir / f"{prefix}loss_curves.png"),
            save(acc, out_dir / f"{prefix}valid_accuracy.png")]


def read_predictions(record: RunRecord) -> list[dict[str, int]]:
    path = record.dir / "test_predictions.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [{k: int(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def confusion_matrix(rows: list[dict[str, int]], classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    for row in rows:
        matrix[row["label"], row["prediction"]] += 1
    return matrix


def draw_confusion(matrix: np.ndarray, names: Sequence[str], path: Path) -> Path:
    fig, ax = subplots(figsize=(5.5, 5))
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", fontsize=6,
                color="white" if n > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Test confusion matrix")
    return save(fig, path)


def draw_image_grid(images: np.ndarray, rows: list[dict[str, int]], names: Sequence[str],
                    path: Path, title: str) -> Path:
    """Images with 'pred / true' captions; misclassified ones in red with a red frame."""
    n = len(rows)
    cols = min(n, 10)
    grid_rows = (n + cols - 1) // cols
    fig, axes = subplots(grid_rows, cols, figsize=(1.3 * cols, 1.6 * grid_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows, strict=False):
        wrong = row["prediction"] != row["label"]
        ax.imshow(images[row["index"]], cmap="gray_r" if not wrong else "Reds")
        ax.set_title(f"pred {names[row['prediction']]}\ntrue {names[row['label']]}", fontsize=7,
                     color="red" if wrong else "black")
    fig.tight_layout()
    fig.suptitle(title, fontsize=9, y=1.0 + 0.12 / grid_rows)  # above the captions, not on them
    return save(fig, path)


def draw_batch_losses(record: RunRecord, path: Path) -> Path:
    losses = record.summary()["test"].get("batch_losses", [])
    fig, ax = subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, marker="o", ms=3)
    ax.set_xlabel("test batch")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title("Test loss per batch")
    ax.grid(alpha=0.3)
    return save(fig, path)


# -- report figures: several runs on one plot (rnnlab report) -------------------------
Series = tuple[str, Sequence[float], Sequence[float]]  # (legend label, x values, y values)


def draw_lines(series: Sequence[Series], path: Path, *, xlabel: str, ylabel: str, title: str,
               dashed: Sequence[Series] = (), log_x: bool = False,
               ylim: tuple[float, float] | None = None, integer_x: bool = False) -> Path:
    """One solid line per series; ``dashed`` series (e.g. the reference's curves) take the
    colour of the solid series with the same label prefix, or the next free colour."""
    fig, ax = subplots(figsize=(6.4, 4))
    colours: dict[str, str] = {}
    for label, xs, ys in series:
        (line,) = ax.plot(list(xs), list(ys), marker="o", ms=3, label=label)
        colours[label] = line.get_color()
    for label, xs, ys in dashed:
        colour = next((c for name, c in colours.items() if label.startswith(name)), None)
        ax.plot(list(xs), list(ys), ls="--", marker="x", ms=3, lw=1, color=colour, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log_x:
        ax.set_xscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    if integer_x:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if series or dashed:
        ax.legend(fontsize=7, ncol=2 if len(series) + len(dashed) > 6 else 1)
    return save(fig, path)


def draw_line_panels(panels: Sequence[tuple[str, Sequence[Series]]], path: Path, *, xlabel: str,
                     ylabel: str, title: str, ylim: tuple[float, float] | None = None,
                     log_x: bool = False, log_y: bool = False, columns: int = 3,
                     markers: bool = True, shared_legend: bool = False) -> Path:
    """Panels side by side, ``columns`` to a row: (panel title, series) each. With ``log_y``
    values <= 0 are left out (a gradient that underflowed to 0 has no place on the axis).
    ``shared_legend``: one legend right of the panels instead of one in each (the series
    are the same in every panel, and lines that fill a panel leave no free corner)."""
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (panel_title, series) in zip(axes.flat, panels, strict=False):
        for label, xs, ys in series:
            ax.plot(list(xs), list(ys), marker="o" if markers else None, ms=3, label=label)
        ax.set_title(panel_title, fontsize=9)
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        if log_x:
            ax.set_xscale("log")
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if series and not shared_legend:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if shared_legend:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save(fig, path)


GRADIENT_PANELS = (("init", "at initialisation"), ("trained", "after training (best weights)"))


def draw_gradient_norms(runs: Sequence[tuple[str, RunRecord]], path: Path,
                        title: str) -> Path | None:
    """||dLoss/dh_t|| against step t from each run's gradients.json (one line per run), at
    initialisation and after training; None when no run recorded it."""
    curves = [(label, record.read_json("gradients.json")) for label, record in runs
              if (record.dir / "gradients.json").is_file()]
    if not curves:
        return None
    panels = [(panel, [(label, range(1, len(g[key]) + 1), [v if v > 0 else float("nan")
                                                          for v in g[key]])
                       for label, g in curves if key in g])
              for key, panel in GRADIENT_PANELS]
    return draw_line_panels(panels, path, xlabel="step t", ylabel="mean ||dLoss / dh_t||",
                            title=title, log_y=True, columns=2, markers=False,
                            shared_legend=True)
