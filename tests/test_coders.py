"""Every registered encoder/decoder: parameter counts (docs/upstream.md §Learned coders), jit/vmap,
shapes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcc_jax import erasure, nn, registry

# docs/upstream.md §MLP encoder (r = 1): per-channel plane size D → {k: params}.
MLP_ENCODER_PARAMS = {
    784: {2: 3_690_288, 3: 7_379_008, 4: 12_297_040, 5: 18_444_384},
    1024: {2: 6_294_528, 3: 12_587_008, 4: 20_976_640, 5: 31_463_424},
}
CONV_ENCODER_PARAMS = {2: 73_001, 3: 164_041, 4: 291_441, 5: 455_201}  # upstream.md §Conv encoder
MLP_DECODER_PARAMS = {(2, 10): 1_970, (3, 10): 3_800, (4, 10): 6_230, (5, 10): 9_260,
                      (2, 100): 190_700}  # upstream.md §MLP decoder


def _key(seed=0):
  """A PRNG key whose init compiles fast on CPU (threefry takes seconds per shape here)."""
  return jax.random.key(seed, impl="unsafe_rbg")


def _normal(shape, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _variables(fns, seed=0):
  """Variables of init's shapes filled with small numpy values (no PRNG compile)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(0.1 * rng.normal(size=a.shape), a.dtype),
                      jax.eval_shape(fns.init, _key()))


def _shape_params(fns):
  """Parameter count from shapes only (no weights are materialised)."""
  return nn.count_params(jax.eval_shape(fns.init, _key()))


@pytest.mark.parametrize("d", sorted(MLP_ENCODER_PARAMS))
@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_mlp_encoder_param_counts(d, k):
  side = int(d**0.5)
  fns = registry.build("encoder", "mlp", k=k, r=1, input_shape=(side, side, 1), num_classes=10)
  assert _shape_params(fns) == MLP_ENCODER_PARAMS[d][k]
  vector = registry.build("encoder", "mlp", k=k, r=1, input_shape=(d,), num_classes=10)
  assert _shape_params(vector) == MLP_ENCODER_PARAMS[d][k]


@pytest.mark.parametrize("k", sorted(CONV_ENCODER_PARAMS))
def test_conv_encoder_param_counts(k):
  fns = registry.build("encoder", "conv", k=k, r=1, input_shape=(28, 28, 1), num_classes=10)
  assert _shape_params(fns) == CONV_ENCODER_PARAMS[k]


@pytest.mark.parametrize("k,c", sorted(MLP_DECODER_PARAMS))
def test_mlp_decoder_param_counts(k, c):
  fns = registry.build("decoder", "mlp", k=k, r=1, num_classes=c)
  assert _shape_params(fns) == MLP_DECODER_PARAMS[k, c]


def test_conv_encoder_layers_and_init():
  """Upstream layers (kernel, dilation → SAME size) and xavier-uniform(gain √2) init, bias 0."""
  fns = registry.build("encoder", "conv", k=2, r=1, input_shape=(4, 4, 1), num_classes=10)
  params = jax.eval_shape(fns.init, _key())["params"]
  kernels = [params[f"Conv_{i}"]["kernel"].shape for i in range(7)]
  assert kernels == [(3, 3, 2, 40)] + [(3, 3, 40, 40)] * 5 + [(1, 1, 40, 1)]
  # Init values with a narrower encoder (c = 4·k) to keep the test fast.
  small = dict(k=2, r=1, input_shape=(4, 4, 1), intermediate_channels_multiplier=4)
  params = registry.build("encoder", "conv", **small).init(_key())["params"]
  assert all(float(jnp.abs(params[f"Conv_{i}"]["bias"]).max()) == 0.0 for i in range(7))
  # xavier_uniform(gain √2): U(±√(6·2/(fan_in + fan_out))) with fans counting the 3×3 window.
  bound = np.sqrt(12.0 / (8 * 9 + 8 * 9))
  assert 0.9 * bound < float(jnp.abs(params["Conv_1"]["kernel"]).max()) <= bound
  torch_like = registry.build("encoder", "conv", upstream_init=False, **small)
  bias = torch_like.init(_key())["params"]["Conv_1"]["bias"]
  assert 0 < float(jnp.abs(bias).max()) <= 1 / np.sqrt(8 * 9)


def test_conv_encoder_receptive_field():
  """A single pixel influences exactly the 35×35 window of upstream's dilations."""
  fns = registry.build("encoder", "conv", k=1, r=1, input_shape=(40, 40, 1),
                       intermediate_channels_multiplier=2)
  # Positive weights keep every ReLU open, so the gradient is non-zero exactly on the window.
  variables = jax.tree.map(jnp.abs, _variables(fns))
  grad = jax.grad(lambda x: fns.apply(variables, x)[0][0, 0, 20, 20, 0])(
      jnp.ones((1, 1, 40, 40, 1)))
  rows, cols = np.nonzero(np.asarray(grad[0, 0, :, :, 0]))
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 37, 3, 37)


def test_mlp_upstream_init_flag():
  default = registry.build("encoder", "mlp", k=2, r=1, input_shape=(4,))
  torch_like = registry.build("encoder", "mlp", k=2, r=1, input_shape=(4,), upstream_init=False)
  b_default = default.init(_key())["params"]["_Dense_0"]["Dense_0"]["bias"]
  b_torch = torch_like.init(_key())["params"]["_Dense_0"]["Dense_0"]["bias"]
  assert float(jnp.abs(b_default).max()) == 0.0
  assert 0 < float(jnp.abs(b_torch).max()) <= 1 / np.sqrt(8)


# name → the r values it supports.
ENCODERS = {"mlp": (1, 2), "conv": (1, 2), "sum": (1,), "concat": (1,), "mds": (1, 2),
            "berrut": (1, 2), "letcc": (1, 2)}
DECODERS = {"mlp": (1, 2), "sub": (1,), "mds": (1, 2), "berrut": (1, 2), "letcc": (1, 2)}


def test_every_registered_name_is_covered():
  assert sorted(ENCODERS) == registry.names("encoder")
  assert sorted(DECODERS) == registry.names("decoder")


SMALL = {"conv": {"intermediate_channels_multiplier": 2}}


@pytest.mark.parametrize("name,r,input_shape",
                         [(n, r, (4, 4, 3)) for n, rs in ENCODERS.items() for r in rs]
                         # vector inputs: the encoders that reshape them differently
                         + [(n, 1, (16,)) for n in ("mlp", "conv", "sum", "concat")])
def test_encoder_jit_vmap_shapes(name, r, input_shape):
  k, b = 2, 3
  fns = registry.build("encoder", name, k=k, r=r, input_shape=input_shape, num_classes=5,
                       **SMALL.get(name, {}))
  variables = _variables(fns)
  x = _normal((b, k) + input_shape)

  @jax.jit
  def run(v, x):
    out, updates = fns.apply(v, x, train=True)
    # vmap over an extra leading axis must give the same as the batched call.
    return out, updates, jax.vmap(lambda xi: fns.apply(v, xi)[0])(x[:, None])

  out, updates, per_group = run(variables, x)
  assert out.shape == (b, r) + input_shape and out.dtype == jnp.float32 and updates == {}
  np.testing.assert_allclose(per_group[:, 0], out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,r", [(n, r) for n, rs in DECODERS.items() for r in rs])
def test_decoder_jit_vmap_shapes(name, r):
  k, b, c = 3, 2, 5
  fns = registry.build("decoder", name, k=k, r=r, num_classes=c)
  variables = _variables(fns)
  # Beyond r (down to nothing available) fixed decoders must still give finite best efforts.
  unavail_PxN = np.concatenate([erasure.patterns(k, r, "at_most"),
                                erasure.patterns(k, r, "beyond")])
  outs = _normal((b, k + r, c))

  @jax.jit
  def all_patterns(v, outs):
    def one(unavail_N):
      avail_N = ~unavail_N
      return fns.apply(v, jnp.where(avail_N[None, :, None], outs, 0.0), avail_N)[0]
    return jax.vmap(one)(unavail_PxN)

  recon = all_patterns(variables, outs)
  assert recon.shape == (len(unavail_PxN), b, k, c)
  assert bool(jnp.all(jnp.isfinite(recon)))
  if fns.parity_target is not None:
    assert fns.parity_target(outs[:, :k]).shape == (b, r, c)
  if name != "mlp":  # fixed decoders leave available data outputs untouched
    avail_PxK = ~unavail_PxN[:, :k]
    kept = np.where(avail_PxK[:, None, :, None], np.asarray(recon), 0.0)
    want = np.where(avail_PxK[:, None, :, None], np.asarray(outs[None, :, :k]), 0.0)
    np.testing.assert_array_equal(kept, want)


@pytest.mark.parametrize("kind,name", [("encoder", "sum"), ("decoder", "sub"),
                                       ("encoder", "concat")])
def test_r1_only_codes_point_to_mds(kind, name):
  kwargs = dict(k=2, r=2, num_classes=10)
  if kind == "encoder":
    kwargs["input_shape"] = (4, 4, 1)
  with pytest.raises(ValueError, match="'mds'"):
    registry.build(kind, name, **kwargs)


def test_bad_arguments_fail_clearly():
  with pytest.raises(ValueError, match="channel_mode"):
    registry.build("encoder", "sum", k=2, r=1, input_shape=(4, 4, 3), channel_mode="rgb")
  with pytest.raises(ValueError, match="divisible"):
    registry.build("encoder", "concat", k=4, r=1, input_shape=(6, 5, 1))
  with pytest.raises(ValueError, match="impl"):
    registry.build("encoder", "conv", k=2, r=1, input_shape=(4, 4, 1), impl="cudnn")
  with pytest.raises(ValueError, match="square"):
    registry.build("encoder", "conv", k=2, r=1, input_shape=(15,))
  with pytest.raises(ValueError, match="generator"):
    registry.build("encoder", "mds", k=2, r=1, input_shape=(4,), generator="reed-solomon")
