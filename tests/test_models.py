"""Base models F / F_P: parameter counts, jit/vmap, batch norm semantics, initialisation."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from lcc_jax import nn, registry
from lcc_jax.models import layers

KEY = jax.random.key(0)


@pytest.fixture(autouse=True, scope="module")
def _fast_compile():
  """Compile with few XLA passes (as flax's own train tests do): the tests here are
  dominated by compiling ResNet/VGG inits on CPU, not by running them."""
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


def _build(name, input_shape, num_classes=10, **kw):
  return registry.build("base_model", name, input_shape=input_shape, num_classes=num_classes,
                        **kw)


def _abstract(fns):
  return jax.eval_shape(fns.init, KEY)


@functools.cache
def _big(name, input_shape, num_classes, **kwargs):
  """(fns, abstract variables) of a model too big to initialise in a test."""
  fns = _build(name, input_shape, num_classes, **kwargs)
  return fns, _abstract(fns)


# Expected counts: docs/upstream.md §Base models where it states them; the rest by hand:
# ResNet stem conv1 has 64·C·9 weights, so C=1 and C=3 differ by 2·64·9 = 1,152.
# lenet5 28×28: conv 1·20·25+20 + 20·20·25+20 = 10,540; fc1 (20·4·4)·1000+1000 = 321,000;
#   fc2 1000·10+10 = 10,010 → 341,550. 161×101, 30 classes: fc1 16280·1000+1000 = 16,281,000,
#   fc2 30,030 → 16,321,570.
# vgg11 161×101×1, 30 classes: convs (with bias) 9,219,328; BN 2·(64+128+256+256+4·512) =
#   5,504; fc1 7680·512+512 = 3,932,672; fc2 512·30+30 = 15,390 → 13,172,894.
@pytest.mark.parametrize("name, input_shape, num_classes, kwargs, expected", [
    ("base-mlp", (28, 28, 1), 10, {}, 178_110),
    ("base-mlp", (784,), 10, {}, 178_110),
    ("logistic", (28, 28, 1), 10, {}, 7_850),
    ("resnet18", (32, 32, 3), 10, {}, 11_173_962),
    ("resnet18", (28, 28, 1), 10, {}, 2_776_522),
    ("resnet18", (28, 28, 1), 10, {"variant": "cifar"}, 11_173_962 - 1_152),
    ("resnet18", (32, 32, 3), 10, {"variant": "mnist"}, 2_776_522 + 1_152),
    ("resnet152", (32, 32, 3), 100, {}, 57_930_148),
    ("lenet5", (28, 28, 1), 10, {}, 341_550),
    ("lenet5", (161, 101, 1), 30, {}, 16_321_570),
    ("vgg11", (161, 101, 1), 30, {}, 13_172_894),
])
def test_param_counts(name, input_shape, num_classes, kwargs, expected):
  assert nn.count_params(_big(name, input_shape, num_classes, **kwargs)[1]) == expected


def test_fc1_input_follows_image():
  vgg = _big("vgg11", (161, 101, 1), 30)[1]
  lenet = _big("lenet5", (161, 101, 1), 30)[1]
  assert vgg["params"]["fc1"]["kernel"].shape == (7680, 512)
  assert lenet["params"]["fc1"]["kernel"].shape == (16280, 1000)


def test_resnet_variant_from_input_shape_and_override():
  has_layer4 = lambda fns: "layer4_0" in _abstract(fns)["params"]
  assert has_layer4(_build("resnet18", (32, 32, 3)))
  assert not has_layer4(_build("resnet18", (28, 28, 1)))
  assert has_layer4(_build("resnet18", (28, 28, 1), variant="cifar"))
  assert not has_layer4(_build("resnet18", (32, 32, 3), variant="mnist"))
  with pytest.raises(ValueError, match="variant"):
    _build("resnet18", (32, 32, 3), variant="imagenet")


def test_image_shape_errors():
  with pytest.raises(ValueError, match="image_shape"):
    _build("resnet18", (10,))
  with pytest.raises(ValueError, match="16×16"):
    _build("lenet5", (8, 8, 1))
  with pytest.raises(ValueError, match="32×32"):
    _build("vgg11", (16, 16, 1))


# Tiny configurations: small enough for a CPU forward pass; each is initialised once.
TINY = {
    "base-mlp": (6, 6, 1),
    "logistic": (6, 6, 3),
    "lenet5": (16, 16, 1),
    "resnet18": (8, 8, 1),  # the 3-stage variant; the 4-stage one is traced below
}
TINY_CLASSES = 4


@functools.cache
def _tiny(name):
  """(fns, variables, jitted apply) of a TINY model."""
  fns = _build(name, TINY[name], TINY_CLASSES)
  return fns, fns.init(KEY), jax.jit(fns.apply, static_argnames="train")


def test_every_model_is_registered():
  assert set(TINY) | {"resnet152", "vgg11"} <= set(registry.names("base_model"))


@pytest.mark.parametrize("name", sorted(TINY))
def test_jit_and_vmap_match_per_group_calls(name):
  _, variables, apply = _tiny(name)
  x_GxBxI = jax.random.normal(jax.random.key(1), (2, 3) + TINY[name])
  f = lambda v, x: apply(v, x)[0]
  out_GxBxC = jax.jit(jax.vmap(f, in_axes=(None, 0)))(variables, x_GxBxI)
  assert out_GxBxC.shape == (2, 3, TINY_CLASSES)
  assert np.all(np.isfinite(out_GxBxC))
  loop = np.stack([f(variables, x_GxBxI[g]) for g in range(2)])
  np.testing.assert_allclose(out_GxBxC, loop, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, input_shape, num_classes", [
    ("resnet18", (32, 32, 3), 10), ("resnet152", (32, 32, 3), 100), ("vgg11", (32, 64, 3), 5)])
def test_big_models_trace_under_jit_and_vmap(name, input_shape, num_classes):
  fns, abstract = _big(name, input_shape, num_classes)
  f = jax.jit(jax.vmap(lambda v, x: fns.apply(v, x)[0], in_axes=(None, 0)))
  x = jax.ShapeDtypeStruct((2, 3) + input_shape, jnp.float32)
  assert jax.eval_shape(f, abstract, x).shape == (2, 3, num_classes)


def test_flat_input_reads_as_image():
  _, variables, apply = _tiny("resnet18")
  flat = _build("resnet18", (64,), TINY_CLASSES)
  x = jax.random.normal(jax.random.key(2), (2, 8, 8, 1))
  np.testing.assert_allclose(jax.jit(flat.apply)(variables, x.reshape(2, 64))[0],
                             apply(variables, x)[0], rtol=1e-6, atol=1e-6)


def test_mlp_flattens_channel_major_like_pytorch():
  fns = _build("logistic", (2, 3, 4), 5)
  variables = fns.init(KEY)
  x = np.asarray(jax.random.normal(jax.random.key(3), (2, 2, 3, 4)))
  dense = variables["params"]["Dense_0"]
  expected = x.transpose(0, 3, 1, 2).reshape(2, -1) @ dense["kernel"] + dense["bias"]
  np.testing.assert_allclose(fns.apply(variables, x)[0], expected, rtol=1e-5, atol=1e-5)


# --- batch norm -----------------------------------------------------------------------------


def test_batchnorm_matches_numpy_momentum_and_unbiased_variance():
  bn = layers.BatchNorm()
  x = np.asarray(3.0 + 2.0 * jax.random.normal(jax.random.key(4), (4, 3, 2, 5)))
  rng = np.random.default_rng(0)
  stats = {"mean": rng.normal(size=5).astype(np.float32),
           "var": rng.uniform(0.5, 2.0, size=5).astype(np.float32)}
  params = {"scale": rng.normal(size=5).astype(np.float32),
            "bias": rng.normal(size=5).astype(np.float32)}
  variables = {"params": params, "batch_stats": stats}
  apply = jax.jit(bn.apply, static_argnames=("train", "mutable"))
  out, updates = apply(variables, x, train=True, mutable=("batch_stats",))
  flat = x.reshape(-1, 5)
  mean, var_biased, var_unbiased = flat.mean(0), flat.var(0), flat.var(0, ddof=1)
  new = updates["batch_stats"]
  np.testing.assert_allclose(new["mean"], 0.9 * stats["mean"] + 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(new["var"], 0.9 * stats["var"] + 0.1 * var_unbiased, rtol=1e-5)
  expected = (x - mean) / np.sqrt(var_biased + 1e-5) * params["scale"] + params["bias"]
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
  eval_out = apply(variables, x, train=False)
  expected = (x - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * params["scale"] + params["bias"]
  np.testing.assert_allclose(eval_out, expected, rtol=1e-4, atol=1e-4)


def _conv3x3_same(x_BxHxWxI, w_HxWxIxO, b_O):
  """Plain numpy 3×3 conv, stride 1, zero padding 1."""
  b, h, w, _ = x_BxHxWxI.shape
  padded = np.pad(x_BxHxWxI, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((b, h, w, w_HxWxIxO.shape[-1]), np.float64)
  for i in range(3):
    for j in range(3):
      out += padded[:, i:i + h, j:j + w, :] @ w_HxWxIxO[i, j]
  return out + b_O


def test_model_train_mode_updates_running_stats_like_pytorch():
  fns = _build("vgg11", (32, 32, 1), 5)
  variables, apply = fns.init(KEY), jax.jit(fns.apply, static_argnames="train")
  x = np.asarray(jax.random.normal(jax.random.key(5), (3, 32, 32, 1)))
  _, updates = apply(variables, x, train=True)
  assert set(updates) == {"batch_stats"}
  old = traverse_util.flatten_dict(variables["batch_stats"])
  new = traverse_util.flatten_dict(updates["batch_stats"])
  assert old.keys() == new.keys()
  assert all(not np.allclose(old[k], new[k]) for k in old)
  # The first BN sees features_0's conv output: check its update against numpy.
  conv = variables["params"]["features_0"]
  h = _conv3x3_same(x.astype(np.float64), conv["kernel"], conv["bias"]).reshape(-1, 64)
  np.testing.assert_allclose(new["features_1", "mean"], 0.1 * h.mean(0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new["features_1", "var"], 0.9 + 0.1 * h.var(0, ddof=1), rtol=1e-4)
  assert apply(variables, x, train=False)[1] == {}


def test_eval_output_is_independent_of_batch_composition():
  _, variables, apply = _tiny("resnet18")
  x = jax.random.normal(jax.random.key(6), (6, 8, 8, 1))
  _, updates = apply(variables, x[3:], train=True)  # non-trivial running statistics
  variables = nn.merge_updates(variables, updates)
  batch_a, batch_b = x[jnp.array([0, 1, 2])], x[jnp.array([0, 3, 4])]
  np.testing.assert_allclose(apply(variables, batch_a)[0][0], apply(variables, batch_b)[0][0],
                             rtol=1e-5, atol=1e-6)
  # ... whereas training mode normalises with the statistics of the batch.
  train_a = apply(variables, batch_a, train=True)[0][0]
  train_b = apply(variables, batch_b, train=True)[0][0]
  assert not np.allclose(train_a, train_b, atol=1e-4)


# --- initialisation -------------------------------------------------------------------------


def test_upstream_init_weights():
  params = traverse_util.flatten_dict(_tiny("lenet5")[1]["params"])
  conv1 = np.asarray(params["conv1", "kernel"])  # HWIO (5, 5, 1, 20)
  bound = np.sqrt(2.0) * np.sqrt(6.0 / (25 * 1 + 25 * 20))  # xavier-uniform, gain √2
  assert np.abs(conv1).max() <= bound and np.abs(conv1).max() > 0.9 * bound
  fc1 = np.asarray(params["fc1", "kernel"])
  assert abs(fc1.std() - 0.01) < 0.0005 and abs(fc1.mean()) < 0.0005
  for key, value in params.items():
    if key[-1] == "bias":
      assert not np.any(value), key
  bn_model = _tiny("resnet18")[1]  # BN weight 1, bias 0; running stats (0, 1)
  expected = {"scale": 1.0, "bias": 0.0, "mean": 0.0, "var": 1.0}
  for key, value in traverse_util.flatten_dict(bn_model).items():
    if key[-1] in expected:
      np.testing.assert_array_equal(value, np.full(value.shape, expected[key[-1]]), str(key))
