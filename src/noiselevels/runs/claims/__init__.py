"""The field's claims about noise levels, each reproduced by one experiment with ≥ 3 seeds and a 95 %
interval: ``noiselevels reproduce NAME [--quick]`` (``noiselevels.commands.reproduce``), results in
``benchmarks/results/claims/NAME.json`` and the table in ``docs/claims.md`` (``benchmarks/claims.py``).

Modules: ``registry`` (``Claim``, ``CLAIMS``, ``finding``), ``stats`` (t intervals of means, paired
differences and ratios; W₁), ``lean`` (the small MLP experiment the claims share), ``mnist``
(min-SNR-γ, importance sampling, EDM2 uncertainty, flow logit-normal), ``brightness`` (zero terminal
SNR, noise offset), ``finetune`` (the fine-tuning rules of thumb on ``mnist-base``), ``report``
(running a claim, its JSON and the Markdown table).
"""

from noiselevels.runs.claims import brightness, finetune, mnist  # noqa: F401  (register the claims)
from noiselevels.runs.claims.registry import CLAIMS, Claim
from noiselevels.runs.claims.report import markdown_table, run_claim

__all__ = ["CLAIMS", "Claim", "markdown_table", "run_claim"]
