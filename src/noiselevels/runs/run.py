"""A trained run loaded from its folder, and sampling a model: :func:`load_run`, :func:`generate`.

**Reproducible sampling** (as EDM's ``generate.py``): sample i of ``generate(..., seed=s)`` depends only on
(s, i) — not on ``num``, the batch size or the device's batch layout. Each sample has its own CPU
``torch.Generator`` seeded with a 32-bit hash of (s, i) (numpy's ``SeedSequence([s, i])``; torch's CPU
generator keeps only 32 bits of a seed) (:func:`sample_generators`); it draws the sample's initial
noise, its per-instance noise-level bounds (spectral runs) and, through ``noiselevels.sampling.solvers.
solve``'s per-row generators, the noise of stochastic solvers. So the first 4 images of ``num=8`` are the
images of ``num=4``, and ``batch_size`` changes the speed, not the images.

Conventions: samples are returned on the VE (data) scale, shape (num, *shape), float32 on the CPU; σ is
the VE noise level σ/α, λ = −2·log σ.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from noiselevels.config import NoiseConfig
from noiselevels.noise import NoiseConfigWarning, reaches_zero_snr
from noiselevels.runs.checkpoint import CheckpointError, load_checkpoint
from noiselevels.runs.config import TrainConfig, build_model_for, load_train_config, noise_config
from noiselevels.runs.images import make_grid, save_image
from noiselevels.runs.profile import profile_range
from noiselevels.sampling.denoiser import as_denoiser
from noiselevels.sampling.solvers import initial_x, solve
from noiselevels.sampling.spacings import SPACINGS
from noiselevels.sampling.spacings import spacing as make_spacing
from noiselevels.spectral import SpectralRun, solve_per_instance

__all__ = [
    "Run",
    "default_sigma_range",
    "generate",
    "initial_noise",
    "load_run",
    "run_schedule",
    "sample_generators",
    "sample_seed",
    "spacing_for_run",
]



@dataclasses.dataclass
class Run:
    """A trained run loaded from its folder."""

    path: Path
    config: TrainConfig
    model: torch.nn.Module
    noise: NoiseConfig
    step: int
    data: dict[str, Any]
    spectral: SpectralRun | None = None  # a per-instance run's bounds mixture (spectral.json)

    @property
    def process(self) -> str:
        return self.noise.process

    @property
    def parameterization(self):
        return self.objective.parameterization

    @property
    def objective(self):
        return self.noise.objective()

    @property
    def conditional(self) -> bool:
        return self.config.model.get("num_classes") is not None

    def trained_sigma_range(self) -> tuple[float, float] | None:
        """(σ_min, σ_max) on the VE scale of the levels the model was trained on: the training
        density's [0.1 %, 99.9 %] quantiles within λ ∈ [−20, 20] (the loss profile's range,
        :func:`profile_range`). None for a per-instance (spectral) run, whose range is per image."""
        if self.spectral is not None:
            return None
        lo, hi = profile_range(self.noise.density)
        return math.exp(-hi / 2), math.exp(-lo / 2)

    def denoiser(self, **cond):
        """The k-diffusion denoiser D(x, σ) → x̂₀ of the model (noiselevels.sampling.denoiser)."""
        return as_denoiser(self.model, process=self.process, parameterization=self.parameterization, **cond)


def _read_meta(path: Path) -> dict[str, Any]:
    """A run's ``data.json``; unreadable or of the wrong shape: ``ValueError`` naming the file."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    shape = meta.get("shape") if isinstance(meta, dict) else None
    if not (isinstance(shape, list) and shape and all(isinstance(n, int) and n > 0 for n in shape)):
        raise ValueError(f"{path} has the wrong shape: expected an object with a 'shape' list of sizes")
    return meta


def load_run(path: str | os.PathLike, *, ema: bool = True, device: str | torch.device = "cpu") -> Run:
    """Load a run folder written by ``train``: its configuration and the newest checkpoint's weights
    (the EMA weights when ``ema`` and they exist). The model is returned in eval mode.

    Raises ``ValueError`` (one line) for a folder that is not a run or holds a corrupt checkpoint.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a run folder (no config.json)")
    cfg = load_train_config(path / "config.json")
    ck = load_checkpoint(path / "checkpoints")
    meta_path = path / "data.json"
    meta = _read_meta(meta_path) if meta_path.is_file() else cfg.data.load("train").metadata()
    model, _ = build_model_for(cfg.model, meta)
    weights = ck.ema if (ema and ck.ema is not None) else ck.model
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {ck.path} does not fit the configured model: {first}") from None
    model.to(device).eval().requires_grad_(False)
    spectral = None
    if (path / "spectral.json").is_file():  # a per-instance (spectral) run
        spectral = SpectralRun.from_dict(json.loads((path / "spectral.json").read_text()))
    return Run(
        path=path,
        config=cfg,
        model=model,
        noise=noise_config(cfg.noise),
        step=ck.step,
        data=meta,
        spectral=spectral,
    )


# ------------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------------
def default_sigma_range(process: str) -> tuple[float, float]:
    """(σ_min, σ_max) on the VE scale used for sampling unless the user says otherwise: EDM's
    (0.002, 80) — λ from −8.8 to 12.4."""
    return 0.002, 80.0


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    return seed


def sample_seed(seed: int, index: int) -> int:
    """The 32-bit generator seed of sample ``index`` of ``seed``: numpy's ``SeedSequence([seed, index])``
    (distinct pairs give unrelated seeds; 32 bits because torch's CPU generator uses no more)."""
    return int(np.random.SeedSequence([_check_seed(seed), int(index)]).generate_state(1, np.uint32)[0])


def sample_generators(seed: int, indices: Sequence[int] | range) -> list[torch.Generator]:
    """One CPU generator per sample index i, seeded with :func:`sample_seed` (the module docstring)."""
    _check_seed(seed)
    return [torch.Generator().manual_seed(sample_seed(seed, i)) for i in indices]


def initial_noise(generators: Sequence[torch.Generator], shape: Sequence[int]) -> Tensor:
    """Standard normal noise (len(generators), *shape): row b drawn from ``generators[b]``."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators])


def run_schedule(noise_cfg):
    """The schedule a run was trained on: its ``[noise.schedule]``, else its density's ``schedule``
    (``uniform_t``), else None."""
    if noise_cfg.schedule is not None:
        return noise_cfg.schedule
    return getattr(noise_cfg.density, "schedule", None)


def spacing_for_run(noise_cfg, name: str, params: Mapping[str, Any] | None = None):
    """The spacing ``name`` with the run's own schedule filled in where the spacing takes a ``schedule``
    and none is given: always for those that need one (``uniform_t``, ``beta``), and for ComfyUI's table
    schedulers (default: Stable Diffusion's table) when the run's schedule is a discrete table. So
    ``uniform_t`` with ``rule=trailing`` on a zero-terminal-SNR run starts at σ = inf."""
    kw = dict(params or {})
    own = run_schedule(noise_cfg)
    cls = SPACINGS.get(name)
    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    if "schedule" in fields and "schedule" not in kw and own is not None:
        needs = fields["schedule"].default is None
        if needs or hasattr(own, "logsnr_table"):
            kw["schedule"] = own
    return make_spacing(name, **kw)


def _sigma_grid(noise_cfg, *, sigmas, spacing, spacing_params, steps, sigma_min, sigma_max) -> Tensor:
    """The shared VE σ grid: explicit ``sigmas``, or ``spacing`` (the run's schedule filled in,
    :func:`spacing_for_run`) over [σ_min, σ_max] (EDM's default; a table's own range for spacings
    that take it from a table)."""
    if sigmas is None:
        sp = spacing_for_run(noise_cfg, spacing, spacing_params)
        lo, hi = default_sigma_range(noise_cfg.process)
        if sp.fixed_range and sigma_min is None and sigma_max is None:
            lo = hi = None
        lo = lo if sigma_min is None else sigma_min
        hi = hi if sigma_max is None else sigma_max
        sigmas = sp.sigmas(steps, sigma_min=lo, sigma_max=hi)
    return torch.as_tensor(sigmas, dtype=torch.float64)


def _warn_finite_start(noise_cfg, sigmas: Tensor) -> None:
    """Warn when a zero-terminal-SNR model is sampled from a finite σ (not from pure noise)."""
    if reaches_zero_snr(noise_cfg) and math.isfinite(float(sigmas[0])):
        warnings.warn(
            f"this zero-terminal-SNR model is sampled from σ = {float(sigmas[0]):.4g}, not from pure noise "
            "(σ = inf), so it keeps the brightness bias ZTSNR removes (Lin et al. 2024, §3.3): use "
            "--spacing uniform_t --spacing-param rule=trailing",
            NoiseConfigWarning,
            stacklevel=3,
        )


def _check_batch(num: Any, batch_size: Any) -> None:
    for name, v in (("num", num), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {v!r}")


@torch.no_grad()
def generate(
    model,
    noise_cfg,
    shape: tuple[int, ...],
    *,
    num: int,
    steps: int = 20,
    spacing: str = "karras",
    spacing_params: Mapping[str, Any] | None = None,
    solver: str = "heun",
    sigmas: Tensor | None = None,
    labels: Tensor | None = None,
    guidance: float | None = None,
    seed: int = 0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    spectral: SpectralRun | None = None,
) -> Tensor:
    """Draw ``num`` samples (num, *shape) from a model by solving the probability-flow ODE/SDE.

    Uses ``noiselevels.sampling``: the spacing ``spacing(**spacing_params).sigmas(steps, ...)`` (or the
    explicit VE ``sigmas``, decreasing with a trailing 0), the solver, and the model wrapped by
    ``as_denoiser``; x_T = σ_max·n with n ~ N(0, I). Sample i depends only on (``seed``, i), whatever
    ``num`` and ``batch_size`` (the module docstring). Returns VE-scale x₀ (data scale).

    ``spectral`` (a ``noiselevels.spectral.SpectralRun``, ``Run.spectral`` of a per-instance run): each
    sample draws its (λ_min, λ_max) from the run's mixture (per label), is conditioned on them and
    follows its own σ grid (``spacing`` over its range, or ``"schedule"``: its own schedule at even t)
    with ``noiselevels.spectral.solve_per_instance`` (euler, heun or dpmpp_2m).
    """
    _check_seed(seed)
    _check_batch(num, batch_size)
    if spectral is not None:
        return _generate_spectral(
            model,
            noise_cfg,
            shape,
            spectral,
            num=num,
            steps=steps,
            spacing=spacing,
            spacing_params=spacing_params,
            solver=solver,
            sigmas=sigmas,
            labels=labels,
            guidance=guidance,
            seed=seed,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            batch_size=batch_size,
            device=device,
        )
    guided = guidance is not None and guidance != 1.0
    if guided and labels is None:
        raise ValueError("guidance needs class labels (a class-conditional model and --class)")
    sigmas = _sigma_grid(noise_cfg, sigmas=sigmas, spacing=spacing, spacing_params=spacing_params,
                         steps=steps, sigma_min=sigma_min, sigma_max=sigma_max)  # fmt: skip
    _warn_finite_start(noise_cfg, sigmas)
    param = noise_cfg.objective().parameterization
    outs = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        gens = sample_generators(seed, range(start, start + n))
        noise = initial_noise(gens, shape)
        cond: dict[str, Any] = {}
        if labels is not None:
            cond["labels"] = labels[start : start + n].to(device)
        if guided:
            cond.update(guidance=float(guidance), uncond={"labels": None})
        den = as_denoiser(model, process=noise_cfg.process, parameterization=param, **cond)
        x = initial_x(noise, sigmas).to(device)  # noise·σ_0, or the noise itself when σ_0 = inf (ZTSNR)
        x = solve(den, x, sigmas=sigmas.to(device), solver=solver, generator=gens)
        outs.append(x.float().cpu())
    return torch.cat(outs)


@torch.no_grad()
def _generate_spectral(
    model,
    noise_cfg,
    shape,
    spectral,
    *,
    num,
    steps,
    spacing,
    spacing_params,
    solver,
    sigmas,
    labels,
    guidance,
    seed,
    sigma_min,
    sigma_max,
    batch_size,
    device,
) -> Tensor:
    """``generate`` for a per-instance (spectral) run; see ``generate``. Sample i's bounds and its
    initial noise come from its own generator, in that order."""
    if sigmas is not None or sigma_min is not None or sigma_max is not None:
        raise ValueError(
            "a per-instance (spectral) run samples each instance's own σ range; drop sigmas / sigma_min / "
            "sigma_max (choose --spacing, e.g. 'schedule' or 'karras')"
        )
    if guidance is not None:
        raise ValueError("classifier-free guidance is not supported for per-instance (spectral) sampling")
    param = noise_cfg.objective().parameterization
    outs = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        lab = None if labels is None else labels[start : start + n].cpu()
        grids, extras, noises = [], [], []
        for b, g in enumerate(sample_generators(seed, range(start, start + n))):
            row_label = None if lab is None else lab[b : b + 1]
            grid, extra = spectral.sampling_grid(
                1, steps, labels=row_label, spacing=spacing, spacing_params=spacing_params, generator=g
            )
            grids.append(grid)
            extras.append(extra)
            noises.append(torch.randn(tuple(shape), generator=g))
        grid, noise = torch.cat(grids), torch.stack(noises)
        cond: dict[str, Any] = {"extra": torch.cat(extras).to(device=device, dtype=noise.dtype)}
        if lab is not None:
            cond["labels"] = lab.to(device)
        den = as_denoiser(model, process=noise_cfg.process, parameterization=param, **cond)
        x = (noise * grid[:, :1].reshape(-1, *([1] * len(shape))).to(noise.dtype)).to(device)
        x = solve_per_instance(den, x, sigmas=grid, solver=solver)
        outs.append(x.float().cpu())
    return torch.cat(outs)


def sample_grid(
    model, noise_cfg, meta: Mapping[str, Any], path: Path, *, num: int = 64, spectral=None
) -> None:
    """Write an 8-column grid of ``num`` samples (20 steps; labels 0, 1, … for a conditional model) to
    ``path`` — the trainer's ``samples/step_*.png``. The model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        labels = None
        num_classes = getattr(getattr(model, "config", None), "num_classes", None)
        if num_classes:
            labels = torch.arange(num) % int(num_classes)
        dev = next(model.parameters()).device
        x = generate(
            model,
            noise_cfg,
            tuple(meta["shape"]),
            num=num,
            steps=20,
            labels=labels,
            device=dev,
            spacing="karras" if spectral is None else "schedule",
            spectral=spectral,
        )
    finally:
        model.train(was_training)
    if len(meta["shape"]) == 3:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(make_grid(x.clamp(-1, 1), nrow=8), path)
