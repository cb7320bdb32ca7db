"""Our side of the benchmarks: real lcc_jax codes, steps and data on the device (jax only)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lcc_jax import coding, erasure, optim, registry, steps

MNIST_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def build_encoder(encoder: str, k: int, r: int, input_shape=MNIST_SHAPE, conv_impl="matmul"):
  """The registered encoder; "conv" with ``conv_impl`` one of coders/conv.py's IMPLS."""
  kwargs = {"impl": conv_impl} if encoder == "conv" else {}
  return registry.build("encoder", encoder, k=k, r=r, input_shape=input_shape, **kwargs)


def build_code(encoder: str, k: int, r: int, input_shape=MNIST_SHAPE, conv_impl="matmul",
               seed=0):
  """(code, variables): encoder + MLP decoder around upstream's base-mlp F."""
  code = coding.Code(
      encoder=build_encoder(encoder, k, r, input_shape, conv_impl),
      decoder=registry.build("decoder", "mlp", k=k, r=r, num_classes=NUM_CLASSES),
      base_model=registry.build("base_model", "base-mlp", input_shape=input_shape,
                                num_classes=NUM_CLASSES))
  keys = jax.random.split(jax.random.key(seed), 3)
  variables = {"encoder": code.encoder.init(keys[0]), "decoder": code.decoder.init(keys[1]),
               "base_model": code.base_model.init(keys[2])}
  return code, variables


def synthetic_data(code, variables, num: int, input_shape=MNIST_SHAPE, seed=1):
  """MNIST-shaped images in [0, 1], F's outputs on them and random labels, on the device."""
  x = jax.random.uniform(jax.random.key(seed), (num,) + tuple(input_shape))
  y = jax.jit(lambda v, x: code.base_model.apply(v, x)[0])(variables["base_model"], x)
  labels = jax.random.randint(jax.random.key(seed + 1), (num,), 0, NUM_CLASSES)
  return {"x": x, "y": y, "labels": labels}


def batch_indices(num: int, batch: int, k: int, count: int, seed=2) -> list[np.ndarray]:
  """``count`` random (batch, k) index arrays, like the random grouping of a training epoch."""
  rng = np.random.default_rng(seed)
  return [rng.permutation(num)[:batch * k].reshape(batch, k).astype(np.int32)
          for _ in range(count)]


class TrainLoop:
  """Runs the real jitted train step (state donated) on a rotating set of batches."""

  def __init__(self, encoder: str, k: int, r: int, batch: int, unavail_PxN=None,
               conv_impl="matmul", num=4096, loss="kl", input_shape=MNIST_SHAPE,
               precision="highest"):
    self.code, variables = build_code(encoder, k, r, input_shape, conv_impl=conv_impl)
    self.data = synthetic_data(self.code, variables, num, input_shape)
    self.tx = optim.make_tx("adam", lr=1e-3, weight_decay=1e-5)
    self.state, self.frozen = steps.init_state(variables, ("encoder", "decoder"), self.tx,
                                               jax.random.key(3))
    self.unavail = jnp.asarray(erasure.patterns(k, r) if unavail_PxN is None else unavail_PxN)
    self.idx = [jnp.asarray(i) for i in batch_indices(num, batch, k, 8)]
    self.weight = jnp.ones((batch,), jnp.float32)
    self.step = steps.jit_train_step(self.code, self.tx, loss, precision_name=precision)
    self.calls = 0

  def args(self):
    return (self.state, self.frozen, self.data, self.idx[0], self.weight, self.unavail)

  def cost(self) -> dict:
    """XLA's own count of the compiled step's flops and bytes accessed."""
    analysis = self.step.lower(*self.args()).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
      analysis = analysis[0]
    return {"flops": float(analysis.get("flops", 0.0)),
            "bytes": float(analysis.get("bytes accessed", 0.0))}

  def trainable_size(self) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(self.state.params)))

  def __call__(self, n: int) -> None:
    for _ in range(n):
      idx = self.idx[self.calls % len(self.idx)]
      self.state, _ = self.step(self.state, self.frozen, self.data, idx, self.weight,
                                self.unavail)
      self.calls += 1
    jax.block_until_ready(self.state)
