"""Markdown tables for results/baselines.md from the evaluation outputs in results/baselines/.

  PYTHONPATH=. .venv/bin/python results/baselines/make_tables.py > /tmp/tables.md

Reads fmnist_sweep/baseline_sweep.csv (k 2..12 × r 1..3, tail cut 1e-4; its k = 11, 12 at
r = 3 come from fmnist_sweep_k11_12_r3/, rerun after an XLA:CPU hang, see baselines.md;
the merged sweep is plotted into fmnist_sweep/baseline_sweep_merged.png), fmnist_k8_12/
baseline_sweep.csv (K = 8, 10, 12, r = 1, all patterns, both Berrut conventions),
fmnist_mlp_k2/eval.json (the learned code and the baselines at k = 2, r = 1) and
fmnist_byzantine/byzantine.csv when present.
"""
from __future__ import annotations

import csv
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMES = ("none", "replication", "berrut", "letcc", "approxifer", "approxifer-paper",
           "letcc-ns")
SYSTEMATIC = {"none", "replication", "berrut", "letcc", "code"}


def _read(path):
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return list(csv.DictReader(f))


def _table(header, rows):
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def _pick(rows, k, r, scheme):
  for row in rows:
    if int(row["k"]) == k and int(row["r"]) == r and row["scheme"] == scheme:
      return row
  return None


def _cell(row, key, pct=True):
  if row is None or row.get(key, "") == "":
    return "–"
  return f"{100 * float(row[key]):.1f}" if pct else row[key]


def by_k(rows, ks, r, key, schemes, extra=None):
  header = ["k", "F"] + [s + ("" if s in SYSTEMATIC else "*") for s in schemes]
  body = []
  for k in ks:
    first = next((row for row in rows if int(row["k"]) == k and int(row["r"]) == r), None)
    if first is None:
      continue
    cells = [str(k), _cell(first, "base_top1")]
    cells += [_cell(_pick(rows, k, r, s), key) for s in schemes]
    if extra:
      cells += extra(k)
    body.append(cells)
  return header, body


def _merged_sweep():
  rows = _read(os.path.join(HERE, "fmnist_sweep", "baseline_sweep.csv"))
  extra = _read(os.path.join(HERE, "fmnist_sweep_k11_12_r3", "baseline_sweep.csv"))
  done = {(row["k"], row["r"], row["scheme"]) for row in extra}
  rows = [row for row in rows if (row["k"], row["r"], row["scheme"]) not in done] + extra
  if rows:
    from lcc_jax.evaluation import reports  # pylint: disable=g-import-not-at-top
    typed = [{**row, "k": int(row["k"]), "r": int(row["r"]),
              "degraded_top1": float(row["degraded_top1"])} for row in rows]
    reports.plot_sweep(typed, os.path.join(HERE, "fmnist_sweep", "baseline_sweep_merged.png"),
                       "degraded_top1", "fashion_mnist base-mlp: training-free baselines")
  return rows


def main():
  sweep = _merged_sweep()
  exact = _read(os.path.join(HERE, "fmnist_k8_12", "baseline_sweep.csv"))
  code_path = os.path.join(HERE, "fmnist_mlp_k2", "eval.json")
  code = None
  if os.path.exists(code_path):
    with open(code_path) as f:
      result = json.load(f)
    code = {k: str(v) for k, v in result["schemes"][0].items()}
  out = []
  published = {8: ("74.0", "67.1"), 10: ("73.0", "59.0"), 12: ("72.0", "55.2")}
  for key, what in (("degraded_top1", "degraded-mode top-1 (non-systematic*: every query)"),
                    ("no_straggler_top1", "top-1 with every worker available"),
                    ("expected_top1@0.05", "expected client top-1 at f = 0.05"),
                    ("agreement", "agreement with F (degraded mode)")):
    header, body = by_k(exact, (8, 10, 12), 1, key, SCHEMES,
                        (lambda k: list(published[k])) if key == "degraded_top1" else None)
    if key == "degraded_top1":
      header += ["ApproxIFER paper*", "ParM in ApproxIFER's paper"]
    out += [f"ApproxIFER's shape (K = 8, 10, 12, one straggler, N = K + 1), {what}:", "",
            _table(header, body), ""]
  for key, what in (("degraded_top1", "degraded-mode top-1"),
                    ("expected_top1@0.01", "expected client top-1 at f = 0.01"),
                    ("expected_top1@0.05", "expected client top-1 at f = 0.05"),
                    ("expected_top1@0.1", "expected client top-1 at f = 0.1"),
                    ("agreement", "agreement with F (degraded mode)")):
    schemes = [s for s in SCHEMES if s != "approxifer-paper"]
    header, body = by_k(sweep, (2, 3, 4), 1, key, schemes,
                        lambda k, key=key: [_cell(code, key) if code and k == 2 else "–"])
    header += ["learned code (k = 2)"]
    out += [f"ParM's home ground (k = 2, 3, 4, r = 1), {what}:", "", _table(header, body), ""]
  for r in (2, 3):
    schemes = [s for s in SCHEMES if s != "approxifer-paper"]
    for key, what in (("degraded_top1", "degraded-mode top-1"),
                      ("expected_top1@0.05", "expected client top-1 at f = 0.05")):
      header, body = by_k(sweep, (2, 4, 8, 12), r, key, schemes)
      out += [f"r = {r}, {what}:", "", _table(header, body), ""]
  byz = _read(os.path.join(HERE, "fmnist_byzantine", "byzantine.csv"))
  if byz:
    header = ["K", "A", "N", "σ", "clean*", "attacked*", "after locator*", "location rate"]
    body = [[row["k"], row["byzantine"], row["workers"], f"{float(row['sigma']):g}",
             _cell(row, "clean_top1"),
             _cell(row, "attacked_top1"), _cell(row, "located_top1"),
             _cell(row, "location_rate")] for row in byz]
    out += ["Byzantine workers (ApproxIFER, cos(iπ/N) worker points, S = 0):", "",
            _table(header, body), ""]
  print("\n".join(out))


if __name__ == "__main__":
  main()
