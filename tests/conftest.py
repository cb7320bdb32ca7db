"""Test set-up: CPU only, 4 virtual devices. Must run before anything imports jax."""
import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import pytest  # noqa: E402  (after the environment is set)


@pytest.fixture
def offline(monkeypatch):
  """Every HTTP(S) request goes to a closed local port: 'no network' without touching one."""
  for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    monkeypatch.setenv(var, "http://127.0.0.1:9")
  for var in ("NO_PROXY", "no_proxy"):
    monkeypatch.delenv(var, raising=False)
