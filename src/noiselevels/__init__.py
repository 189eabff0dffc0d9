"""noiselevels: the noise levels of diffusion and flow-matching models, in logSNR.

λ = logsnr = log(α²/σ²) (large = clean); z = α·x₀ + σ·ε for the processes ``vp``, ``ve``, ``flow``;
t ∈ [0, 1] with t = 0 clean; loss weights in ε-MSE units; the effective weighting W(λ) = p(λ)·w(λ).
See docs/conventions.md.

The public API is a few functions and classes, loaded lazily (PEP 562) so that ``import noiselevels``
and ``noiselevels --help`` stay fast::

    import noiselevels as nl
    density = nl.density("uniform_t", schedule=nl.schedule("cosine"))
    weight  = nl.weighting("min_snr", gamma=5.0)
    loss_fn = nl.Objective(process="vp", parameterization=nl.parameterization("v"),
                           density=density, weighting=weight)
    W = nl.effective_weighting(density, weight)
    sigmas = nl.spacing("karras", rho=7).sigmas(18, sigma_min=0.002, sigma_max=80.0)
    x = nl.solve(denoiser, noise * sigmas[0], sigmas=sigmas, solver="heun")

Training, sampling and evaluating real models: ``nl.train``, ``nl.load_run``, ``nl.generate``,
``nl.evaluate_run``; fine-tuning and experiments: ``nl.finetune``, ``nl.run_sweep``; the submodules
``nl.toy`` (exact problems) and ``nl.spectral`` (per-instance schedules).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # levels
    "alpha_sigma": "levels",
    "sigma_ve": "levels",
    "logsnr_from_sigma": "levels",
    "flow_t": "levels",
    "logsnr_from_flow_t": "levels",
    # schedules
    "schedule": "schedules",
    "shift": "schedules",
    "zero_terminal_snr": "schedules",
    "flux_mu": "schedules",
    "flux_shift": "schedules",
    # parameterisations
    "parameterization": "parameterizations",
    "edm_preconditioning": "parameterizations",
    # training
    "density": "training.densities",
    "mixture": "training.densities",
    "truncated": "training.densities",
    "weighting": "training.weightings",
    "in_units": "training.weightings",
    "Objective": "training.objective",
    "ObjectiveOutput": "training.objective",
    "LossImportanceSampler": "training.adaptive",
    "UncertaintyWeighting": "training.adaptive",
    "TimeWarp": "training.adaptive",
    "LearnedSchedule": "training.adaptive",
    "load_adaptive": "runs.adaptive",
    # analysis, presets, configuration
    "effective_weighting": "analysis",
    "compare": "analysis",
    "alignment": "analysis",
    "preset": "presets",
    "list_presets": "presets",
    "NoiseConfig": "noise",
    "load_config": "config",
    # sampling
    "spacing": "sampling.spacings",
    "solve": "sampling.solvers",
    "as_denoiser": "sampling.denoiser",
    "optimize_spacing": "sampling.optimize",
    # components
    "from_dict": "catalog",
    # training, sampling and evaluating real models
    "TrainConfig": "runs.config",
    "load_train_config": "runs.config",
    "train": "runs.train",
    "load_run": "runs.run",
    "generate": "runs.run",
    "bits_per_dim": "runs.evaluate",
    "sample_quality": "runs.evaluate",
    "evaluate_run": "runs.evaluate",
    # fine-tuning and experiments
    "finetune": "runs.finetune",
    "load_model": "runs.lora",
    "load_sweep": "runs.sweep",
    "run_sweep": "runs.sweep",
}
# public submodules, also loaded lazily: nl.toy.mixture_2d(), nl.spectral.rapsd(images)
_MODULES: dict[str, str] = {"toy": "sampling.toy", "spectral": "spectral"}

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        module = importlib.import_module(f"noiselevels.{_MODULES[name]}")
        globals()[name] = module
        return module
    if name in _EXPORTS:
        module = importlib.import_module(f"noiselevels.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'noiselevels' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
