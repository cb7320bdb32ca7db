"""``python train.py [FLAGS]`` in a checkout = ``lcc-train [FLAGS]`` (see lcc_jax/train_cli.py).

  python train.py                                            # the embedded default (digits)
  python train.py --config=configs/NAME.py[:ARGS] --workdir=DIR [--config.FIELD=VALUE ...]
  python train.py --config=... --dry_run                     # build, count, train nothing
"""
from lcc_jax import train_cli

if __name__ == "__main__":
  train_cli.run()
