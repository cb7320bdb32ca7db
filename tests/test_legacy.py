"""Upstream JSON configs (lcc_jax/legacy.py, configs/upstream.py) against docs/upstream.md §Config
formats."""
from __future__ import annotations

import json
import logging
import os
import shutil

import jax
from ml_collections import config_flags
import pytest

import helpers
from configs import common, learned_cc, parity_models, upstream
from lcc_jax import legacy, nn, registry, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "upstream")
LCC_CONF = os.path.join(FIXTURES, "learned-cc", "conf")
MNIST_CONV = os.path.join(LCC_CONF, "mnist", "base-mlp", "k2", "kl-base", "conv", "conf.json")
CIFAR_XENT = os.path.join(LCC_CONF, "cifar10", "resnet18", "k5", "xent-label", "mlp", "conf.json")
PM_CONFIG = os.path.join(FIXTURES, "parity-models", "config")


def _pm(name):
  return os.path.join(PM_CONFIG, name)


def _modified(tmp_path, source, **changes):
  """A copy of JSON ``source`` with top-level keys changed (None deletes)."""
  with open(source) as f:
    conf = json.load(f)
  for key, value in changes.items():
    if value is None:
      conf.pop(key)
    else:
      conf[key] = value
  path = tmp_path / os.path.basename(source)
  path.write_text(json.dumps(conf))
  return str(path)


def _load(path):
  """(name, full config) of every run of an upstream JSON file, as configs/upstream.py makes."""
  return [(name, common.config(run)) for name, run in legacy.read_runs(path)]


def _load_one(path):
  (name, c), = _load(path)
  assert name == ""
  return c


# --- learned-cc conf.json ----------------------------------------------------------------------

def test_learned_cc_mnist_conv_maps_every_field(caplog):
  with caplog.at_level(logging.WARNING):
    c = _load_one(MNIST_CONV)
  assert (c.k, c.r, c.data.name, c.data.batch_size, c.num_epochs) == (2, 1, "mnist", 64, 500)
  assert (c.base_model.name, c.base_model.kwargs.to_dict()) == ("base-mlp", {})
  assert c.encoder.name == "conv"
  assert c.encoder.kwargs.to_dict() == {"intermediate_channels_multiplier": 20, "impl": "auto"}
  assert (c.decoder.name, c.loss) == ("mlp", "kl")
  assert (c.optim.name, c.optim.lr, c.optim.weight_decay) == ("adam", 1e-3, 1e-5)
  assert (c.train.encoder, c.train.decoder, c.train.parity_model) == (True, True, False)
  assert (c.parity_model.name, c.upstream_init, c.data.augment) == ("", True, False)
  # No base_model_trained_files above the fixture: F is trained first, with a warning.
  assert c.base_model.checkpoint == ""
  assert "base_model_file" in caplog.text and "trained first" in caplog.text
  # The same run as the Python family's entry.
  expected = learned_cc.get_config("dataset=mnist,model=base-mlp,k=2,loss=kl,encoder=conv")
  assert c.to_dict() == expected.to_dict()


def test_learned_cc_conv_encoder_has_upstreams_parameter_count():
  c = _load_one(MNIST_CONV)
  encoder = registry.build("encoder", c.encoder.name, k=c.k, r=c.r, input_shape=(28, 28, 1),
                           **c.encoder.kwargs)
  # docs/upstream.md §Conv encoder: ConvEncoder with 20·k channels, k = 2, r = 1.
  assert nn.count_params(jax.eval_shape(encoder.init, jax.random.key(0))) == 73_001


def test_learned_cc_cifar_resnet18_xent():
  c = _load_one(CIFAR_XENT)
  assert (c.k, c.r, c.data.name, c.data.batch_size, c.num_epochs) == (5, 1, "cifar10", 32, 2000)
  assert (c.base_model.name, c.base_model.kwargs.to_dict()) == ("resnet18", {"variant": "cifar"})
  assert (c.encoder.name, c.encoder.kwargs.to_dict(), c.decoder.name) == ("mlp", {}, "mlp")
  assert (c.loss, c.data.augment) == ("xent", True)
  expected = learned_cc.get_config("dataset=cifar10,model=resnet18,k=5,loss=xent,encoder=mlp")
  assert c.to_dict() == expected.to_dict()


def test_base_model_file_found_above_the_conf(tmp_path):
  # Upstream's layout: <repo>/conf/<...>/conf.json and <repo>/base_model_trained_files/<...>.
  repo = tmp_path / "learned-cc"
  shutil.copytree(LCC_CONF, repo / "conf")
  weights = repo / "base_model_trained_files" / "mnist" / "base-mlp" / "model.t7"
  weights.parent.mkdir(parents=True)
  weights.write_bytes(b"weights")
  conf = repo / "conf" / "mnist" / "base-mlp" / "k2" / "kl-base" / "conv" / "conf.json"
  assert _load_one(str(conf)).base_model.checkpoint == str(weights)


def test_base_model_file_relative_to_working_directory(tmp_path, monkeypatch):
  weights = tmp_path / "base_model_trained_files" / "mnist" / "base-mlp" / "model.t7"
  weights.parent.mkdir(parents=True)
  weights.write_bytes(b"weights")
  monkeypatch.chdir(tmp_path)
  assert _load_one(MNIST_CONV).base_model.checkpoint == str(weights)


def test_absolute_base_model_file_and_continue_from_file(tmp_path, caplog):
  weights = tmp_path / "f.pth"
  weights.write_bytes(b"weights")
  path = _modified(tmp_path, MNIST_CONV, base_model_file=str(weights),
                   continue_from_file="save/current.pth")
  with caplog.at_level(logging.WARNING):
    c = _load_one(path)
  assert c.base_model.checkpoint == str(weights)
  assert "continue_from_file" in caplog.text and "ignored" in caplog.text


def test_learned_cc_honours_k_r_epochs_batch_and_optimizer(tmp_path):
  opt = {"class": "torch.optim.Adam", "args": {"lr": 0.01, "weight_decay": 0}}
  path = _modified(tmp_path, MNIST_CONV, ec_k=3, ec_r=2, final_epoch=7, batch_size=16,
                   EncoderOptimizer=opt, DecoderOptimizer=opt)
  c = _load_one(path)
  assert (c.k, c.r, c.num_epochs, c.data.batch_size) == (3, 2, 7, 16)
  assert (c.optim.lr, c.optim.weight_decay) == (0.01, 0.0)


@pytest.mark.parametrize("changes, match", [
    (dict(Encoder={"class": "coders.fancy.FancyEncoder"}),
     r"unsupported Encoder class 'coders.fancy.FancyEncoder'; supported: .*coders.conv\.Conv"),
    (dict(BaseModel={"class": "torchvision.models.resnet18"}), "unsupported BaseModel class"),
    (dict(Loss={"class": "torch.nn.L1Loss"}), r"unsupported Loss class.*loss.kldiv.KLDivLoss"),
    (dict(extra_flag=True), r"unknown keys \['extra_flag'\]"),
    (dict(save_dir=None), r"missing keys \['save_dir'\]"),
    (dict(Dataset={"class": "datasets.code_dataset.CatDogCodeDataset"}),
     "'cat_v_dog' is not supported: .*AWS"),
    (dict(Dataset={"class": "datasets.gcommands_dataset.GCommandsCodeDataset"}),
     "'gcommands' is not supported"),
    (dict(DecoderOptimizer={"class": "torch.optim.Adam", "args": {"lr": 0.1}}),
     "one optimizer"),
    (dict(EncoderOptimizer={"class": "torch.optim.Adam", "args": {"momentum": 0.9}}),
     r"unsupported EncoderOptimizer args \['momentum'\]"),
    (dict(base_model_input_size=[-1, 3, 32, 32]), "base_model_input_size"),
    (dict(BaseModel={"class": "base_models.base_mlp.BaseMLP", "args": {"num_classes": 100}}),
     "num_classes=100"),
    (dict(Encoder={"class": "coders.summation.AdditionEncoder"}), "learned ones"),
    (dict(ec_k=0), "ec_k must be an integer >= 1"),
])
def test_learned_cc_errors(tmp_path, changes, match):
  with pytest.raises(ValueError, match=match):
    legacy.read_runs(_modified(tmp_path, MNIST_CONV, **changes))


# --- parity-models sweep JSON ------------------------------------------------------------------

def test_mnist_concat_sweep():
  entries = _load(_pm("mnist-concat.json"))
  # docs/upstream.md §Config formats: 500 epochs, k ∈ {2, 4}, mnist × {base-mlp, resnet18}, parity
  # model only.
  assert [name for name, _ in entries] == [
      "mnist/base-mlp/k2/parity_mse/concat-sub", "mnist/base-mlp/k4/parity_mse/concat-sub",
      "mnist/resnet18/k2/parity_mse/concat-sub", "mnist/resnet18/k4/parity_mse/concat-sub"]
  for name, c in entries:
    assert (c.data.name, c.num_epochs, c.r, c.loss) == ("mnist", 500, 1, "parity_mse")
    assert c.data.batch_size == {2: 64, 4: 32}[c.k]
    assert (c.encoder.name, c.decoder.name, c.parity_model.name) == ("concat", "sub", "same")
    assert (c.train.encoder, c.train.decoder, c.train.parity_model) == (False, False, True)
    assert c.parity_model.init == "scratch"  # F_P from init_weights, as upstream
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay) == ("adam", 1e-3, 1e-5)
    kwargs = {"variant": "mnist"} if c.base_model.name == "resnet18" else {}
    assert c.base_model.kwargs.to_dict() == kwargs
    expected = parity_models.get_config(
        f"dataset=mnist,model={c.base_model.name},k={c.k},code=concat")
    assert c.to_dict() == expected.to_dict(), name


def test_cifar10_learned_runs_f_itself_and_says_so(caplog):
  with caplog.at_level(logging.WARNING):
    entries = _load(_pm("cifar10-learned.json"))
  assert [c.k for _, c in entries] == [2, 3, 4]
  for _, c in entries:
    assert (c.data.name, c.base_model.name, c.num_epochs) == ("cifar10", "resnet18", 500)
    assert c.base_model.kwargs.to_dict() == {"variant": "cifar"}
    assert (c.encoder.name, c.decoder.name, c.loss) == ("conv", "mlp", "mse")
    assert (c.train.encoder, c.train.decoder, c.train.parity_model) == (True, True, False)
    assert c.parity_model.name == ""  # F itself, not upstream's random frozen copy (a bug)
    assert (c.upstream_init, c.data.augment) == (False, True)
    expected = parity_models.get_config(f"dataset=cifar10,model=resnet18,k={c.k},code=learned-conv")
    assert c.to_dict() == expected.to_dict()
  assert "§Known upstream bugs" in caplog.text


def test_sweep_checkpoints_found_beside_the_config_folder(tmp_path):
  # Upstream's layout: train/config/x.json and train/base_model_trained_files/<ds>/<model>/model.t7.
  (tmp_path / "config").mkdir()
  shutil.copy(_pm("mnist-concat.json"), tmp_path / "config")
  weights = tmp_path / "base_model_trained_files" / "mnist" / "base-mlp" / "model.t7"
  weights.parent.mkdir(parents=True)
  weights.write_bytes(b"weights")
  entries = _load(str(tmp_path / "config" / "mnist-concat.json"))
  checkpoints = {c.base_model.name: c.base_model.checkpoint for _, c in entries}
  assert checkpoints == {"base-mlp": str(weights), "resnet18": ""}


def test_gcommands_is_rejected_with_the_reason():
  with pytest.raises(ValueError, match="'gcommands' is not supported: .*no offline source"):
    legacy.read_runs(_pm("gcommands.json"))


def test_unknown_class_path_lists_supported_ones():
  with pytest.raises(ValueError, match=r"'coders.fancy.FancyEncoder'; supported: \[.*"
                                       r"coders.summation.AdditionEncoder"):
    legacy.read_runs(_pm("unknown-encoder.json"))


@pytest.mark.parametrize("changes, match", [
    (dict(datasets=["cat_v_dog"]), "'cat_v_dog' is not supported"),
    (dict(models=["vgg11"]), "upstream's gcommands model"),
    (dict(models=["resnet152"]), "only on dataset 'cifar100'"),
    (dict(models=["alexnet"]), r"unsupported model 'alexnet'; supported: \['base-mlp'"),
    (dict(losses=["loss.kldiv.KLDivLoss"]), "needs a trained decoder"),
    (dict(train_parity_model=False), "nothing would be trained"),
    (dict(train_encoder=True), "train_encoder=true but encoder 'concat' has no parameters"),
    (dict(batch_size=64), r"unknown keys \['batch_size'\]"),
    (dict(train_decoder=None), r"missing keys \['train_decoder'\]"),
    (dict(k_vals=[]), "k_vals must be a non-empty list"),
    (dict(datasets=["mnist", "mnist"]), "unique"),
])
def test_sweep_errors(tmp_path, changes, match):
  path = _modified(tmp_path, _pm("mnist-concat.json"), **changes)
  with pytest.raises(ValueError, match=match):
    if match == "unique":  # repeated list values give repeated run names
      sweep.load_entries(os.path.join(ROOT, "configs", "upstream.py"), path)
    else:
      legacy.read_runs(path)


def test_neither_format_is_rejected(tmp_path):
  path = tmp_path / "x.json"
  path.write_text(json.dumps({"epochs": 3}))
  with pytest.raises(ValueError, match="neither a learned-cc conf.json"):
    legacy.read_runs(str(path))


# --- configs/upstream.py -----------------------------------------------------------------------

def test_upstream_config_file_get_config_and_get_sweep():
  path = _pm("mnist-concat.json")
  first = upstream.get_config(path)
  assert (first.base_model.name, first.k) == ("base-mlp", 2)
  entries = upstream.get_sweep(path)
  assert [e["name"] for e in entries] == [n for n, _ in legacy.read_runs(path)]
  picked = upstream.get_config(entries[3]["arg"])
  assert (picked.base_model.name, picked.k) == ("resnet18", 4)
  assert upstream.get_sweep(entries[3]["arg"]) == [entries[3]]
  assert upstream.get_sweep(MNIST_CONV) == [{"name": "", "arg": MNIST_CONV}]
  with pytest.raises(ValueError, match="no run named 'nope'"):
    upstream.get_config(path + "#nope")
  with pytest.raises(ValueError, match="needs the JSON file"):
    upstream.get_config()


def test_load_entries_runs_a_whole_upstream_sweep():
  entries = sweep.load_entries(os.path.join(ROOT, "configs", "upstream.py"),
                               _pm("cifar10-learned.json"))
  assert [name for name, _ in entries] == [f"cifar10/resnet18/k{k}/mse/conv-mlp" for k in (2, 3, 4)]
  assert [c.k for _, c in entries] == [2, 3, 4]
  single = sweep.load_entries(os.path.join(ROOT, "configs", "upstream.py"), MNIST_CONV)
  assert [name for name, _ in single] == [""]


def test_absl_flag_with_upstream_json_and_override():
  argv = ["prog", f"--config={ROOT}/configs/upstream.py:{CIFAR_XENT}",
          "--config.data.manual_dir=/data/cifar", "--config.num_epochs=3"]
  values = helpers.parse_config_flag(argv)
  c = values.config
  assert (c.data.manual_dir, c.num_epochs, c.k, c.loss) == ("/data/cifar", 3, 5, "xent")
