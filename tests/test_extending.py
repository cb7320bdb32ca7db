"""Components of a user's own, by import path, through the command line (docs/extending.md).

The user module lives outside the package, in a temporary folder put on PYTHONPATH, and
provides all five kinds: a dataset, a base model F (a Linen module), an encoder (a Linen
module), a decoder (a ModelFns) and a loss. Sizes are tiny: one train run of 2 epochs, its
resumption, its evaluation, a dry run, and each bad path.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER_MODULE = textwrap.dedent('''
    """A user's own components, in a module of their own."""
    import flax.linen as linen
    import jax.numpy as jnp
    import numpy as np

    from lcc_jax import nn
    from lcc_jax.data import Dataset


    def blobs(*, config, num_train=240, spread=0.3):
      """Three Gaussian blobs in 4-D: a dataset of the built-in kind."""
      rng = np.random.default_rng(config["seed"])
      centres = rng.normal(0.0, 1.0, (3, 4))

      def draw(n):
        labels = rng.integers(0, 3, n).astype(np.int32)
        x = centres[labels] + spread * rng.standard_normal((n, 4))
        return x.astype(np.float32), labels

      x_train, labels_train = draw(num_train)
      x_test, labels_test = draw(60)
      return Dataset(name="blobs", x_train=x_train, labels_train=labels_train, x_test=x_test,
                     labels_test=labels_test, input_shape=(4,), num_classes=3, val_size=40)


    class Classifier(linen.Module):
      hidden: int

      @linen.compact
      def __call__(self, x_BxI, train=False):
        return linen.Dense(3)(linen.relu(linen.Dense(self.hidden)(x_BxI)))


    def classifier(*, num_classes, hidden=8):
      del num_classes
      return Classifier(hidden)


    class Encoder(linen.Module):
      r: int

      @linen.compact
      def __call__(self, x_BxKxI, train=False):
        b, k, i = x_BxKxI.shape
        return linen.Dense(self.r * i)(x_BxKxI.reshape(b, k * i)).reshape(b, self.r, i)


    def encoder(*, r):
      return Encoder(r)


    def decoder(*, k, r, num_classes):
      """A ModelFns made by hand: one Dense layer over the k + r outputs."""
      dense = linen.Dense(k * num_classes)
      sample = jnp.zeros((1, (k + r) * num_classes))

      def apply(variables, outs_BxNxC, avail_N, train=False):
        del avail_N, train
        b = outs_BxNxC.shape[0]
        out = dense.apply(variables, outs_BxNxC.reshape(b, -1))
        return out.reshape(b, k, num_classes), {}

      return nn.ModelFns(init=lambda rng: dict(dense.init(rng, sample)), apply=apply)


    def huber(recon_xC, y_xC, labels_x):
      del labels_x
      d = jnp.abs(recon_xC - y_xC)
      return jnp.sum(jnp.where(d < 1.0, 0.5 * d * d, d - 0.5), axis=-1)


    def wrong_encoder(*, k):
      return Encoder(2)   # two parities where r = 1 wants one


    NOT_A_FACTORY = 3
    ''')

USER_CONFIG = textwrap.dedent('''
    """A config of the user's own that names the components by path."""
    from configs import tiny


    def get_config(arg=None):
      c = tiny.get_config(arg)
      c.data.name = "usermod:blobs"
      c.data.kwargs = {"num_train": 200}
      c.data.val_size = 40
      c.data.batch_size = 8
      c.data.eval_batch_size = 20
      c.base_model.name = "usermod:classifier"
      c.base_model.kwargs = {"hidden": 8}
      c.base_model.epochs = 1
      c.encoder.name = "usermod:encoder"
      return c
    ''')


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp("user")
  (folder / "usermod.py").write_text(USER_MODULE)
  (folder / "userconf.py").write_text(USER_CONFIG)
  return folder


def _train(user_dir, *args, cwd=ROOT):
  env = {**os.environ, "PYTHONPATH": f"{user_dir}{os.pathsep}{ROOT}", "JAX_PLATFORMS": "cpu"}
  env.pop("JAX_NUM_CPU_DEVICES", None)
  return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"),
                         f"--config={user_dir / 'userconf.py'}", "--progress=false",
                         "--config.decoder.name=usermod:decoder", "--config.loss=usermod:huber",
                         *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def _evaluate(user_dir, workdir):
  env = {**os.environ, "PYTHONPATH": f"{user_dir}{os.pathsep}{ROOT}", "JAX_PLATFORMS": "cpu"}
  env.pop("JAX_NUM_CPU_DEVICES", None)
  return subprocess.run([sys.executable, "-m", "lcc_jax.evaluation", f"--workdir={workdir}"],
                        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def test_train_resume_evaluate_by_import_path(user_dir, tmp_path):
  workdir = tmp_path / "run"
  first = _train(user_dir, f"--workdir={workdir}", "--config.num_epochs=1")
  assert first.returncode == 0, first.stderr
  summary = json.loads((workdir / "summary.json").read_text())
  assert (summary["dataset"], summary["encoder"], summary["decoder"], summary["loss"]) == (
      "usermod:blobs", "usermod:encoder", "usermod:decoder", "usermod:huber")
  assert summary["base_model"]["name"] == "usermod:classifier"
  components = json.loads((workdir / "run_info.json").read_text())["components"]
  assert components["encoder"]["file"] == str(user_dir / "usermod.py")
  assert set(components) == {"dataset", "loss", "base_model", "encoder", "decoder"}
  # Resume: the same run with one more epoch continues from the checkpoint of epoch 1.
  second = _train(user_dir, f"--workdir={workdir}", "--config.num_epochs=2")
  assert second.returncode == 0, second.stderr
  lines = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [e["epoch"] for e in lines if e["split"] == "train"] == [1, 2]
  evaluated = _evaluate(user_dir, workdir)
  assert evaluated.returncode == 0, evaluated.stderr
  assert "degraded top-1" in evaluated.stdout


def test_dry_run_by_import_path(user_dir):
  done = _train(user_dir, "--dry_run")
  assert done.returncode == 0, done.stderr
  assert "usermod:encoder" in done.stdout and "input (4,), 3 classes" in done.stdout
  counts = json.loads(done.stdout.strip().splitlines()[-1])
  assert counts["encoder_params"] == (2 * 4) * 4 + 4  # Dense(k·I → r·I)


@pytest.mark.parametrize("flag,expected", [
    ("--config.encoder.name=nomod:encoder", "encoder.name: encoder 'nomod:encoder': cannot "
                                            "import module 'nomod'"),
    ("--config.encoder.name=usermod:nothing", "has no attribute 'nothing'"),
    ("--config.encoder.name=usermod:NOT_A_FACTORY", "is a int, not a callable factory"),
    ("--config.encoder.name=usermod:wrong_encoder", "makes parities of shape (2, 4) but F takes "
                                                    "r=1 inputs of shape (4,)"),
    ("--config.data.name=nomod:blobs", "data.name: dataset 'nomod:blobs': cannot import"),
    ("--config.loss=usermod:classifier", "loss='usermod:classifier'"),
])
def test_bad_paths_are_one_line_exit_2(user_dir, tmp_path, flag, expected):
  done = _train(user_dir, f"--workdir={tmp_path / 'bad'}", flag)
  assert done.returncode == 2, done.stderr
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
  assert expected in lines[0]
  assert not (tmp_path / "bad").exists()
