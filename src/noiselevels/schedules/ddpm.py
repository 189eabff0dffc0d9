"""Discrete schedules: diffusers' ``DDPMScheduler`` tables (β, ᾱ, λ) as a continuous schedule, and the
conversions between diffusers' integer timesteps i ∈ {0, …, T−1} and t = (i + 1)/T.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); t ∈ [0, 1] with t = 0 clean; tables float64.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import Tensor

from noiselevels.components import SCHEDULES, _check_t, check_finite
from noiselevels.levels import to_tensor
from noiselevels.schedules.base import _F64, _ClosedForm, _rescale_logsnr

__all__ = ["BETA_SCHEDULES", "DDPM", "t_to_timestep", "timestep_to_t"]

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

@functools.lru_cache(maxsize=32)
def _ddpm_tables(T: int, beta_start: float, beta_end: float, beta_schedule: str, zero_snr: bool):
    """(betas, alphas_cumprod, logsnr) in float64, as diffusers' DDPMScheduler builds them."""
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, T, dtype=_F64)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=_F64) ** 2
    else:  # squaredcos_cap_v2: diffusers' betas_for_alpha_bar (iDDPM cosine, s = 0.008, β ≤ 0.999)

        def abar(x):
            return math.cos((x + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)], dtype=_F64)
    log_abar = torch.cumsum(torch.log1p(-betas), 0)
    lam = log_abar - torch.log(-torch.expm1(log_abar))
    if zero_snr:
        lam = _rescale_logsnr(lam, float(lam[0]), float(lam[-1]))
        lam[-1] = -math.inf
    abar = torch.sigmoid(lam)
    if zero_snr:
        betas = 1.0 - torch.cat([abar[:1], abar[1:] / abar[:-1]])
    return betas, abar, lam


def timestep_to_t(timesteps, *, num_train_timesteps: int) -> Tensor:
    """Continuous t = (i + 1)/T of diffusers integer timestep(s) i ∈ {0, …, T−1} (float64).

    Fractional timesteps are allowed (they map linearly); values outside [0, T−1] raise ValueError.
    """
    T = _check_T(num_train_timesteps)
    i = to_tensor(timesteps)
    if torch.isnan(i).any() or (i < 0).any() or (i > T - 1).any():
        raise ValueError(f"timesteps must be in [0, {T - 1}] (num_train_timesteps={T}); got "
                         f"{i[torch.isnan(i) | (i < 0) | (i > T - 1)].flatten()[0].item()!r}")
    return (i.to(_F64) + 1.0) / T


def t_to_timestep(t, *, num_train_timesteps: int) -> Tensor:
    """The (fractional) diffusers timestep i = t·T − 1 of continuous t ∈ [0, 1] (float64).

    t ∈ [0, 1/T) gives i ∈ [−1, 0): noise levels cleaner than diffusers' first timestep. Round (and
    clamp to 0) for an integer index.
    """
    T = _check_T(num_train_timesteps)
    return _check_t(t).to(_F64) * T - 1.0


def _check_T(T) -> int:
    if not isinstance(T, int) or isinstance(T, bool) or T < 2:
        raise ValueError(f"num_train_timesteps must be an integer >= 2; got {T!r}")
    return T


@SCHEDULES.register("ddpm")
@dataclasses.dataclass(frozen=True)
class DDPM(_ClosedForm):
    """Discrete DDPM schedule; arguments mirror diffusers' ``DDPMScheduler``.

    ``beta_schedule``: ``linear`` (β = linspace(beta_start, beta_end, T); Ho et al. 2020),
    ``scaled_linear`` (β = linspace(√beta_start, √beta_end, T)²; Stable Diffusion) or
    ``squaredcos_cap_v2`` (iDDPM cosine ᾱ(t) = cos²(((t + 0.008)/1.008)·π/2), β clipped at 0.999;
    beta_start / beta_end are ignored). ``rescale_betas_zero_snr`` applies Lin et al. (2024) Alg. 1
    exactly like diffusers' ``rescale_zero_terminal_snr`` (λ of the last timestep becomes −inf).
    Tables are computed in float64 (diffusers uses float32; ᾱ agrees to < 1e-6 absolute).

    Table: ``logsnr_table()[i]`` = log(ᾱ_i/(1 − ᾱ_i)) with ᾱ_i = ``alphas_cumprod()[i]``, indexed like
    diffusers' integer timesteps i = 0 … T−1.

    As a continuous schedule: t_i = (i + 1)/T ↔ table[i], with λ linear in t between consecutive
    t_i. Choice for t ∈ [0, 1/T): σ² = 1 − ᾱ grows linearly from 0 at t = 0 to 1 − ᾱ₀ at t = 1/T
    (ᾱ = 1 − (1 − ᾱ₀)·tT), so λ(0) = +inf like every continuous schedule here and the map stays
    monotone and exactly invertible. With zero terminal SNR the last segment, whose end is λ = −inf,
    interpolates ᾱ linearly to 0 instead (ᾱ = ᾱ_{T−2}·(T − tT)). ``t_of`` is the exact inverse.
    """

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    rescale_betas_zero_snr: bool = False

    def __post_init__(self):
        _check_T(self.num_train_timesteps)
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"unknown beta_schedule {self.beta_schedule!r}; valid: {', '.join(BETA_SCHEDULES)}"
            )
        check_finite("beta_start", self.beta_start)
        check_finite("beta_end", self.beta_end)
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError("beta_start and beta_end must satisfy 0 < beta_start < beta_end < 1; got "
                             f"beta_start={self.beta_start!r}, beta_end={self.beta_end!r}")
        if not isinstance(self.rescale_betas_zero_snr, bool):
            raise ValueError(f"rescale_betas_zero_snr must be a bool; got {self.rescale_betas_zero_snr!r}")

    def _tables(self):
        return _ddpm_tables(self.num_train_timesteps, float(self.beta_start), float(self.beta_end),
                            self.beta_schedule, self.rescale_betas_zero_snr)

    def betas(self) -> Tensor:
        """β_i, shape (T,), float64 (after the zero-terminal-SNR rescale if enabled)."""
        return self._tables()[0].clone()

    def alphas_cumprod(self) -> Tensor:
        """ᾱ_i = Π_{j≤i}(1 − β_j), shape (T,), float64; diffusers' ``alphas_cumprod``."""
        return self._tables()[1].clone()

    def logsnr_table(self) -> Tensor:
        """λ_i = log(ᾱ_i/(1 − ᾱ_i)), shape (T,), float64, indexed like diffusers' timesteps."""
        return self._tables()[2].clone()

    def timestep_to_t(self, timesteps) -> Tensor:
        """t = (i + 1)/T of diffusers timestep(s) i; ``logsnr(timestep_to_t(i)) == logsnr_table()[i]``."""
        return timestep_to_t(timesteps, num_train_timesteps=self.num_train_timesteps)

    def t_to_timestep(self, t) -> Tensor:
        """Fractional diffusers timestep i = t·T − 1 of t."""
        return t_to_timestep(t, num_train_timesteps=self.num_train_timesteps)

    # --- continuous view -----------------------------------------------------------------------
    def _segments(self, t: Tensor):
        T = self.num_train_timesteps
        p = t * T - 1.0  # fractional table index
        i = torch.floor(p).clamp(0, T - 2).to(torch.long)
        return p, i, p - i.to(_F64)

    def _logsnr(self, t):
        T = self.num_train_timesteps
        lam = self._tables()[2]
        p, i, f = self._segments(t)
        lo, hi = lam[i], lam[i + 1]
        hi_f = torch.where(torch.isfinite(hi), hi, lo)
        mid = lo + f * (hi_f - lo)
        # first segment: ᾱ = 1 − c·t, c = (1 − ᾱ₀)·T
        c = float(torch.sigmoid(-lam[0])) * T
        ct = c * t
        first = torch.log1p(-ct) - torch.log(ct)
        out = torch.where(p < 0, first, mid)
        if self.rescale_betas_zero_snr:
            A = float(torch.sigmoid(lam[-2]))
            last_f = (t * T - (T - 1)).clamp(0.0, 1.0)
            abar = A * (1.0 - last_f)
            last = torch.log(abar) - torch.log1p(-abar)
            out = torch.where(p > T - 2, last, out)
        return out

    def _t_of(self, logsnr):
        T = self.num_train_timesteps
        lam = self._tables()[2]
        asc = lam.flip(0)  # increasing
        finite_asc = torch.where(torch.isfinite(asc), asc, torch.full_like(asc, -math.inf))
        # j: number of table entries <= λ  → λ between lam[i+1] and lam[i] with i = T - j - 1
        j = torch.searchsorted(finite_asc.contiguous(), logsnr.contiguous(), right=True)
        i = (T - 1 - j).clamp(0, T - 2)
        lo, hi = lam[i], lam[i + 1]
        f = (logsnr - lo) / (hi - lo)
        mid = (i.to(_F64) + 1.0 + f) / T
        first = torch.sigmoid(-logsnr) / (float(torch.sigmoid(-lam[0])) * T)
        out = torch.where(logsnr >= lam[0], first, mid)
        if self.rescale_betas_zero_snr:
            A = float(torch.sigmoid(lam[-2]))
            last = (T - 1 + (1.0 - torch.sigmoid(logsnr) / A)) / T
            out = torch.where(logsnr < lam[-2], last, out)
        else:
            out = torch.where(logsnr < lam[-1], torch.ones_like(out), out)
        return out

    def _dlogsnr_dt(self, t):
        T = self.num_train_timesteps
        lam = self._tables()[2]
        p, i, _ = self._segments(t)
        lo, hi = lam[i], lam[i + 1]
        mid = (torch.where(torch.isfinite(hi), hi, lo) - lo) * T
        c = float(torch.sigmoid(-lam[0])) * T
        abar = 1.0 - c * t
        first = -c / (abar * (1.0 - abar))
        out = torch.where(p < 0, first, mid)
        if self.rescale_betas_zero_snr:
            A = float(torch.sigmoid(lam[-2]))
            abar = A * (1.0 - (t * T - (T - 1)).clamp(0.0, 1.0))
            last = -A * T / (abar * (1.0 - abar))
            out = torch.where(p > T - 2, last, out)
        return out
