"""Experiment configs (ml_collections); see docs/configs.md."""
