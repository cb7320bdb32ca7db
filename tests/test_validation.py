"""Bad inputs get one clear line and exit status 2 before any work, and nothing is written.

Table-driven over configs, component shapes, F checkpoints, data files, workdirs and flags.
Most cases run in-process through ``cli.run`` (the same path train.py takes after parsing
flags); a representative subset runs train.py as a subprocess for the exit status, the absence
of a traceback and an untouched workdir.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import traceback

import jax
import jax.monitoring
import ml_collections
import numpy as np
import pytest

import fixtures_data
from configs import default, learned_cc, parity_models, r_gt_1, tiny
from lcc_jax import checkpoint, cli, component_checks, data, parallel, registry, steps, validate
from lcc_jax import workdir as workdir_lib
from lcc_jax.data import builders, checks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MNIST_CONV = os.path.join(ROOT, "tests", "fixtures", "upstream", "learned-cc", "conf", "mnist",
                          "base-mlp", "k2", "kl-base", "conv", "conf.json")


def _set(tree: dict, dotted: str, value) -> None:
  *parents, leaf = dotted.split(".")
  for part in parents:
    tree = tree[part]
  tree[leaf] = value


def tiny_config(**fields) -> ml_collections.ConfigDict:
  """configs/tiny.py with a 16-unit F; ``fields`` are dotted names with "__" for "."."""
  c = tiny.get_config().to_dict()
  c["base_model"]["kwargs"] = {"hidden": (16,)}
  c["base_model"]["epochs"] = 1
  for key, value in fields.items():
    _set(c, key.replace("__", "."), value)
  return ml_collections.ConfigDict(c)  # built from a dict: wrong types stay wrong


def _tree(path) -> dict:
  """Every file under ``path`` with its size and mtime (to see that nothing changed)."""
  out = {}
  for folder, _, files in os.walk(path):
    for name in files:
      full = os.path.join(folder, name)
      out[full] = (os.path.getsize(full), os.path.getmtime(full))
  return out


def _run_in_process(config, workdir, capsys, **flags) -> str:
  """cli.run → exit status 2, one ``error:`` line naming the problem; returns that line."""
  before = _tree(workdir) if os.path.exists(workdir) else None
  status = cli.run(config, str(workdir), progress=False, **flags)
  err = capsys.readouterr().err.strip()
  assert status == cli.EXIT_BAD_INPUT, err
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  assert "Traceback" not in err
  if before is None:
    assert not os.path.exists(workdir), os.listdir(workdir)
  else:
    assert _tree(workdir) == before
  return lines[0]


def _assert_names(line: str, *fragments: str) -> None:
  for fragment in fragments:
    assert fragment in line, f"{fragment!r} not in {line!r}"


# --- config values and component shapes ---------------------------------------------------------

CONFIG_CASES = [
    # (id, fields, fragments the one-line message must contain)
    ("k_zero", dict(k=0), ["k must be >= 1, got 0"]),
    ("r_zero", dict(r=0), ["r must be >= 1, got 0"]),
    ("negative_seed", dict(seed=-1), ["seed must be >= 0, got -1"]),
    ("k_as_string", dict(k="2"), ["k must be of type int", "'2' (str)"]),
    ("lr_as_string", dict(optim__lr="fast"), ["optim.lr must be of type float", "'fast'"]),
    ("unknown_dataset", dict(data__name="imagenet"),
     ["data.name='imagenet' is not a known dataset", "mnist"]),
    ("unknown_encoder", dict(encoder__name="mlpp"), ["encoder.name='mlpp'", "known:", "conv"]),
    ("unknown_decoder", dict(decoder__name="nope"), ["decoder.name='nope'", "known:"]),
    ("unknown_loss", dict(loss="l1"), ["loss='l1' is not a known loss", "kl"]),
    ("unknown_optimizer", dict(optim__name="rmsprop"), ["optim.name='rmsprop'", "adam"]),
    ("zero_lr", dict(optim__lr=0.0), ["optim.lr must be positive", "got 0.0"]),
    ("nan_lr", dict(optim__lr=float("nan")), ["optim.lr must be positive and finite", "nan"]),
    ("negative_weight_decay", dict(optim__weight_decay=-1e-5), ["optim.weight_decay must be >= 0"]),
    ("negative_time_limit", dict(time_limit_minutes=-1.0), ["time_limit_minutes must be >= 0"]),
    ("batch_vs_devices", dict(data__batch_size=6),
     ["data.batch_size=6 must be a multiple of the 4 devices", "--config.data.batch_size=8"]),
    ("eval_batch_vs_devices", dict(data__eval_batch_size=50),
     ["data.eval_batch_size=50", "--config.data.eval_batch_size=52"]),
    ("val_takes_everything", dict(data__val_size=5000),
     ["data.val_size=5000", "leaves none of the 1436 training examples"]),
    ("augment_not_cifar", dict(data__augment=True), ["data.augment=True", "data.augment=False"]),
    ("pattern_mode", dict(patterns__mode="beyond"), ["patterns.mode='beyond'", "exactly"]),
    ("too_many_patterns", dict(k=30, r=10),
     ["more than patterns.limit=20000", "--config.patterns.limit="]),
    ("eval_split_train", dict(eval_splits=("val", "train")), ["eval_splits=['val', 'train']"]),
    ("best_metric_name", dict(best_metric="val/accuracy"), ["best_metric='val/accuracy'"]),
    ("best_metric_split", dict(best_metric="test/degraded_top1", eval_splits=("val",)),
     ["needs 'test' in eval_splits"]),
    ("on_nonfinite", dict(on_nonfinite="ignore"), ["on_nonfinite='ignore'", "'skip'"]),
    ("f_lr_schedule", dict(base_model__lr_schedule="linear"),
     ["base_model.lr_schedule='linear'", "cosine"]),
    ("replica_lr_count", dict(replicas__seeds=3, replicas__lr=(1e-3,)),
     ["replicas.lr has 1 values for replicas.seeds=3"]),
    ("rate_above_one", dict(unavailability_rates=(0.1, 1.5)), ["unavailability_rates", "[0, 1]"]),
    ("nothing_trained", dict(train__encoder=False, train__decoder=False), ["nothing to train"]),
    ("fixed_code_nothing_to_train", dict(encoder__name="sum", decoder__name="sub"),
     ["nothing to train", "have no parameters", "parity_model.name=same"]),
    ("parity_loss_without_parity_model", dict(loss="parity_mse"),
     ["loss=parity_mse trains a parity model", "train.parity_model=True"]),
    ("parity_loss_with_learned_decoder",
     dict(loss="parity_mse", parity_model__name="same", train__parity_model=True),
     ["loss=parity_mse needs a decoder that defines", "decoder.name='mlp' has none"]),
    # Shapes that must agree, checked with jax.eval_shape at batch 1.
    ("concat_does_not_tile", dict(k=3, encoder__name="concat", decoder__name="sub",
                                  parity_model__name="same", train__parity_model=True,
                                  loss="parity_mse"),
     ["encoder.name='concat'", "k=3", "W=8 divisible by 3"]),
    ("encoder_makes_wrong_parities", dict(encoder__kwargs={"r": 2}),
     ["encoder.name='mlp'", "makes parities of shape (2, 8, 8, 1)",
      "r=1 inputs of shape (8, 8, 1)"]),
    ("decoder_built_for_other_k", dict(decoder__kwargs={"k": 5}),
     ["decoder.name='mlp' cannot take inputs of shape (1, 3, 10), (3,)", "k=2, r=1"]),
    ("encoder_unknown_kwarg", dict(encoder__kwargs={"width": 3}),
     ["encoder.kwargs has ['width'], which encoder 'mlp' does not take", "it takes k, r,"]),
    ("base_model_wrong_kwarg", dict(base_model__kwargs={"hidden": (16,), "depth": 2}),
     ["base_model.kwargs has ['depth']", "it takes hidden"]),
    ("function_f_vs_labels", dict(data__name="function", base_model__name="function",
                                  base_model__kwargs={"fn": "square"}, data__fn="x_sin_x",
                                  loss="mse", best_metric="val/reconstruction_top1"),
     ["data.fn='x_sin_x'", "base_model.kwargs.fn='square'", "--config.data.fn=square"]),
    ("base_checkpoint_missing", dict(base_model__checkpoint="/nonexistent/base"),
     ["base_model.checkpoint=/nonexistent/base does not exist", "leave it empty"]),
]


@pytest.mark.parametrize("case, fields, fragments", CONFIG_CASES,
                         ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_is_one_line_exit_2_and_writes_nothing(case, fields, fragments, tmp_path,
                                                          capsys):
  del case
  line = _run_in_process(tiny_config(**fields), tmp_path / "run", capsys)
  _assert_names(line, *fragments)


@pytest.fixture(scope="module")
def f_checkpoints(tmp_path_factory):
  """Saved F of the tiny architecture (16 units) and of another one (32 units)."""
  folder = tmp_path_factory.mktemp("f")
  out = {}
  for hidden in (16, 32):
    fns = registry.build("base_model", "base-mlp", input_shape=(8, 8, 1), num_classes=10,
                         hidden=(hidden,))
    out[hidden] = str(folder / f"base{hidden}")
    checkpoint.save_variables(out[hidden], fns.init(jax.random.PRNGKey(0)), {"hidden": hidden})
  return out


def test_f_checkpoint_of_another_architecture_is_refused(f_checkpoints, tmp_path, capsys):
  line = _run_in_process(tiny_config(base_model__checkpoint=f_checkpoints[32]), tmp_path / "r",
                         capsys)
  _assert_names(line, f"base_model.checkpoint={f_checkpoints[32]} holds another architecture",
                "['params']['Dense_0']['kernel']: saved (64, 32), model needs (64, 16)",
                "set base_model.name/kwargs to F's")
  component_checks.check_shapes(tiny_config(base_model__checkpoint=f_checkpoints[16]))  # it fits


def test_f_checkpoint_folder_without_f_and_unreadable_file(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  line = _run_in_process(tiny_config(base_model__checkpoint=str(tmp_path / "empty")),
                         tmp_path / "r", capsys)
  _assert_names(line, "is a folder without a saved F", "WORKDIR/base")
  (tmp_path / "model.t7").write_bytes(b"\x80\x02 not a state dict")
  line = _run_in_process(tiny_config(base_model__checkpoint=str(tmp_path / "model.t7")),
                         tmp_path / "r", capsys)
  # torch is optional: either its install hint or the unpickling error, never a traceback.
  assert "torch" in line or "is not a PyTorch state dict" in line, line


def test_validation_compiles_no_step_and_prepares_no_data(tmp_path, monkeypatch):
  """check_run only traces (eval_shape): the only compiles are the factories' own."""
  def forbidden(*args, **kwargs):
    raise AssertionError("called during validation")
  for module, name in ((data, "load"), (builders, "prepare"), (steps, "jit_train_chunk"),
                       (steps, "jit_eval_split"), (steps, "jit_train_step"),
                       (steps, "jit_eval_step")):
    monkeypatch.setattr(module, name, forbidden)
  compiles = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append([f.filename for f in traceback.extract_stack()])

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    validate.check_run(tiny_config(k=3, r=2, encoder__name="conv"), str(tmp_path / "w"),
                       mesh=parallel.make_mesh())
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  for stack in compiles:  # only a factory's own jnp.zeros sample inputs, built eagerly
    assert any(f.endswith(os.path.join("lcc_jax", "registry.py")) for f in stack), stack
  assert not os.path.exists(tmp_path / "w")


def test_every_repository_config_passes():
  """Validation is not stricter than the configs we ship (all families, all sweep entries)."""
  configs = [default.get_config(), tiny.get_config("k=3,r=2"),
             tiny.get_config("encoder=sum,decoder=sub,parity_model=same,loss=parity_mse")]
  for family in (learned_cc, parity_models, r_gt_1):
    configs += [family.get_config(e["arg"]) for e in family.get_sweep(None)]
  for c in configs:
    validate.check_config(c)
  for c in configs[:3]:
    component_checks.check_shapes(c)


# --- data files ---------------------------------------------------------------------------------


def _mnist_config(tmp_path, **fields):
  return tiny_config(**{"data__name": "mnist", "data__data_dir": str(tmp_path / "data"),
                        "data__manual_dir": str(tmp_path / "manual"), "data__val_size": 4,
                        **fields})


def _idx_bytes(array: np.ndarray, *, magic: int | None = None, dims=None) -> bytes:
  header = np.array([magic or (0x800 | array.ndim), *(dims or array.shape)], ">u4").tobytes()
  return header + np.ascontiguousarray(array, np.uint8).tobytes()


def _write_gz(path, payload: bytes) -> None:
  with gzip.open(path, "wb") as f:
    f.write(payload)


def _truncate(path) -> None:
  raw = open(path, "rb").read()
  open(path, "wb").write(raw[:len(raw) // 2])


def _cifar_members(tmp_path, members):
  path = tmp_path / "manual" / "cifar-10-python.tar.gz"
  with tarfile.open(path, "w:gz") as tar:
    for name, payload in members.items():
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))


def _cifar_batch(labels):
  rows = np.zeros((len(labels), 3072), np.uint8)
  return pickle.dumps({b"data": rows, b"labels": list(labels)}, protocol=2)


class _Evil:
  def __reduce__(self):
    return (os.system, ("true",))


def _data_truncated_idx(tmp_path):
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  _truncate(tmp_path / "manual" / IDX_FILES[0])


def _data_wrong_magic(tmp_path):
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  _write_gz(tmp_path / "manual" / IDX_FILES[1], _idx_bytes(np.zeros(12), magic=0x803))


def _data_short_idx(tmp_path):
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  _write_gz(tmp_path / "manual" / IDX_FILES[2],
            _idx_bytes(np.zeros((5, 28, 28)), dims=(6, 28, 28)))


def _data_label_range(tmp_path):
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  _write_gz(tmp_path / "manual" / IDX_FILES[3], _idx_bytes(np.full(6, 12)))


def _data_wrong_image_size(tmp_path):
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  _write_gz(tmp_path / "manual" / IDX_FILES[0], _idx_bytes(np.zeros((12, 32, 32))))


def _data_not_gzip_of_published_size(tmp_path):
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  # As long as the published file (4542 bytes), but not it: the checksum tells them apart.
  (tmp_path / "manual" / IDX_FILES[3]).write_bytes(np.random.default_rng(0).bytes(4542))


def _data_missing_offline(tmp_path):
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  os.remove(tmp_path / "manual" / IDX_FILES[2])


def _data_manual_dir_missing(tmp_path):
  del tmp_path


def _data_cifar_truncated(tmp_path):
  fixtures_data.write_cifar_tarball(str(tmp_path / "manual"), "cifar10")
  _truncate(tmp_path / "manual" / "cifar-10-python.tar.gz")


def _data_cifar_missing_batch(tmp_path):
  (tmp_path / "manual").mkdir()
  _cifar_members(tmp_path, {f"data_batch_{i}": _cifar_batch([1]) for i in range(1, 6)})


def _data_cifar_code_in_pickle(tmp_path):
  (tmp_path / "manual").mkdir()
  members = {f"data_batch_{i}": _cifar_batch([1]) for i in range(1, 6)}
  members["test_batch"] = pickle.dumps(_Evil(), protocol=2)
  _cifar_members(tmp_path, members)


def _data_cifar_label_range(tmp_path):
  (tmp_path / "manual").mkdir()
  members = {f"data_batch_{i}": _cifar_batch([1, 2]) for i in range(1, 6)}
  members["test_batch"] = _cifar_batch([10])
  _cifar_members(tmp_path, members)


DATA_CASES = [
    ("truncated_idx", "mnist", _data_truncated_idx,
     [IDX_FILES[0], "is not an intact mnist file", "differs from the published",
      "EOFError", "replace it with the original"]),
    ("idx_wrong_magic", "mnist", _data_wrong_magic, [IDX_FILES[1], "IDX magic number 0x803"]),
    ("idx_fewer_bytes_than_header", "mnist", _data_short_idx, [IDX_FILES[2], "header says"]),
    ("idx_label_out_of_range", "mnist", _data_label_range, [IDX_FILES[3], "has label 12"]),
    ("idx_wrong_image_size", "mnist", _data_wrong_image_size, ["(32, 32)", "needs (28, 28)"]),
    ("wrong_checksum_not_gzip", "mnist", _data_not_gzip_of_published_size,
     [IDX_FILES[3], "its sha256", "differs from the published f7ae60f92e00ec6d",
      "BadGzipFile"]),
    ("missing_file_offline", "mnist", _data_missing_offline,
     [f"lacks {IDX_FILES[2]}", "--config.data.manual_dir=FOLDER", "cannot be reached"]),
    ("manual_dir_missing", "mnist", _data_manual_dir_missing,
     ["data.manual_dir=", "is not a folder"]),
    ("cifar_truncated", "cifar10", _data_cifar_truncated,
     ["cifar-10-python.tar.gz is not an intact cifar10 file", "differs from the published"]),
    ("cifar_missing_test_batch", "cifar10", _data_cifar_missing_batch,
     ["lacks ['test_batch']", "python* version"]),
    ("cifar_pickle_runs_code", "cifar10", _data_cifar_code_in_pickle,
     ["UnpicklingError", "not a CIFAR file"]),
    ("cifar_label_out_of_range", "cifar10", _data_cifar_label_range,
     ["has label 10", "cifar10 has 10 classes"]),
]


@pytest.mark.parametrize("case, name, make, fragments", DATA_CASES,
                         ids=[c[0] for c in DATA_CASES])
def test_bad_data_files_are_caught_before_preparing(case, name, make, fragments, tmp_path,
                                                    capsys, offline):
  del case, offline
  make(tmp_path)
  config = _mnist_config(tmp_path, data__name=name)
  line = _run_in_process(config, tmp_path / "run", capsys)
  _assert_names(line, *fragments)
  assert not os.path.exists(tmp_path / "data"), "a dataset was (partly) prepared"


def test_intact_files_with_other_checksums_pass(tmp_path, offline):
  """Debian recompresses the .gz files: a checksum mismatch alone is not an error."""
  del offline
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  fixtures_data.write_cifar_tarball(str(tmp_path / "manual"), "cifar10")
  checks.check_data(_mnist_config(tmp_path).data)
  checks.check_data(_mnist_config(tmp_path, data__name="cifar10").data)


def test_data_dir_not_writable(tmp_path, capsys, monkeypatch):
  # Root ignores permission bits, so the unwritable folder is simulated at os.access.
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  locked = str(tmp_path / "locked")
  os.mkdir(locked)
  access = os.access
  monkeypatch.setattr(os, "access",
                      lambda p, mode: False if str(p).startswith(locked) else access(p, mode))
  config = _mnist_config(tmp_path, data__data_dir=os.path.join(locked, "tfds"))
  line = _run_in_process(config, tmp_path / "run", capsys)
  _assert_names(line, f"data.data_dir={locked}/tfds", "not writable")


# --- workdirs -----------------------------------------------------------------------------------


def _claimed(workdir, config) -> None:
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(json.loads(json.dumps(config.to_dict(), default=list)), f)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write('{"split": "val", "epoch": 1}\n')


def test_workdir_of_another_config_is_refused_unless_overwrite(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  _claimed(workdir, tiny_config())
  line = _run_in_process(tiny_config(k=3), workdir, capsys)
  _assert_names(line, "holds a run of a different config", "k: 2 → 3", "--overwrite")
  # Fields that a resumed run may change are not "another config".
  workdir_lib.check_workdir(workdir, tiny_config(num_epochs=9).to_dict())
  workdir_lib.check_workdir(workdir, tiny_config(k=3).to_dict(), overwrite=True)


def test_workdir_problems(tmp_path, capsys, monkeypatch):
  (tmp_path / "file").write_text("x")
  line = _run_in_process(tiny_config(), tmp_path / "file", capsys)
  _assert_names(line, "exists and is not a folder")

  corrupt = tmp_path / "corrupt"
  corrupt.mkdir()
  (corrupt / "config.json").write_text('{"k": 2,')
  line = _run_in_process(tiny_config(), corrupt, capsys)
  _assert_names(line, "config.json cannot be read", "--overwrite")

  home = tmp_path / "home"  # --overwrite must never delete a folder that is not a run
  home.mkdir()
  (home / "thesis.tex").write_text("precious")
  line = _run_in_process(tiny_config(), home, capsys, overwrite=True)
  _assert_names(line, "holds files but no run (no config.json); refusing")

  line = _run_in_process(tiny_config(), tmp_path / "new", capsys, eval_only=True)
  _assert_names(line, "--eval_only", "holds no checkpoint to evaluate")
  line = _run_in_process(tiny_config(), tmp_path / "new", capsys, eval_only=True,
                         overwrite=True)
  _assert_names(line, "--eval_only with --overwrite")

  line = _run_in_process(tiny_config(), "", capsys)
  _assert_names(line, "--workdir is empty")

  locked = str(tmp_path / "locked")
  os.mkdir(locked)
  access = os.access
  monkeypatch.setattr(os, "access",
                      lambda p, mode: False if str(p).startswith(locked) else access(p, mode))
  line = _run_in_process(tiny_config(), os.path.join(locked, "run"), capsys)
  _assert_names(line, f"--workdir {locked}/run is not writable")


# --- flags and upstream JSON --------------------------------------------------------------------

FLAG_CASES = [
    ("unknown_field", ["--config.kk=3"], ["--config.kk=3: the config has no field 'kk'",
                                          "fields at the top:", "num_epochs"]),
    ("unknown_nested_field", ["--config.data.foo=1"],
     ["the config has no field 'data.foo'", "fields under data:", "batch_size"]),
    ("value_of_wrong_type", ["--config.k=abc"],
     ["--config.k=abc: not a valid int for k (the config has k=2)"]),
    ("config_file_missing", ["--config=ROOT/configs/nope.py"],
     ["--config=ROOT/configs/nope.py: FileNotFoundError"]),
    ("upstream_json_missing_keys", ["--config=ROOT/configs/upstream.py:BAD_KEYS"],
     ["unknown keys ['epochs']", "missing keys ['ec_k']"]),
]


@pytest.mark.parametrize("case, args, fragments", FLAG_CASES, ids=[c[0] for c in FLAG_CASES])
def test_flag_errors_are_explained(case, args, fragments, tmp_path):
  del case
  with open(MNIST_CONV) as f:
    conf = json.load(f)
  conf["epochs"] = conf.pop("ec_k")
  (tmp_path / "keys.json").write_text(json.dumps(conf))
  args = [a.replace("BAD_KEYS", str(tmp_path / "keys.json")).replace("ROOT", ROOT)
          for a in args]
  fragments = [f.replace("ROOT", ROOT) for f in fragments]
  error = ValueError(f"flag {args[-1]}: absl's message")
  _assert_names(cli.explain_flags_error(args, error, os.path.join(ROOT, "configs", "default.py")),
                *fragments)


# --- train.py as a subprocess: exit status, no traceback, nothing written ------------------------


def _train_py(*args, cwd=ROOT):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", HTTP_PROXY="http://127.0.0.1:9",
             HTTPS_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
             http_proxy="http://127.0.0.1:9")
  env.pop("JAX_NUM_CPU_DEVICES", None)
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args, "--noprogress"],
                          cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def test_train_py_bad_inputs_exit_2_with_one_line(tmp_path):
  (tmp_path / "bad.json").write_text('{"BaseModel": {"class": "base_models.base_mlp.BaseMLP"},')
  fixtures_data.write_mnist_files(str(tmp_path / "manual"))
  _truncate(tmp_path / "manual" / IDX_FILES[1])
  _claimed(str(tmp_path / "claimed"), tiny_config())
  before = _tree(tmp_path / "claimed")
  tiny_args = ["--config=configs/tiny.py", "--config.base_model.kwargs.hidden=(16,)",
               "--config.base_model.epochs=1"]
  cases = {
      "json": ([f"--config=configs/upstream.py:{tmp_path / 'bad.json'}",
                f"--workdir={tmp_path / 'w1'}"], ["not valid JSON", "bad.json"]),
      "flag": (["--config.kk=3", f"--workdir={tmp_path / 'w2'}"], ["no field 'kk'"]),
      "shape": (["--config=configs/tiny.py:k=3,encoder=concat,decoder=sub,parity_model=same,"
                 "loss=parity_mse", f"--workdir={tmp_path / 'w3'}"], ["W=8 divisible by 3"]),
      "data": ([*tiny_args, "--config.data.name=mnist", "--config.data.val_size=4",
                f"--config.data.data_dir={tmp_path / 'tfds'}",
                f"--config.data.manual_dir={tmp_path / 'manual'}",
                f"--workdir={tmp_path / 'w4'}"], [IDX_FILES[1], "EOFError"]),
      "workdir": ([*tiny_args, "--config.k=3", f"--workdir={tmp_path / 'claimed'}"],
                  ["holds a run of a different config", "--overwrite"]),
  }
  # Started together: each spends most of its few seconds importing.
  procs = {name: _train_py(*args) for name, (args, _) in cases.items()}
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (name, out, err)
    assert "Traceback" not in err, (name, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: "), (name, err)
    _assert_names(lines[-1], *cases[name][1])
  for folder in ("w1", "w2", "w3", "w4", "tfds"):
    assert not os.path.exists(tmp_path / folder), folder
  assert _tree(tmp_path / "claimed") == before


def test_verbose_shows_the_traceback(tmp_path):
  proc = _train_py("--config.k=0", f"--workdir={tmp_path / 'w'}", "--verbose")
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 2
  assert "Traceback" in err and err.strip().splitlines()[-1] == "error: k must be >= 1, got 0"
