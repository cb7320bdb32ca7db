"""The error of a bad config, shared by the config checks (``validate``) and the component
checks (``component_checks``)."""


class ConfigError(ValueError):
  """A bad config value, found before any work started."""


def require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)
