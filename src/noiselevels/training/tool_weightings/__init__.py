"""The training tools' own loss weights that are not a standard weighting: registered components, one
module per tool.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); flow σ = t = sigmoid(−λ/2) (t = 0 clean);
SNR = e^λ; every ``__call__`` returns w(λ) in ε-MSE units (Kingma & Gao 2023) unless its docstring
says it multiplies another loss (then wrap it with ``in_units``).

Registered as weightings (``weighting("ai_toolkit_weighted")``, ``weighting("kohya", ...)``) so that a
configuration using them is written to and read back from TOML like any other component; the tool
presets (``noiselevels.presets``) only compose them.
"""

from noiselevels.training.tool_weightings.ai_toolkit import AiToolkitLinearTimesteps, AiToolkitWeighted
from noiselevels.training.tool_weightings.kohya import KohyaWeighting

__all__ = ["AiToolkitLinearTimesteps", "AiToolkitWeighted", "KohyaWeighting"]
