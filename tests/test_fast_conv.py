import functools

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcc_jax.coders import fast_conv


# Jitted: eager dispatch of the nine slices and the chunk loop would dominate the test time.
_conv = jax.jit(fast_conv.dilated_conv, static_argnums=3, static_argnames=("chunk", "xla_forward"))


def _xla_conv(x, kernel, bias, dilation):
  pad = ((dilation, dilation), (dilation, dilation))
  out = jax.lax.conv_general_dilated(x, kernel, (1, 1), pad, rhs_dilation=(dilation, dilation),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
  return out + bias


def _inputs(n=2, h=9, w=7, c_in=3, c_out=4, seed=0):
  kx, kk, kb = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(kx, (n, h, w, c_in)), jax.random.normal(kk, (3, 3, c_in, c_out)),
          jax.random.normal(kb, (c_out,)))


@pytest.mark.parametrize("dilation,chunk,xla_forward", [
    (1, None, False), (2, 2, False), (8, 1, False), (1, None, True), (2, 2, True), (8, 1, True)])
def test_values_and_gradients_equal_xla_conv(dilation, chunk, xla_forward):
  # 5 images: chunks of 2 leave a remainder (padded, then dropped). Dilation 8 on a 9×7 image:
  # most taps fall in the padding, which must read as zeros. xla_forward: only the kernel
  # gradient is ours (the hybrid).
  x, kernel, bias = _inputs(n=5)
  ours = functools.partial(fast_conv.dilated_conv, chunk=chunk, xla_forward=xla_forward)
  np.testing.assert_allclose(_conv(x, kernel, bias, dilation, chunk=chunk,
                                   xla_forward=xla_forward),
                             _xla_conv(x, kernel, bias, dilation), rtol=1e-5, atol=1e-5)
  cot = jax.random.normal(jax.random.key(9), x.shape[:3] + (kernel.shape[-1],))

  def grads(conv):
    loss = lambda *a: jnp.sum(cot * jnp.tanh(conv(*a, dilation)))
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, kernel, bias)

  for g_ours, g_ref in zip(grads(ours), grads(_xla_conv)):
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-4, atol=1e-4)


def test_one_pixel_matches_a_hand_sum():
  # out[n, y, x, o] = b[o] + Σ_{i,j,c} in[n, y+(i-1)d, x+(j-1)d, c] · K[i, j, c, o].
  x, kernel, bias = _inputs(n=1, h=6, w=6, c_in=2, c_out=3, seed=1)
  d, (py, px) = 2, (1, 4)
  xn, kn = np.asarray(x), np.asarray(kernel)
  expected = np.array(bias, dtype=np.float64)
  for i in range(3):
    for j in range(3):
      yy, xx = py + (i - 1) * d, px + (j - 1) * d
      if 0 <= yy < 6 and 0 <= xx < 6:
        expected += xn[0, yy, xx] @ kn[i, j]
  np.testing.assert_allclose(_conv(x, kernel, bias, d)[0, py, px], expected,
                             rtol=1e-5, atol=1e-5)


def test_without_bias():
  x, kernel, bias = _inputs()
  np.testing.assert_allclose(_conv(x, kernel, None, 2),
                             _xla_conv(x, kernel, bias, 2) - bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size,dilation", [(3, 4), (1, 1)])
def test_matmul_conv_module_is_a_drop_in_for_linen_conv(size, dilation):
  pad = dilation * (size // 2)
  ref = linen.Conv(5, (size, size), kernel_dilation=(dilation, dilation),
                   padding=((pad, pad), (pad, pad)), bias_init=linen.initializers.normal(1.0))
  ours = fast_conv.MatmulConv(5, size, dilation, bias_init=linen.initializers.normal(1.0),
                              chunk=1)
  x = jax.random.normal(jax.random.key(2), (3, 8, 8, 3))
  variables = jax.jit(ref.init)(jax.random.key(3), x)
  assert jax.tree.map(jnp.shape, jax.eval_shape(ours.init, jax.random.key(3), x)) == jax.tree.map(
      jnp.shape, variables)
  np.testing.assert_allclose(jax.jit(ours.apply)(variables, x), jax.jit(ref.apply)(variables, x),
                             rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_named():
  x, kernel, bias = _inputs()
  with pytest.raises(ValueError, match="3×3"):
    fast_conv.dilated_conv(x, kernel[:1], bias, 1)
  with pytest.raises(ValueError, match="dilation"):
    fast_conv.dilated_conv(x, kernel, bias, 0)
  with pytest.raises(ValueError, match="input channels"):
    fast_conv.dilated_conv(x[..., :2], kernel, bias, 1)
  with pytest.raises(ValueError, match="chunk"):
    fast_conv.dilated_conv(x, kernel, bias, 1, chunk=0)


@pytest.mark.parametrize("impl", ["matmul", "hybrid"])
def test_conv_encoder_impl_equals_xla_impl(impl):
  from lcc_jax import registry
  kwargs = dict(k=2, r=1, input_shape=(12, 12, 1), num_classes=10)
  xla = registry.build("encoder", "conv", impl="xla", **kwargs)
  ours = registry.build("encoder", "conv", impl=impl, **kwargs)
  variables = xla.init(jax.random.PRNGKey(0))
  same_tree = jax.tree.map(lambda a, b: a.shape == b.shape, variables,
                           ours.init(jax.random.PRNGKey(0)))
  assert all(jax.tree.leaves(same_tree))
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 12, 12, 1))
  np.testing.assert_allclose(ours.apply(variables, x)[0], xla.apply(variables, x)[0],
                             rtol=1e-4, atol=1e-5)


def test_auto_impl_is_hybrid_on_cpu_and_xla_on_accelerators(monkeypatch):
  from lcc_jax.coders import conv
  assert conv.resolve_impl("auto") == "hybrid"  # conftest pins the CPU backend
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert conv.resolve_impl("auto") == "xla"
  assert conv.resolve_impl("matmul") == "matmul"
