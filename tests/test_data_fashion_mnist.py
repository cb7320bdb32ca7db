"""Genuine Fashion-MNIST from Debian's dataset-fashion-mnist, prepared through our builder."""
import os

import numpy as np
import pytest

from lcc_jax import data
from lcc_jax.data import sources

DEBIAN_DIR = sources.SPECS["fashion_mnist"].auto_dirs[0]
pytestmark = pytest.mark.skipif(
    not all(os.path.isfile(os.path.join(DEBIAN_DIR, f)) for f in sources.IDX_FILES),
    reason=f"Fashion-MNIST's original files are not in {DEBIAN_DIR} "
           "(apt-get install dataset-fashion-mnist)")


@pytest.mark.slow  # ~15 s of CPU; measured 37 s wall on the shared 2-core machine
def test_fashion_mnist_from_debian_files(tmp_path):
  # No manual_dir: Debian's folder is found automatically; no network is needed.
  ds = data.load({"name": "fashion_mnist", "data_dir": str(tmp_path)})
  assert ds.info["obtained"] == "local"
  assert ds.info["source_files"]["train-images-idx3-ubyte.gz"].startswith(DEBIAN_DIR)
  assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
  assert np.bincount(ds.labels_train).tolist() == [6000] * 10
  assert np.bincount(ds.labels_test).tolist() == [1000] * 10
  assert ds.x_train.dtype == np.float32 and ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
  # Read back without preparing again.
  data.check_available({"name": "fashion_mnist", "data_dir": str(tmp_path)})
  assert sources.check("fashion_mnist", str(tmp_path), None) == "prepared"
