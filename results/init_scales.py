"""How much the learned coders scale their input at initialisation (docs/training.md,
"Learning speed"): std(output) / std(input) on standard-normal inputs, upstream's init against
PyTorch's default.

  PYTHONPATH=. .venv/bin/python results/init_scales.py
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lcc_jax import registry

CASES = ((2, 1, (8, 8, 1)), (4, 2, (8, 8, 1)), (2, 1, (28, 28, 1)))  # digits, Fashion-MNIST
NUM_CLASSES = 10


def ratios(k, r, input_shape, upstream_init, key=jax.random.PRNGKey(0)):
  """(decoder, encoder) output-to-input std ratios for one code at initialisation."""
  decoder = registry.build("decoder", "mlp", k=k, r=r, num_classes=NUM_CLASSES,
                           upstream_init=upstream_init)
  encoder = registry.build("encoder", "mlp", k=k, r=r, input_shape=input_shape,
                           upstream_init=upstream_init)
  outs_BxNxC = jax.random.normal(key, (256, k + r, NUM_CLASSES))
  recon, _ = decoder.apply(decoder.init(key), outs_BxNxC, jnp.ones(k + r, bool))
  x_BxKxI = jax.random.normal(key, (256, k) + input_shape)
  parity, _ = encoder.apply(encoder.init(key), x_BxKxI)
  return float(recon.std() / outs_BxNxC.std()), float(parity.std() / x_BxKxI.std())


def main():
  print("| k | r | input | init | decoder out/in std | encoder out/in std |\n|---|---|---|---|---|---|")
  for k, r, shape in CASES:
    for upstream_init in (True, False):
      dec, enc = ratios(k, r, shape, upstream_init)
      init = "upstream N(0, 0.01)" if upstream_init else "PyTorch default"
      print(f"| {k} | {r} | {shape[0]}×{shape[1]} | {init} | {dec:.1e} | {enc:.1e} |")


if __name__ == "__main__":
  main()
