"""Conversions between noise levels.

Convention (see docs/conventions.md):

* The noise level is the log signal-to-noise ratio ``logsnr`` = λ = log(α²/σ²), natural log.
  Large λ is clean, small λ is noisy. λ = +inf (clean data) and λ = −inf (pure noise, zero terminal
  SNR) are legal and handled without NaN.
* The forward process is z = α·x₀ + σ·ε with one of three processes that share λ:

  ========  ==========================  ==========================
  process   α                           σ
  ========  ==========================  ==========================
  ``vp``    sqrt(sigmoid(λ))            sqrt(sigmoid(−λ))
  ``ve``    1                           exp(−λ/2)
  ``flow``  1 − t = sigmoid(λ/2)        t = sigmoid(−λ/2)
  ========  ==========================  ==========================

* σ_ve = σ/α = exp(−λ/2) is the k-diffusion / EDM noise level of the same λ under any process.
* Flow time t ∈ [0, 1] has t = 0 clean and t = 1 noise; λ = 2·log((1−t)/t).

Every function takes noise levels as keyword-only tensors of shape (B,) (any shape works
elementwise) and uses stable forms (``logsigmoid``, ``log1p``) so that float64 round trips hold
to machine precision over |λ| ≤ 60 and the infinities map to the right limits.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "PROCESSES",
    "alpha_sigma",
    "broadcast",
    "check_process",
    "flow_t",
    "log_alpha_sigma",
    "log_sigmoid",
    "logsnr_from_alpha_sigma",
    "logsnr_from_flow_t",
    "logsnr_from_sigma",
    "sigma_ve",
    "to_tensor",
]

PROCESSES = ("vp", "ve", "flow")


def check_process(process: str) -> str:
    """Return ``process`` if it names a known process, else raise ``ValueError`` listing them."""
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; expected one of {', '.join(PROCESSES)}")
    return process


def to_tensor(x, dtype: torch.dtype = torch.float64) -> Tensor:
    """``x`` as a floating tensor (float64 unless it already is a floating tensor)."""
    if isinstance(x, Tensor):
        return x if x.is_floating_point() else x.to(dtype)
    return torch.as_tensor(x, dtype=dtype)


def log_sigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)) = min(x, 0) − log1p(e^(−|x|)): exact for all x, ±inf included.

    (torch's ``logsigmoid`` kernel is ~1000× slower than this on some CPU builds.)
    """
    return torch.clamp(x, max=0.0) - torch.log1p(torch.exp(-x.abs()))


def log_alpha_sigma(*, logsnr: Tensor, process: str = "vp") -> tuple[Tensor, Tensor]:
    """(log α, log σ) of the process at ``logsnr``; exact at λ = ±inf."""
    check_process(process)
    lam = to_tensor(logsnr)
    if process == "vp":
        return 0.5 * log_sigmoid(lam), 0.5 * log_sigmoid(-lam)
    if process == "ve":
        return torch.zeros_like(lam), -0.5 * lam
    # flow: α = sigmoid(λ/2), σ = sigmoid(−λ/2)
    return log_sigmoid(0.5 * lam), log_sigmoid(-0.5 * lam)


def alpha_sigma(*, logsnr: Tensor, process: str = "vp") -> tuple[Tensor, Tensor]:
    """(α, σ) of the process at ``logsnr``. Shapes follow ``logsnr``.

    vp: α² = sigmoid(λ), σ² = sigmoid(−λ); ve: α = 1, σ = e^(−λ/2); flow: α = 1 − t, σ = t with
    t = sigmoid(−λ/2). At λ = +inf: (1, 0); at λ = −inf: vp (0, 1), ve (1, inf), flow (0, 1).
    """
    log_a, log_s = log_alpha_sigma(logsnr=logsnr, process=process)
    return log_a.exp(), log_s.exp()


def logsnr_from_alpha_sigma(*, alpha: Tensor, sigma: Tensor) -> Tensor:
    """λ = 2·(log α − log σ)."""
    return 2.0 * (torch.log(to_tensor(alpha)) - torch.log(to_tensor(sigma)))


def sigma_ve(*, logsnr: Tensor) -> Tensor:
    """The variance-exploding noise level σ_ve = σ/α = exp(−λ/2) (k-diffusion's ``sigma``)."""
    return torch.exp(-0.5 * to_tensor(logsnr))


def logsnr_from_sigma(*, sigma: Tensor) -> Tensor:
    """λ = −2·log σ_ve; σ = 0 gives +inf and σ = inf gives −inf."""
    return -2.0 * torch.log(to_tensor(sigma))


def flow_t(*, logsnr: Tensor) -> Tensor:
    """Rectified-flow time t = σ = sigmoid(−λ/2) (t = 0 clean, t = 1 noise)."""
    return torch.sigmoid(-0.5 * to_tensor(logsnr))


def logsnr_from_flow_t(*, t: Tensor) -> Tensor:
    """λ = 2·log((1 − t)/t) = 2·(log1p(−t) − log t); t = 0 gives +inf, t = 1 gives −inf."""
    t = to_tensor(t)
    return 2.0 * (torch.log1p(-t) - torch.log(t))


def broadcast(level: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample tensor of shape (B,) to (B, 1, …, 1) so it broadcasts against ``like``.

    A scalar (0-d) tensor is returned unchanged; the result takes ``like``'s dtype and device.
    """
    level = to_tensor(level).to(dtype=like.dtype, device=like.device)
    if level.ndim == 0:
        return level
    if level.ndim != 1 or level.shape[0] != like.shape[0]:
        raise ValueError(
            f"noise levels must have shape (B,) with B = {like.shape[0]} to match data of shape "
            f"{tuple(like.shape)}; got shape {tuple(level.shape)}"
        )
    return level.reshape(-1, *([1] * (like.ndim - 1)))
