"""Our jitted train step against upstream's PyTorch step (bench/torch_reference.py).

Same model, shapes, optimizer, loss, r = 1 patterns (upstream's k scenarios), synthetic data,
same thread count; the implementations alternate within one process (common.alternate).
"""
from __future__ import annotations

from lcc_jax.coders import conv

from bench import cases, common

# (name, encoder, k, batch of groups): upstream's base-mlp configurations.
CASES = (("mlp_k2", "mlp", 2, 64), ("conv_k2", "conv", 2, 64), ("mlp_k4", "mlp", 4, 32))
NUM = 4096  # synthetic examples the batches are drawn from


def _plan(name: str, quick: bool) -> tuple[int, int]:
  """(repeats, steps per repeat): conv steps take ~0.5 s on one core, MLP ones ~30 ms."""
  if name.startswith("conv"):
    return (3, 1) if quick else (9, 2)
  return (3, 4) if quick else (11, 10)


def torch_device(torch_module) -> str:
  """PyTorch runs where JAX does: on the GPU when JAX's backend is one and torch sees it."""
  import jax
  if jax.default_backend() == "gpu" and torch_module.torch.cuda.is_available():
    return "cuda"
  return "cpu"


def _compiled(torch_module, encoder, k, indices, device):
  """The PyTorch step with torch.compile'd modules, or None where compiling fails here."""
  try:
    loop = torch_module.TorchLoop(encoder, k, indices, num=NUM, device=device, compiled=True)
    loop(2)  # compiles forward and backward
    return loop
  except Exception as e:  # pylint: disable=broad-except  (inductor needs a working toolchain)
    print(f"[bench] torch.compile failed for {encoder} k={k}: {type(e).__name__}: "
          f"{str(e).splitlines()[0] if str(e) else ''}")
    return None


def run(quick: bool, torch_module, both_convs: bool) -> tuple[list[dict], dict]:
  """Rows for the table and the headline ratios (None where torch is missing).

  The conv encoder runs with the implementation ``impl="auto"`` picks (hybrid on CPUs, XLA's
  convolution, i.e. cuDNN, elsewhere); ``both_convs`` times the other implementations too.
  """
  conv_impl = conv.resolve_impl("auto")
  rows, headline = [], {}
  device = torch_device(torch_module) if torch_module is not None else None
  for name, encoder, k, batch in CASES:
    runs = {"lcc_jax": cases.TrainLoop(encoder, k, 1, batch, conv_impl=conv_impl, num=NUM)}
    if encoder == "conv" and both_convs:
      for other in sorted(set(conv.IMPLS) - {"auto", conv_impl}):
        runs[f"lcc_jax ({other} conv)"] = cases.TrainLoop(encoder, k, 1, batch, conv_impl=other,
                                                          num=NUM)
    if torch_module is not None:
      indices = cases.batch_indices(NUM, batch, k, 8)
      runs["pytorch"] = torch_module.TorchLoop(encoder, k, indices, num=NUM, device=device)
      compiled = _compiled(torch_module, encoder, k, indices, device)
      if compiled is not None:
        runs["pytorch (torch.compile)"] = compiled
    repeats, calls = _plan(name, quick)
    timings = common.alternate(runs, repeats, calls, warmup=1)
    ours = timings["lcc_jax"]
    for impl, timing in timings.items():
      row = {"bench": f"train step vs PyTorch: {name} (B={batch})", "impl": impl,
             **timing.as_dict()}
      if "pytorch" in timings:
        row["ratio"] = timings["pytorch"].median / timing.median
        row["ratio_label"] = "PyTorch time / this"
      rows.append(row)
    headline[f"speedup_vs_torch_{name}"] = (
        timings["pytorch"].median / ours.median if "pytorch" in timings else None)
    headline[f"cpu_speedup_vs_torch_{name}"] = (
        timings["pytorch"].cpu_median / ours.cpu_median if "pytorch" in timings else None)
    headline[f"step_s_{name}"] = ours.median
    headline[f"speedup_vs_torch_compile_{name}"] = (
        timings["pytorch (torch.compile)"].median / ours.median
        if "pytorch (torch.compile)" in timings else None)
  return rows, headline
