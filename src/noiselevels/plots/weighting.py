"""Plots of noise-level configurations: p(λ), w(λ), W(λ) over λ and over a tool's own time axis.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean, drawn on the right); weights in ε-MSE
units on the λ figure. matplotlib is imported lazily with the Agg backend (no display needed).

* :func:`plot_logsnr` — three panels over λ: the training density p(λ), the weight w(λ) (ε units,
  log scale) and the effective weighting W(λ) = p·w normalised over the window (Kingma & Gao 2023).
* :func:`plot_tool_axis` — the same configuration on the axis the tool shows: flow t = σ for flow
  models, diffusers' integer timestep for a ``ddpm`` schedule, the schedule's t otherwise, σ_ve (log)
  when there is no schedule. The density is transformed with its Jacobian, p_t(t) = p(λ(t))·|dλ/dt|,
  and the weight is shown on the model's own loss (w_ε/f(λ), f the parameterisation's loss factor),
  i.e. the number the tool multiplies its loss by.

Several configurations given as ``{label: NoiseConfig}`` are overlaid (for ``noiselevels compare``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from noiselevels.analysis import DEFAULT_LOGSNR_RANGE, DEFAULT_POINTS, logsnr_grid
from noiselevels.parameterizations import parameterization
from noiselevels.plots._mpl import pyplot
from noiselevels.schedules import schedule as make_schedule

__all__ = ["plot_logsnr", "plot_tool_axis", "tool_axis_curves"]

_F64 = torch.float64



def _check_configs(configs: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(configs, dict) or not configs:
        raise ValueError("configs must be a non-empty {label: NoiseConfig} mapping")
    return configs


def plot_logsnr(
    configs: dict[str, Any],
    path: str | Path,
    *,
    logsnr_min: float = DEFAULT_LOGSNR_RANGE[0],
    logsnr_max: float = DEFAULT_LOGSNR_RANGE[1],
    n: int = DEFAULT_POINTS,
    title: str | None = None,
    levels: Any = None,
) -> Path:
    """Write p(λ), w(λ) and normalised W(λ) of each configuration (overlaid) to ``path`` (PNG).

    ``levels``: optional sampler levels λ (shape (N,)), drawn as thin vertical lines on every panel;
    those outside the window are counted in the first panel's legend."""
    configs = _check_configs(configs)
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for label, cfg in configs.items():
        curve = cfg.effective_weighting().grid(logsnr_min, logsnr_max, n)
        x = curve.logsnr.numpy()
        axes[0].plot(x, curve.density.numpy(), label=label)
        w = curve.weight.numpy()
        axes[1].plot(x, w, label=label)
        axes[2].plot(x, curve.normalized().numpy(), label=label)
    if levels is not None:
        lam = torch.as_tensor(levels, dtype=_F64).flatten()
        lam = lam[torch.isfinite(lam)]
        inside = lam[(lam >= logsnr_min) & (lam <= logsnr_max)].numpy()
        n_out = int(lam.numel() - inside.size)
        what = f"sampler levels ({n_out} outside the window)" if n_out else "sampler levels"
        for i, ax in enumerate(axes):
            ax.vlines(inside, 0, 1, transform=ax.get_xaxis_transform(), colors="k", alpha=0.35,
                      lw=0.8, label=what if i == 0 else None)  # fmt: skip
    axes[0].set_title("training density p(λ)")
    axes[1].set_title("loss weight w(λ), ε-MSE units")
    axes[1].set_yscale("log")
    axes[2].set_title("effective weighting W = p·w (normalised)")
    for ax in axes:
        ax.set_xlabel("λ = log SNR   (noisy ← → clean)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def tool_axis_curves(cfg: Any, n: int = 999) -> dict[str, Any]:
    """The configuration on its tool's time axis: dict with ``axis`` (label), ``x`` (n,), ``density``
    (per unit of x), ``weight`` (on the model's own loss) and ``effective`` (density × weight)."""
    sched = cfg.schedule
    if sched is None:  # a uniform_t density carries its schedule
        sched = getattr(cfg.density, "schedule", None)
    if sched is None and cfg.process == "flow":
        sched = make_schedule("flow")
    param = parameterization(cfg.parameterization)
    if sched is None:
        # σ_ve axis (log): p over ln σ = 2·p(λ)
        lam = logsnr_grid(DEFAULT_LOGSNR_RANGE[0], DEFAULT_LOGSNR_RANGE[1], n)
        x = torch.exp(-0.5 * lam)
        dens = 2.0 * cfg.density.prob(lam).to(_F64)
        axis, log_x = "σ_ve (per unit ln σ)", True
    else:
        t = (torch.arange(n, dtype=_F64) + 0.5) / n
        lam = sched.logsnr(t)
        jac = sched.dlogsnr_dt(t).abs().to(_F64)
        finite = torch.isfinite(lam)
        dens = torch.where(finite, cfg.density.prob(torch.where(finite, lam, 0.0)).to(_F64) * jac, 0.0)
        x, log_x = t, False
        axis = "flow t = σ (0 clean, 1 noise)" if cfg.process == "flow" else "schedule t (0 clean, 1 noise)"
        T = getattr(sched, "num_train_timesteps", None)
        if T is not None and hasattr(sched, "t_to_timestep"):
            x = sched.t_to_timestep(t)
            dens = dens / T
            axis = f"diffusers timestep (0 … {T - 1}, {T - 1} = noisiest)"
    finite = torch.isfinite(lam)
    safe = torch.where(finite, lam, 0.0)
    w_eps = torch.broadcast_to(cfg.weighting(safe).to(_F64), safe.shape)
    f = param.loss_factor(safe, process=cfg.process).to(_F64)
    weight = torch.where(finite, w_eps / f, float("nan"))
    return {
        "axis": axis,
        "log_x": log_x,
        "x": x,
        "density": dens,
        "weight": weight,
        "effective": dens * torch.nan_to_num(weight),
        "loss": f"{cfg.parameterization}-target MSE",
    }


def plot_tool_axis(configs: dict[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """Write each configuration's density and weight over its tool's own time axis to ``path``."""
    configs = _check_configs(configs)
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axis_labels = set()
    for label, cfg in configs.items():
        c = tool_axis_curves(cfg)
        axis_labels.add(c["axis"])
        x = c["x"].numpy()
        axes[0].plot(x, c["density"].numpy(), label=label)
        axes[1].plot(x, c["weight"].numpy(), label=f"{label} ({c['loss']})")
        eff = c["effective"]
        total = float(eff.sum())
        axes[2].plot(x, (eff / total if total > 0 and math.isfinite(total) else eff).numpy(), label=label)
        for ax in axes:
            if c["log_x"]:
                ax.set_xscale("log")
    axes[0].set_title("training density over the tool's axis")
    axes[1].set_title("weight on the model's own loss")
    axes[1].set_yscale("log")
    axes[2].set_title("density × weight (normalised, own-loss units)")
    for ax in axes:
        ax.set_xlabel(" / ".join(sorted(axis_labels)))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
