"""Coded prediction serving, simulated: what a code buys in tail latency and accuracy under load.

  python -m lcc_jax.serving [--workdir=DIR] --out=OUT [--scenario=parm]

Modules: ``service`` (service-time and interference models, timings measured from a run),
``schemes`` (no redundancy, replication, hedging, systematic and non-systematic codes),
``simulate`` (the SimPy model of one scheme at one arrival rate), ``accuracy`` (what each
answer is worth, from lcc_jax.evaluation's per-pattern counts), ``scenario`` (the sweeps),
``report`` (CSV, Markdown, plot). See docs/serving.md.
"""
