r"""Issue 20's runs on real data, and the tables RESULTS.md shows from them.

  PYTHONPATH=. .venv/bin/python results/runs.py check --f=PATH/TO/model.t7      # dry-run all
  PYTHONPATH=. .venv/bin/python results/runs.py run --f=PATH/TO/model.t7 [NAME ...]
  PYTHONPATH=. .venv/bin/python results/runs.py tables > /tmp/tables.md
  PYTHONPATH=. .venv/bin/python results/runs.py plot      # results/learning_speed.png

Groups: `reproduction`, `joint` and `beyond` train on genuine Fashion-MNIST with upstream's
trained base-mlp F (`--f`: its `model.t7`, read with torch); `speed` is the learning-speed
study on scikit-learn's digits (5 seeds each, as replicas in one program; its own F).

`run` trains each named run (all when none is named; `--group=G` for one group) one after
another in ROOT/<name> (default runs/issue20), each for its time budget
(`time_limit_minutes`); a run whose summary.json exists is skipped, an interrupted one resumes
from its checkpoint when run again, and the plan below is re-read before each run (edit it
while a queue runs). `tables` prints one markdown table per group from the runs' summary.json
and metrics.jsonl: test metrics at the best-val epoch, the epochs reached, the wall time, and
whether the val curve was still rising; then the codes beside the training-free baselines
(ROOT/baselines/*/baseline_sweep.csv). `plot` draws the learning-speed curves, before and after.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import runpy
import subprocess
import sys

PM = ("--config=configs/parity_models.py:dataset=fashion_mnist,model=base-mlp,code={code},"
      "k={entry}")
LCC = ("--config=configs/learned_cc.py:dataset=fashion_mnist,model=base-mlp,k={entry},loss={loss},"
       "encoder={enc}")
R_GT_1 = "--config=configs/r_gt_1.py:dataset=fashion_mnist,model=base-mlp,k={k},r={r},code={code}"
JOINT = ("--config.parity_model.name=same", "--config.train.parity_model=True")
FAST = ("--config.upstream_init=False", "--config.parity_model.init=base")  # issue 20's fixes
UPSTREAM_F = "--config.base_model.checkpoint={F}"  # upstream's trained F (--f)
GROUPS = ("recipes", "seeds", "reproduction", "joint", "beyond", "speed")


def _batch(k):
  return f"--config.data.batch_size={64 if k == 2 else 32}"  # both originals: 64 at k = 2, else 32


def _pm(code, k, *extra):
  """A parity-model run (fixed encoder and decoder, F_P trained); k replaces a shipped entry's."""
  entry = k if k in ((2, 3, 4) if code == "add" else (2, 4)) else 2
  return [PM.format(code=code, entry=entry), f"--config.k={k}", _batch(k), UPSTREAM_F, *extra]


def _lcc(k, loss, enc, *extra):
  """A learned code with F on the parities (learned-cc's entries are k = 2 and 5)."""
  return [LCC.format(entry=2 if k == 2 else 5, loss=loss, enc=enc), f"--config.k={k}", _batch(k),
          UPSTREAM_F, *extra]


def _digits(*extra, seeds=5, epochs=150):
  """The embedded default (digits), 5 seeds in one program."""
  return [f"--config.replicas.seeds={seeds}", f"--config.num_epochs={epochs}", *extra]


DIGITS_JOINT = JOINT + ("--config.upstream_init=False",)
DIGITS_PM = JOINT + ("--config.encoder.name=sum", "--config.decoder.name=sub",
                     "--config.loss=parity_mse", "--config.train.encoder=False",
                     "--config.train.decoder=False")

FMNIST_MLP = "--config=configs/fashion_mnist_mlp.py"
COS40 = ("--config.base_model.epochs=40", "--config.base_model.lr_schedule=cosine")

# name → (group, train.py arguments, minutes). Fashion-MNIST budgets: 3–8 CPU minutes (issue 20: at most ≈ 10).
RUNS = {
    # F recipes against upstream's F (F only: num_epochs=0).
    "f_upstream": ("recipes", [FMNIST_MLP, "--config.num_epochs=0", UPSTREAM_F], 0),
    **{f"f_const20_s{seed}": ("recipes", [FMNIST_MLP, "--config.num_epochs=0",
                                          f"--config.seed={seed}"], 0) for seed in range(3)},
    **{f"f_cos40_s{seed}": ("recipes", [FMNIST_MLP, "--config.num_epochs=0", *COS40,
                                        f"--config.seed={seed}"], 0) for seed in range(3)},
    # Replicas over 5 seeds (issue 19): the embedded default; the Fashion-MNIST MLP code on
    # f_const20_s0's F (run f_const20_s0 first).
    "default_5seeds": ("seeds", ["--config.replicas.seeds=5"], 0),
    "fmnist_mlp_5seeds": ("seeds", [FMNIST_MLP, "--config.replicas.seeds=5",
                                    "--config.num_epochs=60",
                                    "--config.base_model.checkpoint={root}/f_const20_s0/base"], 35),
    # The originals' Fashion-MNIST entries, as shipped (upstream's init, F_P from scratch).
    "pm_add_k2": ("reproduction", _pm("add", 2), 5),
    "pm_add_k3": ("reproduction", _pm("add", 3), 5),
    "pm_add_k4": ("reproduction", _pm("add", 4), 5),
    "pm_concat_k2": ("reproduction", _pm("concat", 2), 5),
    "pm_concat_k4": ("reproduction", _pm("concat", 4), 5),
    "lcc_k2_kl_mlp": ("reproduction", _lcc(2, "kl", "mlp"), 6),
    "lcc_k2_mse_mlp": ("reproduction", _lcc(2, "mse", "mlp"), 6),
    "lcc_k5_kl_mlp": ("reproduction", _lcc(5, "kl", "mlp"), 6),
    "lcc_k2_kl_conv": ("reproduction", _lcc(2, "kl", "conv"), 8),
    "lcc_k2_mse_conv": ("reproduction", _lcc(2, "mse", "conv"), 6),
    # The fixes on Fashion-MNIST, and joint training against its parts (k = 2).
    "pm_add_k2_fromF": ("joint", _pm("add", 2, "--config.parity_model.init=base"), 5),
    "lcc_k2_kl_mlp_fast": ("joint", _lcc(2, "kl", "mlp", "--config.upstream_init=False"), 5),
    "joint_k2_mlp": ("joint", _lcc(2, "kl", "mlp", *JOINT, *FAST), 5),
    "joint_k2_sub": ("joint", _lcc(2, "kl", "mlp", *JOINT, *FAST, "--config.decoder.name=sub"), 5),
    # Beyond the originals at equal numbers of workers (lcc_jax's defaults).
    "lcc_k2_r2": ("beyond", [R_GT_1.format(k=2, r=2, code="mlp"), UPSTREAM_F], 4),
    "lcc_k4_r2": ("beyond", [R_GT_1.format(k=4, r=2, code="mlp"), UPSTREAM_F], 4),
    "mds_k2_r2": ("beyond", [R_GT_1.format(k=2, r=2, code="mds"), UPSTREAM_F], 3),
    "mds_k4_r2": ("beyond", [R_GT_1.format(k=4, r=2, code="mds"), UPSTREAM_F], 3),
    "mds_k2_r3": ("beyond", [R_GT_1.format(k=2, r=3, code="mds"), UPSTREAM_F], 3),
    "mds_k4_r3": ("beyond", [R_GT_1.format(k=4, r=3, code="mds"), UPSTREAM_F], 3),
    "pm_add_k8": ("beyond", _pm("add", 8, "--config.parity_model.init=base"), 3),
    "pm_add_k12": ("beyond", _pm("add", 12, "--config.parity_model.init=base"), 3),
    "pm_concat_k8": ("beyond", _pm("concat", 8, "--config.parity_model.init=base"), 3),
    "lcc_k8_mlp": ("beyond", _lcc(8, "kl", "mlp", "--config.upstream_init=False"), 4),
    # Learning speed on digits: each candidate against upstream's choice (5 seeds).
    "learned_upstream_init": ("speed", _digits("--config.upstream_init=True"), 0),
    "learned": ("speed", _digits(), 0),
    "r2_k4_upstream_init": ("speed", _digits("--config.k=4", "--config.r=2",
                                             "--config.data.batch_size=32",
                                             "--config.upstream_init=True"), 0),
    "r2_k4": ("speed", _digits("--config.k=4", "--config.r=2", "--config.data.batch_size=32"), 0),
    # The conv encoder costs ≈ 9 s per epoch for 5 seeds here: 2 seeds, 60 epochs.
    "conv_upstream_init": ("speed", _digits("--config.encoder.name=conv",
                                            "--config.upstream_init=True", seeds=2, epochs=60), 0),
    "conv": ("speed", _digits("--config.encoder.name=conv", seeds=2, epochs=60), 0),
    "pm_scratch": ("speed", _digits(*DIGITS_PM, "--config.parity_model.init=scratch"), 0),
    "pm_fromF": ("speed", _digits(*DIGITS_PM, "--config.parity_model.init=base"), 0),
    "joint_upstream": ("speed", _digits(*JOINT, "--config.upstream_init=True",
                                        "--config.parity_model.init=scratch"), 0),
    "joint_scratch": ("speed", _digits(*DIGITS_JOINT, "--config.parity_model.init=scratch"), 0),
    "joint_fromF_upstream_init": ("speed", _digits(*JOINT, "--config.upstream_init=True",
                                                   "--config.parity_model.init=base"), 0),
    "joint_fromF": ("speed", _digits(*DIGITS_JOINT, "--config.parity_model.init=base"), 0),
    "joint_fromF_sub": ("speed", _digits(*DIGITS_JOINT, "--config.parity_model.init=base",
                                         "--config.decoder.name=sub"), 0),
    "sum_fromF_sub_kl": ("speed", _digits(*DIGITS_JOINT, "--config.parity_model.init=base",
                                          "--config.encoder.name=sum", "--config.train.encoder=False",
                                          "--config.decoder.name=sub", "--config.train.decoder=False"),
                         0),
}


def _plan() -> dict:
  """RUNS as the file says now (a queue re-reads it before each run)."""
  return runpy.run_path(os.path.abspath(__file__))["RUNS"]


def _command(args, minutes, workdir, root, f_path):
  cmd = [sys.executable, "train.py", *[a.format(F=f_path, root=root) for a in args],
         f"--workdir={workdir}", "--noprogress"]
  if minutes:
    cmd.append(f"--config.time_limit_minutes={minutes}")
  return cmd


def run(names, root, f_path, dry_run=False):
  for name in names:
    group, args, minutes = _plan()[name]
    workdir = os.path.join(root, name)
    if not dry_run and _run_dir(workdir, "summary.json"):
      print(f"{name}: done, skipped", flush=True)
      continue
    cmd = _command(args, minutes, workdir, root, f_path) + ["--dry_run"] * dry_run
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=False)


def _run_dir(workdir, file="config.json"):
  """The run's folder: a family config runs its one entry in WORKDIR/<entry name>."""
  found = glob.glob(os.path.join(workdir, "**", file), recursive=True)
  return os.path.dirname(found[0]) if found else None


def _curve(workdir, split="val", metric="degraded_top1"):
  """Replica 0's (or the single run's) metric per epoch, in epoch order."""
  values = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      entry = json.loads(line)
      if entry.get("split") == split and entry.get("replica", 0) == 0:
        values[entry["epoch"]] = entry[metric]
  return [values[e] for e in sorted(values)]


def _mean_curve(workdir, split="test", metric="degraded_top1"):
  """The metric per epoch, averaged over the replicas that reported it."""
  sums = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      entry = json.loads(line)
      if entry.get("split") == split:
        total, count = sums.get(entry["epoch"], (0.0, 0))
        sums[entry["epoch"]] = (total + entry[metric], count + 1)
  return sorted(sums), [sums[e][0] / sums[e][1] for e in sorted(sums)]


# Before / after pairs of the curves figure: (panel title, [(run, label), ...]).
CURVES = (
    ("digits, 5 seeds (mean test degraded top-1)", [
        ("learned_upstream_init", "learned code, upstream init"), ("learned", "learned code"),
        ("r2_k4_upstream_init", "k=4 r=2, upstream init"), ("r2_k4", "k=4 r=2"),
        ("joint_upstream", "joint, upstream init, F_P scratch"),
        ("joint_scratch", "joint, F_P scratch"), ("joint_fromF", "joint, F_P from F"),
        ("pm_scratch", "sum/sub, F_P scratch"), ("pm_fromF", "sum/sub, F_P from F")]),
    ("Fashion-MNIST k=2, upstream's F (test degraded top-1)", [
        ("lcc_k2_kl_mlp", "learned code, upstream init"),
        ("lcc_k2_kl_mlp_fast", "learned code"), ("pm_add_k2", "sum/sub, F_P scratch"),
        ("pm_add_k2_fromF", "sum/sub, F_P from F"), ("joint_k2_mlp", "joint, F_P from F"),
        ("joint_k2_sub", "joint + sub decoder, F_P from F")]),
)


def plot(root, out):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(CURVES), figsize=(7 * len(CURVES), 4.5))
  for ax, (title, runs) in zip(axes, CURVES):
    for name, label in runs:
      workdir = _run_dir(os.path.join(root, name), "summary.json")
      if workdir:
        epochs, values = _mean_curve(workdir)
        style = "--" if ("upstream" in label or "scratch" in label) else "-"
        ax.plot(epochs, [100 * v for v in values], style, label=label)
    ax.set(title=title, xlabel="epoch", ylabel="%")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  print(f"wrote {out}")


def trend(curve) -> str:
  """'rising' when the last fifth of the epochs beats the fifth before by > 0.2 points."""
  n = max(1, len(curve) // 5)
  if len(curve) < 5:
    return "rising?" if len(curve) < 2 or curve[-1] > curve[-2] else "flat?"
  return "rising" if sum(curve[-n:]) / n - sum(curve[-2 * n:-n]) / n > 0.002 else "flat"


def _pct(x):
  return f"{100 * x:.2f}"


def _fmnist_row(name, workdir, s, cfg):
  test, curve, test_curve = s["test"], _curve(workdir), _curve(workdir, "test")
  early = " / ".join(_pct(test_curve[e - 1]) if len(test_curve) >= e else "–" for e in (10, 20))
  return (f"| {name} | {cfg['k']} | {cfg['r']} | {cfg['encoder']['name']} / "
          f"{cfg['decoder']['name']} | {cfg['loss']} | **{_pct(test['degraded_top1'])}** | "
          f"{_pct(test['reconstruction_top1'])} | {early} | {len(curve)} ({s['best_epoch']}) | "
          f"{s['wall_time_s'] / 60:.1f} min | {trend(curve)} |")


def _spread(s, key):
  a = s["aggregate"][key]
  scale, digits = (1, 0) if key == "best_epoch" else (100, 2)
  return f"{scale * a['mean']:.{digits}f} ± {scale * a['std']:.{digits}f}"


def _replicas_row(name, workdir, s, cfg):
  at_60 = [c[59] for c in [_curve(workdir, "test")] if len(c) >= 60]
  seeds = s["aggregate"]["test/degraded_top1"]["count"]
  return (f"| {name} | {seeds} | **{_spread(s, 'test/degraded_top1')}** | "
          f"{_spread(s, 'test/reconstruction_top1')} | {_pct(at_60[0]) if at_60 else '–'} | "
          f"{len(_curve(workdir))} | {_spread(s, 'best_epoch')} | {s['wall_time_s']:.0f} s |")


def _recipe_row(name, workdir, s, cfg):
  f = s["base_model"]
  trained = (f"{f['trained_epochs']} epochs, {cfg['base_model'].get('lr_schedule', 'constant')} lr, "
             f"{f['train_time_s']:.0f} s" if "trained_epochs" in f else "upstream's model.t7")
  return f"| {name} | {cfg['seed']} | **{_pct(f['test_accuracy'])}** | {trained} |"


FMNIST_TABLE = (
    "| run | k | r | encoder / decoder | loss | test degraded top-1 % | test reconstruction "
    "top-1 % | test degraded at epochs 10 / 20 % | epochs (best) | wall | val curve |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|",
    _fmnist_row)
REPLICAS_TABLE = (
    "| run | seeds | test degraded top-1 % (mean ± std) | test reconstruction top-1 % | seed 0 "
    "at epoch 60 % | epochs | best epoch | wall (all seeds) |\n|---|---|---|---|---|---|---|---|",
    _replicas_row)
TABLES = {
    "recipes": ("| run | seed | F test accuracy % | F's training |\n|---|---|---|---|", _recipe_row),
    "seeds": REPLICAS_TABLE, "reproduction": FMNIST_TABLE, "joint": FMNIST_TABLE,
    "beyond": FMNIST_TABLE, "speed": REPLICAS_TABLE,
}


def tables(root):
  for group, (header, row_of) in TABLES.items():
    rows = []
    for name, (g, _, _) in RUNS.items():
      workdir = _run_dir(os.path.join(root, name), "summary.json") if g == group else None
      if workdir:
        with open(os.path.join(workdir, "summary.json")) as f:
          s = json.load(f)
        with open(os.path.join(workdir, "config.json")) as f:
          cfg = json.load(f)
        rows.append(row_of(name, workdir, s, cfg))
    if rows:
      print(f"\n### {group}\n\n{header}\n" + "\n".join(rows))


BASELINES = ("replication", "berrut", "letcc", "approxifer", "letcc-ns")
SYSTEMATIC = ("replication", "berrut", "letcc")


def _codes_by_kr(root):
  """(k, r) → ["name degraded%"] over the Fashion-MNIST runs with upstream's F."""
  codes = {}
  for name, (group, args, _) in RUNS.items():
    workdir = _run_dir(os.path.join(root, name), "summary.json")
    if workdir and UPSTREAM_F in args and group != "recipes":
      with open(os.path.join(workdir, "summary.json")) as f:
        s = json.load(f)
      key = (s["k"], s["r"])
      codes.setdefault(key, []).append(f"{name} {_pct(s['test']['degraded_top1'])}")
  return codes


def baselines_table(root):
  """The codes beside the training-free baselines at equal workers (ROOT/baselines/*/
  baseline_sweep.csv, from `python -m lcc_jax.evaluation --baseline_sweep` on a run's F)."""
  rows = {}
  for path in sorted(glob.glob(os.path.join(root, "baselines", "*", "baseline_sweep.csv"))):
    with open(path) as f:
      for row in csv.DictReader(f):
        rows.setdefault((int(row["k"]), int(row["r"])), {})[row["scheme"]] = row
  if not rows:
    return
  codes = _codes_by_kr(root)
  names = [b + ("" if b in SYSTEMATIC else "*") for b in BASELINES]
  print("\n### baselines (test degraded top-1 %; * = non-systematic: every query with r "
        "unavailable)\n\n| k | r | workers | F | " + " | ".join(names) + " | codes (this "
        "table's runs) |\n|" + "---|" * (len(names) + 5))
  for (k, r), by_scheme in sorted(rows.items()):
    first = next(iter(by_scheme.values()))
    cells = [_pct(float(by_scheme[b]["degraded_top1"])) if b in by_scheme else "–"
             for b in BASELINES]
    print(f"| {k} | {r} | {k + r} | {_pct(float(first['base_top1']))} | " + " | ".join(cells)
          + f" | {', '.join(codes.get((k, r), [])) or '–'} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("what", choices=("check", "run", "tables", "plot"))
  parser.add_argument("names", nargs="*", help="runs (default: all): " + ", ".join(RUNS))
  parser.add_argument("--group", choices=GROUPS, default=None)
  parser.add_argument("--root", default="runs/issue20")
  parser.add_argument("--out", default="results/learning_speed.png", help="plot: the figure")
  parser.add_argument("--f", default="", help="upstream's Fashion-MNIST base-mlp model.t7")
  a = parser.parse_args()
  unknown = sorted(set(a.names) - set(RUNS))
  if unknown:
    parser.error(f"unknown runs {unknown}; known: {', '.join(RUNS)}")
  names = a.names or [n for n, (g, _, _) in RUNS.items() if a.group in (None, g)]
  needs_f = any(UPSTREAM_F in RUNS[n][1] for n in names)
  if a.what in ("check", "run") and needs_f and not os.path.isfile(a.f):
    parser.error("--f=PATH: upstream's Fashion-MNIST base-mlp model.t7 is needed (and torch)")
  if a.what == "tables":
    tables(a.root)
    baselines_table(a.root)
  elif a.what == "plot":
    plot(a.root, a.out)
  else:
    run(names, a.root, a.f, dry_run=a.what == "check")


if __name__ == "__main__":
  main()
