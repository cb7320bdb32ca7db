"""``python -m bench``: see bench/run.py."""
from bench import run

run.main()
