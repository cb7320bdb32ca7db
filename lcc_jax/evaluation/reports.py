"""Tables (CSV, Markdown) and every PNG plot: of an evaluation, and of a training run."""
from __future__ import annotations

import csv
from typing import Sequence

import numpy as np

from lcc_jax.evaluation import accuracy


# ------------------------------------------------------------------------------ tables


def _fmt(value) -> str:
  if isinstance(value, (bool, np.bool_)):
    return "yes" if value else "no"
  if isinstance(value, (float, np.floating)):
    return f"{value:.4f}"
  return str(value)


def write_table(path_stem: str, rows: list[dict], title: str = "", note: str = "",
                markdown: bool = True) -> None:
  """``path_stem``.csv (full precision) and .md (4 decimals) with the rows' keys as columns."""
  columns = list(dict.fromkeys(key for row in rows for key in row))
  with open(path_stem + ".csv", "w", newline="") as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  if not markdown:
    return
  lines = [f"# {title}", ""] if title else []
  if note:
    lines += [note, ""]
  lines.append("| " + " | ".join(columns) + " |")
  lines.append("|" + "---|" * len(columns))
  lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
  with open(path_stem + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------ an evaluation


def _pyplot():
  """pyplot, headless, imported at the first plot: importing this module stays light."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_unavailability(sweeps: Sequence[accuracy.Sweep], path: str, title: str = "") -> None:
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for sweep in sweeps:
    style = "-" if sweep.systematic else "--"
    ax.plot(accuracy.RATES_GRID, sweep.expected(accuracy.RATES_GRID), style, label=sweep.name)
  ax.axhline(sweeps[0].base_accuracy, color="k", lw=0.8, ls=":",
             label=f"F, all available ({sweeps[0].base_accuracy:.3f})")
  ax.set_xlabel("probability f that each worker is unavailable")
  ax.set_ylabel("expected top-1 accuracy seen by clients")
  ax.set_xlim(0, 0.5)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_baselines(rows: list[dict], path: str, rates, title: str = "") -> None:
  """Bars per scheme: degraded top-1 and the expected top-1 at each rate."""
  plt = _pyplot()
  keys = ["degraded_top1"] + [f"expected_top1@{f:g}" for f in rates]
  fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows) + 2), 4.5))
  width = 0.8 / len(keys)
  for i, key in enumerate(keys):
    ax.bar([x + (i - (len(keys) - 1) / 2) * width for x in range(len(rows))],
           [row[key] for row in rows], width, label=key)
  ax.axhline(rows[0]["base_top1"], color="k", lw=0.8, ls=":", label="F")
  ax.set_xticks(range(len(rows)), [row["scheme"] + ("" if row["systematic"] else "*")
                                    for row in rows])
  ax.set_ylim(0, 1.12)
  ax.set_ylabel("top-1 accuracy")
  ax.legend(fontsize=7, loc="upper center", ncol=len(keys) + 1)
  ax.set_title(title + " (* non-systematic: every query decoded)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_sweep(rows: list[dict], path: str, key: str, title: str = "") -> None:
  """``key`` against k, one line per (scheme, r)."""
  plt = _pyplot()
  rs = sorted({row["r"] for row in rows})
  fig, axes = plt.subplots(1, len(rs), figsize=(5 * len(rs), 4), squeeze=False)
  for ax, r in zip(axes[0], rs):
    for scheme in dict.fromkeys(row["scheme"] for row in rows):
      mine = [row for row in rows if row["r"] == r and row["scheme"] == scheme]
      points = sorted((row["k"], row[key]) for row in mine)
      systematic = str(mine[0]["systematic"]) == "True"  # bool, or text from a CSV
      ax.plot(*zip(*points), "-" if systematic else "--", marker="o", ms=3,
              label=scheme + ("" if systematic else " *"))
    ax.set_title(f"r = {r}")
    ax.set_xlabel("k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel(key)
  axes[0][-1].legend(fontsize=7)
  fig.suptitle(title + " (* non-systematic: every query decoded)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# ------------------------------------------------------------------------------ a training run


def curves(entries: list[dict], path: str, title: str = "") -> None:
  """Loss and accuracies per epoch for every split in metrics.jsonl; a replicated run's
  entries (with a ``replica``) as the mean over its replicas with a min–max band."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  replicated = any("replica" in e for e in entries)
  for split in sorted({e["split"] for e in entries}):
    rows = [e for e in entries if e["split"] == split]
    epochs = sorted({e["epoch"] for e in rows})
    for ax, key in zip(axes, ("loss", "reconstruction_top1", "degraded_top1")):
      if replicated:
        values = [[e.get(key, float("nan")) for e in rows if e["epoch"] == epoch]
                  for epoch in epochs]
        line, = ax.plot(epochs, [np.mean(v) for v in values], label=f"{split} (mean)")
        ax.fill_between(epochs, [min(v) for v in values], [max(v) for v in values],
                        color=line.get_color(), alpha=0.2, lw=0)
      else:
        ax.plot(epochs, [e.get(key, float("nan")) for e in rows], label=split)
      ax.set_xlabel("epoch")
      ax.set_title(key)
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
  fig.suptitle(title + (" — mean over replicas, min–max band" if replicated else ""))
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def per_pattern(per_pattern_entries: list[dict], path: str, base_accuracy: float | None = None,
                title: str = "") -> None:
  """Reconstruction and degraded top-1 of every erasure pattern."""
  plt = _pyplot()
  labels = [",".join(map(str, p["unavailable"])) for p in per_pattern_entries]
  xs = range(len(labels))
  fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(labels) + 2), 4))
  width = 0.4
  ax.bar([x - width / 2 for x in xs], [p["reconstruction_top1"] for p in per_pattern_entries],
         width, label="reconstruction top-1 (agreement with F)")
  ax.bar([x + width / 2 for x in xs], [p["degraded_top1"] for p in per_pattern_entries], width,
         label="degraded top-1 (vs label)")
  if base_accuracy is not None:
    ax.axhline(base_accuracy, color="k", ls="--", lw=1,
               label=f"F test accuracy {base_accuracy:.3f}")
  ax.set_xticks(list(xs), labels, rotation=90 if len(labels) > 12 else 0)
  ax.set_xlabel("unavailable slots")
  ax.set_ylim(0, 1)
  ax.legend(loc="lower right", fontsize=8)
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
