"""Runs: configurations, the training step and loop, training and fine-tuning, evaluation, sweeps and reports,
data sets, models and checkpoints — everything that turns the noise-level components into a trained model.

Submodules are imported explicitly (``noiselevels.runs.train``); this package imports nothing, so that
``noiselevels.runs.train`` stays the module and ``noiselevels.train`` the function.
"""
