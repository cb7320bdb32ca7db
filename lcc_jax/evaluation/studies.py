"""What the command evaluates: a workdir's code (and baselines), the baselines over k × r, and
ApproxIFER with Byzantine workers; each writes its tables and plots."""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import (assembly, baselines, data, metrics, nn, run_summary, steps,
                     workdir as workdir_lib)
from lcc_jax.coders import berrut
from lcc_jax.evaluation import accuracy, counting, patterns, reports, runs, schemes

log = logging.getLogger(__name__)

EVAL_DIR = "eval"


def byzantine(f: nn.ModelFns, f_variables, arrays, indices, k: int, num_errors: int, *,
              stragglers: int = 0, sigma: float = 10.0, convention: str = "endpoints",
              batch_size: int = 500, seed: int = 0) -> dict[str, Any]:
  """ApproxIFER with ``num_errors`` Byzantine workers (docs/upstream.md §Byzantine decoding), every
  query scored.

  N = 2k + 2A + S − 1 workers; per group, S stragglers and then A adversaries among the rest
  are drawn uniformly (seeded); an adversary adds N(0, σ²) noise to each of its outputs. Reports
  the every-query top-1 without adversaries, with them, and after the locator
  (``berrut.locate_errors``) drops its A suspects, plus how often it finds exactly them.
  """
  n = 2 * k + 2 * num_errors + stragglers - 1
  points_N = berrut.cheb2(n, convention)
  scheme = baselines.approxifer(k, n - k, f, f_variables, convention)
  device = counting.device_data(arrays["x"], arrays["y"], arrays["labels"])
  idx_SxBxK, weight_SxB = data.group_indices(indices, k, batch_size, shuffle=False)

  @jax.jit
  def step(variables, idx_BxK, weight_B, avail_BxN, adv_BxN, noise_BxNxC):
    x_BxKxI, y_BxKxC, labels_BxK = steps.gather(device, idx_BxK)
    outs_BxNxC = scheme.outputs(variables, x_BxKxI, y_BxKxC)
    bad_BxNxC = outs_BxNxC + adv_BxN[..., None] * noise_BxNxC
    suspects_BxN = jax.vmap(lambda o, a: berrut.locate_errors(o, a, points_N, k, num_errors))(
        bad_BxNxC, avail_BxN)
    decode = jax.vmap(lambda o, a: berrut.nonsystematic_decode(o[None], a, k, convention)[0])
    hits = {}
    for name, outs, avail in (("clean", outs_BxNxC, avail_BxN), ("attacked", bad_BxNxC, avail_BxN),
                              ("located", bad_BxNxC, avail_BxN & ~suspects_BxN)):
      decoded_BxKxC = decode(jnp.where(avail[..., None], outs, 0.0), avail)
      pred_BxK = jnp.argmax(counting.informative(decoded_BxKxC), -1)
      hits[name] = jnp.sum((pred_BxK == labels_BxK) * weight_B[:, None])
    hits["found"] = jnp.sum(jnp.all(suspects_BxN == adv_BxN, axis=1) * weight_B)
    return hits

  rng = np.random.default_rng(seed)
  acc = metrics.Accumulator()
  for idx_BxK, weight_B in zip(idx_SxBxK, weight_SxB):
    order_BxN = np.argsort(rng.random((len(idx_BxK), n)), axis=1)
    avail_BxN = np.ones((len(idx_BxK), n), bool)
    np.put_along_axis(avail_BxN, order_BxN[:, :stragglers], False, axis=1)
    adv_BxN = np.zeros_like(avail_BxN)
    np.put_along_axis(adv_BxN, order_BxN[:, stragglers:stragglers + num_errors], True, axis=1)
    noise = sigma * rng.standard_normal((len(idx_BxK), n, arrays["y"].shape[-1]))
    acc.add(step(scheme.variables, idx_BxK, weight_B, avail_BxN, adv_BxN,
                 noise.astype(np.float32)))
  totals = acc.totals
  groups = int(np.sum(weight_SxB))
  out = {"k": k, "byzantine": num_errors, "stragglers": stragglers, "workers": n,
         "sigma": sigma, "convention": convention}
  for name in ("clean", "attacked", "located"):
    out[f"{name}_top1"] = float(totals[name] / (groups * k))
  out["location_rate"] = float(totals["found"] / groups)
  return out



def _title(run: assembly.Run) -> str:
  c = run.config
  return (f"{run.dataset.name} {c.base_model.name} k={c.k} r={c.r} "
          f"{c.encoder.name}/{c.decoder.name} {c.loss}")


def _curve_rows(sweeps: Sequence[accuracy.Sweep]) -> list[dict]:
  curves = {s.name: s.expected(accuracy.RATES_GRID) for s in sweeps}
  agree = {s.name: s.expected(accuracy.RATES_GRID, "recon_top1") for s in sweeps}
  rows = []
  for i, f in enumerate(accuracy.RATES_GRID):
    row = {"f": float(f), "F": sweeps[0].base_accuracy}
    row.update({name: float(v[i]) for name, v in curves.items()})
    row.update({f"{name}_agreement": float(v[i]) for name, v in agree.items()})
    rows.append(row)
  return rows


def evaluate_workdir(workdir: str, *, out_dir: str | None = None, beyond: bool = False,
                     with_baselines: bool = False, names: Sequence[str] = baselines.NAMES,
                     batch_size: int = 0, grid: Sequence[float] = baselines.LAMBDAS,
                     replica: int | None = None) -> dict:
  """The sweep of one run's code (and baselines at its k, r); writes the eval/ reports.

  A replicated run: every replica's best code is swept (scheme ``code/replica<i>``; or only
  ``replica``), the patterns table is the first's, and ``replicas_spread`` gives the spread.
  """
  prepared = runs.load_run(workdir, restore=False)
  chosen = [replica] if replica is not None else runs.replica_indices(prepared)
  restored = [(f"code/replica{i}", runs.restore_code(prepared, i)) for i in chosen] or [
      ("code", runs.restore_code(prepared))]
  run = restored[0][1]
  out_dir = out_dir or os.path.join(workdir, EVAL_DIR)
  os.makedirs(out_dir, exist_ok=True)
  batch_size = batch_size or int(run.config.data.eval_batch_size)
  rates, title = run.rates(), _title(run)
  test_idx = np.arange(len(run.dataset.x_test))
  codes = [schemes.evaluate_scheme(schemes.code_scheme(r, name), r.test_arrays(), test_idx,
                                   r.k, r.r, batch_size=batch_size,
                                   info={"checkpoint_epoch": r.checkpoint_epoch})
           for name, r in restored]
  code = codes[0]
  reports.write_table(os.path.join(out_dir, "patterns"), code.pattern_rows(beyond),
                      f"Erasure patterns: {title} (test)",
                      f"F top-1 {code.base_accuracy:.4f}; checkpoint of epoch "
                      f"{run.checkpoint_epoch}; scored: (group, unavailable data slot) pairs")
  sweeps = list(codes)
  if with_baselines:
    sweeps += schemes.run_baselines(run, run.k, run.r, names, batch_size=batch_size, grid=grid)
    rows = [s.summary(rates) for s in sweeps]
    reports.write_table(os.path.join(out_dir, "baselines"), rows,
                        f"Baselines at equal workers: {title}",
                        "degraded_*: exactly-r patterns (non-systematic: every query); "
                        "agreement: top-1 equal to F's")
    reports.plot_baselines(rows, os.path.join(out_dir, "baselines.png"), rates, title)
  reports.write_table(os.path.join(out_dir, "unavailability"), _curve_rows(sweeps),
                      f"Expected client top-1 vs unavailability rate f: {title}")
  reports.plot_unavailability(sweeps, os.path.join(out_dir, "unavailability.png"), title)
  result = {"workdir": os.path.abspath(workdir), "title": title,
            "checkpoint_step": run.checkpoint_step, "checkpoint_epoch": run.checkpoint_epoch,
            "dataset": run.dataset.name,
            "base_model": run.config.base_model.name, "encoder": run.config.encoder.name,
            "decoder": run.config.decoder.name, "loss": run.config.loss,
            "parity_model": (assembly.parity_model_name(run.config) or ("",))[0],
            "schemes": [s.summary(rates) for s in sweeps]}
  if len(codes) > 1:
    summaries = [c.summary(rates) for c in codes]
    result["replicas_spread"] = {
        key: run_summary.spread([s[key] for s in summaries]) for key, value in summaries[0].items()
        if isinstance(value, float)}
  workdir_lib.write_json(os.path.join(out_dir, "eval.json"), result)
  return result


def comparison_rows(results: Sequence[dict]) -> list[dict]:
  rows = []
  for result in results:
    code = result["schemes"][0]
    row = {"workdir": result["workdir"], "dataset": result["dataset"],
           "base_model": result["base_model"], "k": code["k"], "r": code["r"],
           "encoder": result["encoder"], "decoder": result["decoder"], "loss": result["loss"],
           "parity_model": result["parity_model"], "F_top1": code["base_top1"],
           "degraded_top1": code["degraded_top1"], "agreement": code["agreement"]}
    row.update({key: v for key, v in code.items() if key.startswith("expected_top1@")})
    rows.append(row)
  return rows


def baseline_sweep(workdir: str, *, ks: Sequence[int], rs: Sequence[int],
                   names: Sequence[str], out_dir: str | None = None, batch_size: int = 0,
                   grid: Sequence[float] = baselines.LAMBDAS, val_limit: int = 0,
                   test_limit: int = 0, tail: float = 0.0,
                   curve_plots: Sequence[tuple[int, int]] = ()) -> list[dict]:
  """The training-free baselines over k × r on the run's F; writes baseline_sweep.*.

  ``tail`` > 0 skips the patterns of more unavailable workers than the largest reported rate
  makes likelier than ``tail`` (``patterns.tail_cut``): the expected accuracies are then exact
  to within ``omitted_mass`` (a column), at a fraction of the 2^N patterns. Every client curve
  goes to baseline_curves.csv; those of ``curve_plots`` (k, r) also to a PNG each.
  """
  run = runs.load_run(workdir, restore=False)
  out_dir = out_dir or os.path.join(workdir, EVAL_DIR)
  os.makedirs(out_dir, exist_ok=True)
  batch_size = batch_size or int(run.config.data.eval_batch_size)
  title = f"{run.dataset.name} {run.config.base_model.name}: training-free baselines"
  rows, curves = [], []
  for r in rs:
    for k in ks:
      cut = patterns.tail_cut(k + r, max(run.rates()), tail) if tail > 0 else None
      sweeps = schemes.run_baselines(run, k, r, names, batch_size=batch_size, grid=grid,
                                     val_limit=val_limit, test_limit=test_limit,
                                     max_unavailable=cut)
      rows += [sweep.summary(run.rates()) for sweep in sweeps]
      for sweep in sweeps:
        curves += [{"k": k, "r": r, "scheme": sweep.name, "systematic": sweep.systematic,
                    "f": float(f), "expected_top1": float(e), "omitted_mass": float(o)}
                   for f, e, o in zip(accuracy.RATES_GRID, sweep.expected(accuracy.RATES_GRID),
                                      sweep.omitted(accuracy.RATES_GRID))]
      if (k, r) in curve_plots:
        reports.plot_unavailability(sweeps,
                                    os.path.join(out_dir, f"unavailability_k{k}_r{r}.png"),
                                    f"{title}, k={k} r={r}")
      # Rewritten after every setting, so a long sweep's finished part is already on disk.
      reports.write_table(os.path.join(out_dir, "baseline_sweep"), rows, title,
                          "degraded_*: exactly-r patterns (non-systematic: every query with r "
                          "stragglers)")
      reports.write_table(os.path.join(out_dir, "baseline_curves"), curves, markdown=False)
      log.info("baseline sweep: k=%d r=%d done", k, r)
  reports.plot_sweep(rows, os.path.join(out_dir, "baseline_sweep.png"), "degraded_top1", title)
  return rows
