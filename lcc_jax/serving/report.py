"""serving.csv (every row, full precision), serving.md (tables per k) and serving.png."""
from __future__ import annotations

import csv
import math
import os
from typing import Sequence

COLUMNS = ("scenario", "k", "r", "m", "instances", "scheme", "code", "load", "arrival_rate",
           "p50_ms", "p99_ms", "p999_ms", "gap_ms", "mean_ms", "accuracy", "decoded_fraction")


def write_csv(path: str, rows: Sequence[dict]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)


def _grid(rows, k, key, fmt) -> list[str]:
  """A load × scheme table of ``key`` for one k."""
  mine = [row for row in rows if row["k"] == k]
  names = list(dict.fromkeys(row["scheme"] for row in mine))
  loads = list(dict.fromkeys(row["load"] for row in mine))
  cell = {(row["load"], row["scheme"]): row[key] for row in mine}
  lines = ["| load | arrival rate (q/s) | " + " | ".join(names) + " |",
           "|---|---|" + "---|" * len(names)]
  for load in loads:
    rate = next(row["arrival_rate"] for row in mine if row["load"] == load)
    lines.append(f"| {load:g} | {rate:.4g} | " +
                 " | ".join(_fmt(cell.get((load, n)), fmt) for n in names) + " |")
  return lines


def _fmt(value, fmt) -> str:
  return "" if value is None or (isinstance(value, float) and math.isnan(value)) else \
      format(value, fmt)


def _ratios(rows, k) -> list[str]:
  """ParM's measure: how many times smaller the coded scheme's p99.9 − p50 gap is."""
  mine = {(row["load"], row["scheme"]): row for row in rows if row["k"] == k}
  if not any(s == "coded" for _, s in mine):
    return []
  others = [s for s in dict.fromkeys(s for _, s in mine) if s != "coded"]
  lines = ["| load | coded p50 (ms) | " + " | ".join(f"{s}: gap ÷ coded gap (p50)"
                                                      for s in others) + " |",
           "|---|---|" + "---|" * len(others)]
  for load in dict.fromkeys(load for load, _ in mine):
    coded = mine.get((load, "coded"))
    cells = []
    for s in others:
      row = mine.get((load, s))
      cells.append(f"{row['gap_ms'] / coded['gap_ms']:.2f}× ({row['p50_ms']:.4g})"
                   if row and coded else "")
    lines.append(f"| {load:g} | {coded['p50_ms']:.4g} | " + " | ".join(cells) + " |")
  return lines


def write_markdown(path: str, rows: Sequence[dict], header: Sequence[str]) -> None:
  lines = ["# Coded serving, simulated", "", *header, ""]
  for k in dict.fromkeys(row["k"] for row in rows):
    some = next(row for row in rows if row["k"] == k)
    codes = ", ".join(sorted({f"{row['scheme']}: {row['code']}" for row in rows
                              if row["k"] == k and row["code"]}))
    lines += [f"## k = {k}, r = {some['r']}: {some['m']} instances + {some['instances'] - some['m']}"
              " extra", "", f"Accuracy from: {codes or 'nothing (no --workdir)'}.", "",
              "p99.9 − p50 (ms):", "", *_grid(rows, k, "gap_ms", ".4g"), "",
              "p50 / p99 / p99.9 (ms):", ""]
    for key in ("p50_ms", "p99_ms", "p999_ms"):
      lines += [f"{key}:", "", *_grid(rows, k, key, ".4g"), ""]
    lines += ["Accuracy clients get (top-1, expected over their answers):", "",
              *_grid(rows, k, "accuracy", ".4f"), "",
              "Answered by the decoder (fraction of queries):", "",
              *_grid(rows, k, "decoded_fraction", ".4f"), ""]
    ratios = _ratios(rows, k)
    if ratios:
      lines += ["Gap reduction by the coded scheme (other scheme's gap ÷ coded gap; its p50):",
                "", *ratios, ""]
  with open(path, "w") as f:
    f.write("\n".join(lines))


def plot(path: str, rows: Sequence[dict], title: str = "") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  ks = list(dict.fromkeys(row["k"] for row in rows))
  keys = (("p50_ms", "p50 (ms)"), ("p999_ms", "p99.9 (ms)"), ("accuracy", "top-1 accuracy"))
  fig, axes = plt.subplots(len(keys), len(ks), figsize=(4.2 * len(ks), 9), squeeze=False,
                           sharex=True)
  for col, k in enumerate(ks):
    for name in dict.fromkeys(row["scheme"] for row in rows if row["k"] == k):
      mine = [row for row in rows if row["k"] == k and row["scheme"] == name]
      for ax, (key, _) in zip(axes[:, col], keys):
        ax.plot([row["load"] for row in mine], [row[key] for row in mine], marker="o", ms=3,
                label=name)
    axes[0, col].set_title(f"k = {k}")
    axes[-1, col].set_xlabel("load (offered, on the m base instances)")
  for ax, (_, label) in zip(axes[:, 0], keys):
    ax.set_ylabel(label)
  for ax in axes[1]:
    ax.set_yscale("log")
  for ax in axes.flat:
    ax.grid(alpha=0.3)
  axes[0, -1].legend(fontsize=7)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_all(out: str, rows: Sequence[dict], header: Sequence[str], title: str) -> None:
  os.makedirs(out, exist_ok=True)
  write_csv(os.path.join(out, "serving.csv"), rows)
  write_markdown(os.path.join(out, "serving.md"), rows, header)
  plot(os.path.join(out, "serving.png"), rows, title)
