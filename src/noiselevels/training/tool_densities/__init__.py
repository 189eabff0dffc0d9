"""The training tools' own timestep samplers that are not a standard density: registered components, one
module per tool (``ai_toolkit``: the level at an index of a grid redrawn every step, content_or_style;
``onetrainer``: integer timesteps drawn into a T-entry table).

Conventions: every density is over λ = ``logsnr`` = log(α²/σ²) (large = clean) with an exact ``log_prob``,
``cdf`` and ``icdf``; an integer timestep i of a T-step table is read as the cell t ∈ (i/T, (i + 1)/T] of the
schedule's continuous view, whose upper end t = (i + 1)/T is the table's own level.
"""

from noiselevels.training.tool_densities.ai_toolkit import AiToolkitContentOrStyle, AiToolkitRandomGrid
from noiselevels.training.tool_densities.onetrainer import OneTrainerSigma, OneTrainerTimesteps

__all__ = ["AiToolkitContentOrStyle", "AiToolkitRandomGrid", "OneTrainerSigma", "OneTrainerTimesteps"]
