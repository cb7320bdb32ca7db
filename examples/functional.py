"""Example 2: a code built from pure functions, trained without train.py.

  python examples/functional.py

F, the encoder and the decoder are ``ModelFns`` (pure ``init``/``apply`` pairs); the forward
pass over every erasure pattern is one jitted function, differentiated with ``jax.grad`` and
stepped with optax. Nothing here touches a workdir, a config or the registry.
"""
import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lcc_jax

K, R, D, C = 2, 1, 8, 4  # data inputs per group, parities, input size, outputs of F


def make_code() -> lcc_jax.Code:
  # F: a fixed random two-layer network; no parameters to train.
  rng = np.random.default_rng(0)
  w1_HxD, w2_CxH = rng.normal(size=(32, D)) / np.sqrt(D), rng.normal(size=(C, 32)) / np.sqrt(32)
  base = lcc_jax.from_function(lambda x_BxD: jnp.tanh(x_BxD @ w1_HxD.T) @ w2_CxH.T)
  encoder = lcc_jax.from_linen(Encoder(), jnp.zeros((1, K, D)))
  decoder = lcc_jax.from_linen(Decoder(), jnp.zeros((1, K + R, C)), jnp.ones(K + R, bool))
  return lcc_jax.Code(encoder=encoder, decoder=decoder, base_model=base)


class Encoder(linen.Module):
  @linen.compact
  def __call__(self, x_BxKxD, train=False):
    del train  # from_linen passes it; nothing here depends on it
    b = x_BxKxD.shape[0]
    return linen.Dense(R * D)(x_BxKxD.reshape(b, K * D)).reshape(b, R, D)


class Decoder(linen.Module):
  @linen.compact
  def __call__(self, outs_BxNxC, avail_N, train=False):
    del avail_N, train  # unavailable outputs arrive as zeros
    b = outs_BxNxC.shape[0]
    h = linen.relu(linen.Dense(64)(outs_BxNxC.reshape(b, -1)))
    return linen.Dense(K * C)(h).reshape(b, K, C)


def main(steps: int = 300, batch: int = 64) -> tuple[float, float]:
  code = make_code()
  unavail_PxN = jnp.asarray(lcc_jax.patterns(K, R))  # every pattern of R unavailable outputs
  key_enc, key_dec, key_data = jax.random.split(jax.random.PRNGKey(0), 3)
  params = {"encoder": code.encoder.init(key_enc), "decoder": code.decoder.init(key_dec)}

  def loss_fn(params, x_BxKxD):
    variables = {**params, "base_model": {}}
    y_BxKxC, _ = lcc_jax.coding.apply_per_example(code.base_model, {}, x_BxKxD)
    # jax.vmap over the patterns happens inside forward: P decodes, one encode.
    recon_PxBxKxC, _, _ = lcc_jax.forward(code, variables, x_BxKxD, y_BxKxC, unavail_PxN)
    loss, _ = lcc_jax.reconstruction_loss("mse", recon_PxBxKxC, y_BxKxC,
                                          jnp.zeros(y_BxKxC.shape[:2], jnp.int32), unavail_PxN,
                                          jnp.ones(x_BxKxD.shape[0]))
    return loss

  tx = optax.adam(1e-3)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, key):
    x_BxKxD = jax.random.normal(key, (batch, K, D))
    loss, grads = jax.value_and_grad(loss_fn)(params, x_BxKxD)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for i in range(steps):
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key_data, i))
    losses.append(float(loss))
  first, last = np.mean(losses[:10]), np.mean(losses[-10:])
  print(f"reconstruction MSE over {unavail_PxN.shape[0]} patterns: {first:.3f} → {last:.3f} "
        f"after {steps} steps")
  return first, last


if __name__ == "__main__":
  main()
