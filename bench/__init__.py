"""Benchmarks of lcc_jax: speed against PyTorch, against this machine's limits, sweep cost.

Entry point: ``python -m bench [--quick]`` (bench/run.py); results in BENCHMARKS.md.
"""
