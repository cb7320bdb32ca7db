"""Image datasets via our tfds builders (no TensorFlow), on tiny files in the original formats."""
import dataclasses
import io
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds

import fixtures_data
from lcc_jax import data
from lcc_jax.data import builders, sources

IDX_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name, tmp_path, **fields):
  return data.load({"name": name, "data_dir": str(tmp_path / "data"),
                    "manual_dir": str(tmp_path / "manual"), **fields})


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_files_prepare_and_read_in_order(name, tmp_path, offline):
  train_x, train_y, test_x, test_y = fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  ds = _load(name, tmp_path)
  assert ds.x_train.shape == (12, 28, 28, 1) and ds.x_test.shape == (6, 28, 28, 1)
  assert ds.x_train.dtype == np.float32 and ds.x_train.flags["C_CONTIGUOUS"]
  # ToTensor only: pixel / 255, the files' order kept (test groups are consecutive indices).
  np.testing.assert_allclose(ds.x_train[..., 0], train_x / 255.0, rtol=1e-6)
  np.testing.assert_allclose(ds.x_test[..., 0], test_x / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(ds.labels_train, train_y)
  np.testing.assert_array_equal(ds.labels_test, test_y)
  assert (ds.input_shape, ds.num_classes, ds.val_size) == ((28, 28, 1), 10, 5000)
  assert ds.info["obtained"] == "local"
  # manual_dir wins over Debian's folder for fashion_mnist.
  assert ds.info["source_files"]["t10k-images-idx3-ubyte.gz"] == str(
      tmp_path / "manual" / "t10k-images-idx3-ubyte.gz")


def test_second_load_reads_prepared_data_without_the_files(tmp_path, offline):
  train_x = fixtures_data.write_mnist_files(str(tmp_path / "manual"))[0]
  _load("mnist", tmp_path)
  for f in IDX_FILES:
    os.remove(tmp_path / "manual" / f)
  again = _load("mnist", tmp_path)
  assert again.info["obtained"] == "prepared" and again.info["prepare_seconds"] == 0.0
  np.testing.assert_allclose(again.x_train[..., 0], train_x / 255.0, rtol=1e-6)


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_tarball_prepares_normalised_nhwc(kind, tmp_path, offline):
  train_x, train_y, test_x, test_y = fixtures_data.write_cifar_tarball(
      str(tmp_path / "manual"), kind)
  ds = _load(kind, tmp_path, augment=True)
  num_train = 15 if kind == "cifar10" else 3  # 5 batches of 3, or one "train" of 3
  assert ds.x_train.shape == (num_train, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
  mean = np.array([0.4914, 0.4822, 0.4465], np.float32)
  std = np.array([0.2023, 0.1994, 0.2010], np.float32)
  np.testing.assert_allclose(ds.x_train, (train_x / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ds.x_test, (test_x / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(ds.labels_train, train_y)
  np.testing.assert_array_equal(ds.labels_test, test_y)
  assert ds.num_classes == (10 if kind == "cifar10" else 100)
  assert ds.augment is not None


def test_cifar_rows_are_channel_major(tmp_path):
  """Pixel (h, w, c) of a published row is byte c*1024 + h*32 + w."""
  fixtures_data.write_cifar_tarball(str(tmp_path), "cifar10")
  images, _ = sources.read_cifar(str(tmp_path / "cifar-10-python.tar.gz"), "cifar10")["test"]
  with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tar:
    rows = pickle.load(tar.extractfile("cifar-10-batches-py/test_batch"), encoding="bytes")[b"data"]
  for n, h, w, c in [(0, 0, 0, 0), (1, 5, 7, 2), (2, 31, 30, 1)]:
    assert images[n, h, w, c] == rows[n, c * 1024 + h * 32 + w]


def test_tarball_pickle_that_calls_code_is_refused(tmp_path):
  payload = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."  # os.system("true")
  with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
    info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))
  with pytest.raises(pickle.UnpicklingError, match="os.system"):
    sources.read_cifar(str(tmp_path / "cifar-10-python.tar.gz"), "cifar10")


def test_idx_with_wrong_magic_is_rejected(tmp_path):
  fixtures_data.write_idx(str(tmp_path / "x.gz"), np.zeros((2, 3), np.uint8))  # magic 0x802
  with pytest.raises(ValueError, match="magic"):
    sources.read_idx(str(tmp_path / "x.gz"), 0x803)


def test_mock_data_reads_through_data_source(tmp_path, monkeypatch):
  # tfds 4.9.10's mock binds `__getitems__` without `self` (a plain attribute of a MagicMock);
  # give it a function of the arguments it is really called with.
  from tensorflow_datasets.testing import mocking
  monkeypatch.setattr(mocking, "_getitems",
                      lambda keys, generator, serialized=False: [generator[k] for k in keys])
  with tfds.testing.mock_data(num_examples=8):
    arrays, _ = builders.read("cifar10", str(tmp_path))
  images, labels = arrays["train"]
  assert images.shape == (8, 32, 32, 3) and images.dtype == np.uint8
  assert labels.shape == (8,) and labels.min() >= 0 and labels.max() < 10


def test_builder_names_do_not_clash_with_the_catalog():
  for name, cls in builders.BUILDERS.items():
    assert tfds.builder_cls(cls.name) is cls and cls.name == "lcc_" + name
    assert tfds.builder_cls(name).__module__.startswith("tensorflow_datasets.")  # tfds' own


def test_offline_without_files_fails_fast_naming_files_and_remedies(tmp_path, offline,
                                                                    monkeypatch):
  import requests

  requests_sent = []

  def refuse(adapter, request, **kwargs):
    requests_sent.append((request.method, request.url))
    raise requests.ConnectionError("offline")

  monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)
  (tmp_path / "manual").mkdir()
  fixtures_data.write_idx(str(tmp_path / "manual" / IDX_FILES[0]), np.zeros((1, 28, 28), np.uint8))
  with pytest.raises(data.DataUnavailableError) as error:
    _load("mnist", tmp_path)
  # One probe and no retry, no download attempt.
  assert [method for method, _ in requests_sent] == ["HEAD"], requests_sent
  message = str(error.value)
  assert f"lacks {', '.join(IDX_FILES[1:])}" in message  # the one present file is not named
  assert "--config.data.manual_dir=FOLDER" in message and "network access" in message
  assert not (tmp_path / "data" / "lcc_mnist").exists()  # nothing was prepared


def test_check_available_for_cifar_without_manual_dir(tmp_path, offline):
  with pytest.raises(data.DataUnavailableError, match="cifar-10-python.tar.gz") as error:
    data.check_available({"name": "cifar10", "data_dir": str(tmp_path)})
  assert "data.manual_dir is not set" in str(error.value)
  data.check_available({"name": "digits"})  # embedded: always available
  with pytest.raises(KeyError, match="known dataset names"):
    data.check_available({"name": "imagenet"})


def test_probe_is_bounded_when_the_network_hangs(monkeypatch):
  import requests

  release, finished = threading.Event(), threading.Event()

  def hang(*args, **kwargs):
    release.wait(60)  # e.g. name resolution that never answers
    finished.set()
    raise requests.ConnectionError("too late")

  monkeypatch.setattr(requests, "head", hang)
  try:
    assert not sources.reachable("https://example.invalid/x", timeout_s=0.3)
    # The probe gave up while the request was still hanging: it did not wait for it.
    assert not finished.is_set()
  finally:
    release.set()


def test_tensorflow_is_never_imported(tmp_path):
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  script = textwrap.dedent(f"""
      import sys
      from lcc_jax import data
      ds = data.load({{"name": "mnist", "data_dir": {str(tmp_path / 'data')!r},
                       "manual_dir": {str(tmp_path / 'manual')!r}}})
      assert ds.x_train.shape == (12, 28, 28, 1)
      print("TF", sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))
  """)
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
         "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                       timeout=120, check=True)
  assert "TF []" in out.stdout


def test_fashion_mnist_error_names_the_debian_package(tmp_path, offline, monkeypatch):
  spec = dataclasses.replace(sources.SPECS["fashion_mnist"], auto_dirs=(str(tmp_path / "deb"),))
  monkeypatch.setitem(sources.SPECS, "fashion_mnist", spec)
  with pytest.raises(data.DataUnavailableError) as error:
    data.check_available({"name": "fashion_mnist", "data_dir": str(tmp_path)})
  assert f"{tmp_path / 'deb'} lacks {', '.join(IDX_FILES)}" in str(error.value)
  assert "apt-get install dataset-fashion-mnist" in str(error.value)
