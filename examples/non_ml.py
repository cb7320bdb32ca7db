"""Example 3: coded computation for a function F that is not a neural network.

  PYTHONPATH=examples python examples/non_ml.py [WORKDIR]

F maps a vector of 8 readings to 4 statistics (soft maximum, soft minimum, energy, mean of
|x|), a fixed nonlinear function with no parameters. The code (a learned MLP encoder and
decoder) learns to recover F(x_j) of a missing worker from the k − 1 others and a parity,
with the MSE loss. ``moments`` is named by import path, ``non_ml:moments``, as both F
(base model ``function``) and the labelling function of the ``function`` dataset, and the run
goes through the driver's Python entry point, ``lcc_jax.train_and_evaluate``.
"""
import sys
import tempfile

import jax
import jax.numpy as jnp

import lcc_jax
from configs import default


def moments(x_D: jax.Array) -> jax.Array:
  """F on one example (lcc_jax vmaps it over the batch): (D,) -> (4,)."""
  return jnp.stack([jax.nn.logsumexp(x_D), -jax.nn.logsumexp(-x_D), jnp.mean(x_D ** 2),
                    jnp.mean(jnp.abs(x_D))])


def config(num_epochs: int = 20, num_train: int = 4000):
  c = default.base()
  c.k, c.r = 3, 1
  c.data.name = "function"
  c.data.fn = "non_ml:moments"
  c.data.input_dim, c.data.num_outputs = 8, 4
  c.data.num_train, c.data.num_test = num_train, num_train // 4
  c.data.val_size = num_train // 10
  c.data.batch_size, c.data.eval_batch_size = 32, 100
  c.base_model.name = "function"
  c.base_model.kwargs = {"fn": "non_ml:moments"}
  c.loss = "mse"  # regression: squared error to F's outputs
  c.num_epochs = num_epochs
  return c


def main(workdir: str, **kwargs) -> dict:
  summary = lcc_jax.train_and_evaluate(config(**kwargs), workdir, progress=False)
  test = summary["test"]
  print(f"k=3 r=1 code for F = moments: test MSE of the reconstructions {test['loss']:.4f}, "
        f"argmax agreement {test['reconstruction_top1']:.3f}")
  return summary


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="non_ml_"))
