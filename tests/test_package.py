"""pip install of the checkout (plain and editable) into fresh virtual environments, then the
console scripts from another folder: the configs ship with the package."""
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info",
                              "__pycache__", ".pytest_cache", "results", "bench")


def _builds_offline() -> bool:
  """setuptools builds wheels without a download when it has bdist_wheel (wheel, or >= 70.1)."""
  if importlib.util.find_spec("wheel"):
    return True
  import setuptools  # pylint: disable=g-import-not-at-top
  return tuple(int(p) for p in setuptools.__version__.split(".")[:2]) >= (70, 1)


def _venv(folder):
  """A fresh venv that sees this test environment's packages (no downloads, --no-deps)."""
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
  site = subprocess.run([str(folder / "bin" / "python"), "-c",
                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        check=True, capture_output=True, text=True).stdout.strip()
  with open(os.path.join(site, "test-env.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  return folder / "bin"


def _install(bin_dir, source, *flags):
  isolation = ["--no-build-isolation"] if _builds_offline() else []
  done = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "-q",
                         *isolation, *flags, str(source)], capture_output=True, text=True,
                        timeout=600)
  if done.returncode and not isolation:
    pytest.skip("this environment has neither wheel nor setuptools >= 70.1, and pip could not "
                f"fetch a build backend: {done.stderr.strip().splitlines()[-1:]}")
  assert done.returncode == 0, done.stderr


def _env():
  env = {key: v for key, v in os.environ.items() if key != "PYTHONPATH"}  # only the install
  return {**env, "JAX_PLATFORMS": "cpu"}


@pytest.fixture
def checkout(tmp_path):
  """A copy of the checkout, so the build's by-products never land in the repository."""
  return shutil.copytree(ROOT, tmp_path / "src", ignore=SKIP)


def test_pip_install_then_lcc_train_from_another_folder(checkout, tmp_path):
  bin_dir = _venv(tmp_path / "venv")
  _install(bin_dir, checkout)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  done = subprocess.run([str(bin_dir / "lcc-train"), "--config.num_epochs=1",
                         "--config.base_model.epochs=1", "--progress=false"],
                        cwd=elsewhere, env=_env(), capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr
  assert "test degraded-mode top-1" in done.stdout
  assert (elsewhere / "runs" / "default" / "summary.json").is_file()
  # The run used the installed package, not the copy it was built from.
  installed = subprocess.run([str(bin_dir / "python"), "-c", "import lcc_jax; print("
                              "lcc_jax.__file__)"], cwd=elsewhere, env=_env(),
                             capture_output=True, text=True, check=True).stdout
  assert str(tmp_path / "venv") in installed
  evaluated = subprocess.run([str(bin_dir / "lcc-evaluate"),
                              f"--workdir={elsewhere / 'runs' / 'default'}"],
                             cwd=elsewhere, env=_env(), capture_output=True, text=True,
                             timeout=600)
  assert evaluated.returncode == 0, evaluated.stderr


def test_editable_install_runs_every_shipped_family(checkout, tmp_path):
  bin_dir = _venv(tmp_path / "venv")
  _install(bin_dir, checkout, "-e")
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  for spec in ("configs/default.py", "configs/tiny.py", "configs/fashion_mnist_mlp.py",
               "configs/learned_cc.py", "configs/parity_models.py", "configs/r_gt_1.py"):
    done = subprocess.run([str(bin_dir / "lcc-train"), f"--config={spec}", "--dry_run",
                           "--sweep_index=0"], cwd=elsewhere, env=_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, (spec, done.stderr)
    assert "erasure patterns" in done.stdout, spec
