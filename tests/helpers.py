"""Tiny shared set-ups for engine tests."""
from absl import flags
import jax
from ml_collections import config_flags

from lcc_jax import coding, registry


def tiny_code(k=2, r=1, input_shape=(4, 4, 1), num_classes=5, hidden=(8,)):
  """A tiny MLP code around a tiny MLP F, with initialised variables."""
  code = coding.Code(
      encoder=registry.build("encoder", "mlp", k=k, r=r, input_shape=input_shape),
      decoder=registry.build("decoder", "mlp", k=k, r=r, num_classes=num_classes),
      base_model=registry.build("base_model", "base-mlp", input_shape=input_shape,
                                num_classes=num_classes, hidden=hidden))
  keys = jax.random.split(jax.random.key(0), 3)
  variables = {"encoder": code.encoder.init(keys[0]), "decoder": code.decoder.init(keys[1]),
               "base_model": code.base_model.init(keys[2])}
  # Upstream's N(0, 0.01) init makes outputs tiny; scale F up so logits are informative.
  variables["base_model"] = jax.tree.map(lambda w: w * 30.0, variables["base_model"])
  return code, variables


def tiny_data(code, variables, num=24, k=2, input_shape=(4, 4, 1), num_classes=5, seed=1):
  x = jax.random.normal(jax.random.key(seed), (num,) + input_shape)
  y, _ = code.base_model.apply(variables["base_model"], x)
  labels = jax.random.randint(jax.random.key(seed + 1), (num,), 0, num_classes)
  return {"x": x, "y": y, "labels": labels}


def parse_config_flag(argv: list[str]) -> flags.FlagValues:
  """``argv`` parsed as train.py parses its ``--config`` flag, into fresh flag values."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=values, sys_argv=argv)
  values(argv)
  return values


def sigterm_at_chunk(monkeypatch, chunk_number: int):
  """Makes the training loop's ``chunk_number``-th jitted chunk call send this process SIGTERM
  (the loop sees it after dispatching that chunk); returns the unpatched
  ``steps.jit_train_chunk`` to put back before resuming."""
  import os  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  from lcc_jax import steps  # pylint: disable=g-import-not-at-top
  jit_train_chunk, calls = steps.jit_train_chunk, []

  def signalling(*args, **kwargs):
    chunk = jit_train_chunk(*args, **kwargs)

    def call(*a, **kw):
      calls.append(1)
      if len(calls) == chunk_number:
        os.kill(os.getpid(), signal.SIGTERM)
      return chunk(*a, **kw)

    return call

  monkeypatch.setattr(steps, "jit_train_chunk", signalling)
  return jit_train_chunk
