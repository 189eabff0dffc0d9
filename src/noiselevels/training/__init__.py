"""Training-side noise levels: densities p(λ), weightings w(λ) in ε-MSE units, and the objective.

Submodules (imported explicitly, never from here, so that importing ``noiselevels.training``
creates no import cycles): ``densities``, ``weightings``, ``objective``, ``adaptive``.
"""
