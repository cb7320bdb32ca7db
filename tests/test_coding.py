import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcc_jax import coding, erasure
from tests.helpers import tiny_code


def _inputs(k, r, b=3, input_shape=(4, 4, 1)):
  code, variables = tiny_code(k, r)
  x_BxKxI = jax.random.normal(jax.random.key(7), (b, k) + input_shape)
  y_BxKxC, _ = coding.apply_per_example(code.base_model, variables["base_model"], x_BxKxI)
  return code, variables, x_BxKxI, y_BxKxC


@pytest.mark.parametrize("k,r", [(2, 1), (3, 2), (4, 3)])
def test_vmapped_decode_equals_python_loop(k, r):
  code, variables, x, y = _inputs(k, r)
  unavail_PxN = erasure.patterns(k, r)
  recon_PxBxKxC, pout_BxRxC, _ = jax.jit(coding.forward, static_argnums=0)(
      code, variables, x, y, unavail_PxN)
  outs_BxNxC = jnp.concatenate([y, pout_BxRxC], axis=1)
  for p, unavail_N in enumerate(unavail_PxN):
    masked = np.array(outs_BxNxC)
    masked[:, unavail_N] = 0.0
    expected, _ = code.decoder.apply(variables["decoder"], jnp.asarray(masked), ~unavail_N)
    np.testing.assert_allclose(recon_PxBxKxC[p], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k,r", [(2, 1), (4, 2)])
def test_chunked_lax_map_equals_vmap(k, r):
  code, variables, x, y = _inputs(k, r)
  unavail_PxN = erasure.patterns(k, r)
  full, _, _ = coding.forward(code, variables, x, y, unavail_PxN)
  chunked, _, _ = coding.forward(code, variables, x, y, unavail_PxN, chunk=4)
  np.testing.assert_allclose(full, chunked, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("k,r", [(2, 1), (3, 2)])
def test_values_in_unavailable_slots_are_ignored(k, r):
  code, variables, x, y = _inputs(k, r)
  unavail_PxN = erasure.patterns(k, r)
  _, pout, _ = coding.forward(code, variables, x, y, unavail_PxN)
  outs = jnp.concatenate([y, pout], axis=1)
  clean = coding.decode_all(code.decoder, variables["decoder"], outs, unavail_PxN)
  for p, unavail_N in enumerate(unavail_PxN):
    noisy = outs + 1e3 * unavail_N[None, :, None] * jax.random.normal(jax.random.key(p),
                                                                      outs.shape)
    recon = coding.decode_all(code.decoder, variables["decoder"], noisy, unavail_PxN[p:p + 1])
    np.testing.assert_array_equal(recon[0], clean[p])


def test_encoder_and_f_run_once_not_per_pattern():
  calls = {"encoder": 0, "base_model": 0}
  code, variables, x, y = _inputs(4, 2)

  def counting(fns, name):
    def apply(v, *inputs, train=False):
      calls[name] += 1
      return fns.apply(v, *inputs, train=train)
    return fns._replace(apply=apply)

  code = code._replace(encoder=counting(code.encoder, "encoder"),
                       base_model=counting(code.base_model, "base_model"))
  recon, _, _ = coding.forward(code, variables, x, y, erasure.patterns(4, 2))
  assert recon.shape == (14, 3, 4, 5)
  assert calls == {"encoder": 1, "base_model": 1}
