"""F-output cache, CIFAR augmentation, the `function` base model/dataset and embedded digits."""
import functools
import os

import jax
import numpy as np
import pytest

from lcc_jax import nn, registry
from lcc_jax import data
from lcc_jax.data import augment_cifar, cached_outputs, variables_hash
from lcc_jax.models import function as function_lib


def _linear_f(calls):
  """F(x) = x @ w + b, counting how often JAX traces it (once per compilation)."""
  def apply(variables, x, train=False):
    del train
    calls.append(x.shape)
    return x @ variables["params"]["w"] + variables["params"]["b"], {}

  return apply


def _variables(seed):
  rng = np.random.default_rng(seed)
  return {"params": {"w": rng.normal(size=(5, 3)).astype(np.float32),
                     "b": rng.normal(size=3).astype(np.float32)}}


def test_variables_hash_sees_values_names_and_shapes():
  v = _variables(0)
  assert variables_hash(v) == variables_hash(jax.tree.map(np.copy, v))
  changed = jax.tree.map(np.copy, v)
  changed["params"]["b"][1] += 1e-3
  renamed = {"params": {"w": v["params"]["w"], "c": v["params"]["b"]}}
  assert len({variables_hash(v), variables_hash(changed), variables_hash(renamed),
              variables_hash({})}) == 4


def test_cached_outputs_computes_once_and_hits_after(tmp_path):
  x = np.random.default_rng(1).normal(size=(10, 5)).astype(np.float32)
  v = _variables(0)
  expected = x @ v["params"]["w"] + v["params"]["b"]
  calls = []
  y = cached_outputs(_linear_f(calls), v, x, str(tmp_path), "toy/train", batch_size=4)
  assert y.dtype == np.float32 and y.shape == (10, 3)
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
  assert calls == [(4, 5)]  # 3 batches (4, 4, 2 padded to 4), one compilation
  assert len(list(tmp_path.glob("toy_train-*.npy"))) == 1
  hit = cached_outputs(_linear_f(calls), v, x, str(tmp_path), "toy/train", batch_size=4)
  assert calls == [(4, 5)]  # nothing ran
  np.testing.assert_array_equal(hit, y)
  # Another F, other inputs or another tag: computed afresh, cached beside.
  cached_outputs(_linear_f(calls), _variables(1), x, str(tmp_path), "toy/train")
  cached_outputs(_linear_f(calls), v, x + 1, str(tmp_path), "toy/train")
  cached_outputs(_linear_f(calls), v, x, str(tmp_path), "toy/test")
  assert len(calls) == 4 and len(list(tmp_path.glob("*.npy"))) == 4


def test_cached_outputs_survives_a_concurrent_writer(tmp_path, monkeypatch):
  """Two processes of a multi-host run fill one workdir's cache at once (a CI failure: they
  shared one temporary name, and the later rename found it gone)."""
  x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
  v = _variables(0)
  real_replace, writers = os.replace, []

  def replace_after_another_writer(src, dst):
    writers.append(src)
    if len(writers) == 1:  # the other process saves and renames in between
      cached_outputs(_linear_f([]), v, x, str(tmp_path), "toy/train")
    real_replace(src, dst)

  monkeypatch.setattr(os, "replace", replace_after_another_writer)
  y = cached_outputs(_linear_f([]), v, x, str(tmp_path), "toy/train")
  assert len(set(writers)) == 2  # each writer had its own temporary file
  np.testing.assert_array_equal(np.load(next(tmp_path.glob("toy_train-*.npy"))), y)
  assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.glob("*.npy")).name]


def _reference_candidates(image, fill):
  """Every crop of the 4-padded image (81 offsets) and its mirror, in numpy."""
  padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
  padded[:4], padded[-4:], padded[:, :4], padded[:, -4:] = fill, fill, fill, fill
  crops = [padded[i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
  return crops + [c[:, ::-1] for c in crops]


MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
_augment = jax.jit(functools.partial(augment_cifar, mean=MEAN, std=STD))


def test_augment_is_a_padded_crop_or_its_mirror():
  x = np.random.default_rng(0).normal(size=(2, 3, 32, 32, 3)).astype(np.float32)
  out = np.asarray(_augment(jax.random.key(0), x))
  assert out.shape == x.shape and out.dtype == np.float32
  fill = -np.array(MEAN, np.float32) / np.array(STD, np.float32)
  for b in range(2):
    for k in range(3):
      candidates = _reference_candidates(x[b, k], fill)
      assert any(np.allclose(out[b, k], c) for c in candidates), (b, k)
  np.testing.assert_array_equal(out, _augment(jax.random.key(0), x))
  assert not np.array_equal(out, _augment(jax.random.key(1), x))


def test_augment_uses_all_offsets_and_flips():
  x = np.zeros((64, 1, 32, 32, 3), np.float32)
  x[:, :, 0, 0, :] = 10.0  # mark the top-left pixel; see where each augmented copy puts it
  out = np.asarray(_augment(jax.random.key(3), x))[:, 0, :, :, 0]
  found = {tuple(np.argwhere(img > 5.0)[0]) for img in out if (img > 5.0).any()}
  assert len(found) > 10 and any(w > 20 for _, w in found)  # shifted, and mirrored


def test_elementwise_functions_match_numpy():
  x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(2, 6)
  for name, reference in [("x_sin_x", x * np.sin(x)), ("square", x ** 2), ("cubic", x ** 3)]:
    f = registry.build("base_model", "function", input_shape=(6,), num_classes=6, fn=name)
    assert f.init(jax.random.key(0)) == {}
    np.testing.assert_allclose(f.apply({}, x)[0], reference, rtol=1e-5, atol=1e-6)


def test_random_functions_are_fixed_by_seed():
  x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
  build = lambda fn, seed: registry.build("base_model", "function", input_shape=(8,),
                                          num_classes=3, fn=fn, seed=seed)
  lin = build("random_linear", 0)
  a, b = x[:2], x[2:]
  np.testing.assert_allclose(lin.apply({}, 2 * a - b)[0],
                             2 * lin.apply({}, a)[0] - lin.apply({}, b)[0], rtol=1e-4, atol=1e-5)
  for fn in ("random_linear", "random_mlp"):
    y = build(fn, 0).apply({}, x)[0]
    assert y.shape == (4, 3)
    np.testing.assert_array_equal(y, build(fn, 0).apply({}, x)[0])
    assert not np.allclose(y, build(fn, 1).apply({}, x)[0])


def test_user_function_by_import_path_and_clear_errors():
  f = registry.build("base_model", "function", input_shape=(5,), num_classes=5,
                     fn="jax.numpy:cos")
  np.testing.assert_allclose(f.apply({}, np.zeros((2, 5), np.float32))[0], np.ones((2, 5)))
  with pytest.raises(ValueError, match="must equal the input size"):
    registry.build("base_model", "function", input_shape=(5,), num_classes=3, fn="square")
  with pytest.raises(ValueError, match="random_mlp"):
    function_lib.resolve("sine", 5, 5)
  with pytest.raises(ValueError, match="maps \\(5,\\) to \\(5,\\)"):
    registry.build("base_model", "function", input_shape=(5,), num_classes=2, fn="jax.numpy:cos")


def test_function_dataset_labels_are_argmax_of_f():
  ds = data.load({"name": "function", "fn": "x_sin_x", "sampler": "uniform", "input_dim": 6,
                  "num_outputs": 6, "num_train": 50, "num_test": 20, "seed": 3})
  assert ds.x_train.shape == (50, 6) and ds.x_test.shape == (20, 6)
  assert ds.x_train.dtype == np.float32 and np.abs(ds.x_train).max() <= 1.0
  np.testing.assert_array_equal(ds.labels_train, np.argmax(ds.x_train * np.sin(ds.x_train), -1))
  np.testing.assert_array_equal(ds.labels_test, np.argmax(ds.x_test * np.sin(ds.x_test), -1))
  assert (ds.input_shape, ds.num_classes, ds.val_size) == ((6,), 6, 5)
  same = data.load({"name": "function", "fn": "x_sin_x", "sampler": "uniform", "input_dim": 6,
                    "num_outputs": 6, "num_train": 50, "num_test": 20, "seed": 3})
  np.testing.assert_array_equal(ds.x_train, same.x_train)
  with pytest.raises(ValueError, match="unknown data.sampler"):
    data.load({"name": "function", "sampler": "cauchy"})
  with pytest.raises(ValueError, match="data.augment is defined for"):
    data.load({"name": "function", "augment": True})


def test_digits_is_embedded_with_a_fixed_stratified_split():
  ds = data.load({"name": "digits"})
  assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape == (360, 8, 8, 1)
  assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
  assert np.bincount(ds.labels_test).tolist() == [36] * 10
  assert (ds.input_shape, ds.num_classes, ds.val_size) == ((8, 8, 1), 10, 300)
  again = data.load({"name": "digits", "val_size": 100})
  np.testing.assert_array_equal(ds.x_test, again.x_test)
  assert again.val_size == 100


def test_nn_adapter_is_what_the_function_model_returns():
  f = registry.build("base_model", "function", input_shape=(2, 2), num_classes=4, fn="square")
  assert isinstance(f, nn.ModelFns)
  np.testing.assert_allclose(f.apply({}, np.full((1, 2, 2), 3.0, np.float32))[0], [[9.0] * 4])
