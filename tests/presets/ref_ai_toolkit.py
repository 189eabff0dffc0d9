"""A numpy re-implementation of ai-toolkit's flow-model timestep sampling and timestep weights, written from
its source (ostris/ai-toolkit at 27a03a91f23eb1b757d5ec2e80ee3e129cfcc350):

* grids — ``toolkit/samplers/custom_flowmatch_sampler.py`` 107–217 (``set_train_timesteps``), the scheduler
  configs of ``toolkit/sampler.py`` 78–117 and diffusers' FlowMatchEulerDiscreteScheduler init (σ_min);
* the index — ``jobs/process/BaseSDTrainProcess.py`` 1243–1323;
* the weights — ``custom_flowmatch_sampler.py`` 29–76, ``extensions_built_in/sd_trainer/SDTrainer.py``
  923–943.

``draw`` returns the flow σ of N draws (σ = timestep/1000) and each draw's weight on the flow loss.
DDPM (SD) models: ``ddpm_draw`` / ``snr_weight`` — BaseSDTrainProcess.py 1227–1229 (``set_timesteps(1000)``:
timesteps 999 … 0) and 1301–1316 (balanced, non-flowmatch: ``randint(min + 1, max − 1)`` indices), and
``toolkit/train_tools.py`` 642–654 (``get_all_snr``), 720–749 (``apply_snr_weight``) on the loss of the
model's own target (SDTrainer.py 1005–1011).
"""

from __future__ import annotations

import numpy as np

from noiselevels.training.tool_weightings.ai_toolkit import AI_TOOLKIT_WEIGHTS

T = 1000


def grid(timestep_type: str, rng: np.random.Generator, shift: float = 3.0, mu: float | None = None):
    """The tool's 1000 timesteps (descending, noisy first) for one training step."""
    if timestep_type in ("linear", "weighted"):
        return np.linspace(1000, 1, T, dtype=np.float32)
    if timestep_type == "sigmoid":
        t = 1.0 / (1.0 + np.exp(-rng.standard_normal(T)))
        return np.sort((1.0 - t) * 1000)[::-1]
    if timestep_type == "shift":
        if mu is None:  # static: the scheduler's own σ table is shifted at init, so σ_min is too
            sigma_min = shift * 0.001 / (1 + (shift - 1) * 0.001)
        else:
            sigma_min = 0.001
        s = np.linspace(1000.0, 1000.0 * sigma_min, T) / 1000
        if mu is None:
            s = shift * s / (1 + (shift - 1) * s)
        else:
            s = np.exp(mu) / (np.exp(mu) + (1 / s - 1))
        return (s * 1000).astype(np.float32)
    if timestep_type == "lognorm_blend":
        x = np.exp(0.333 * rng.standard_normal(750))
        t1 = (1 - x / x.max()) * 1000
        t2 = np.linspace(1000, 1, 250)
        return np.sort(np.concatenate([t1, t2]))[::-1].astype(np.int64).astype(np.float64)
    raise ValueError(timestep_type)


def indices(content_or_style: str, n: int, rng: np.random.Generator, lo: int = 0, hi: int = 999):
    """Indices into the grid (flowmatch scheduler)."""
    if content_or_style == "balanced":
        return rng.integers(lo, hi, size=n)  # torch.randint: hi excluded
    u = rng.random(n)
    k = u**3 * T if content_or_style == "content" else (1 - u**3) * T
    k = (k - 0) * (hi - lo) / (T - 1 - 0) + lo  # value_map
    return np.clip(k.astype(np.int64), lo, hi)


def bell(v2: bool) -> np.ndarray:
    """``linear_timesteps`` (v2 False) / ``linear_timesteps2`` weights by grid index."""
    x = np.arange(T, dtype=np.float64)
    y = np.exp(-2 * ((x - T / 2) / T) ** 2)
    y = y - y.min()
    w = y * (T / y.sum())
    if v2:
        w[T // 2:] = w[T // 2:].max()
    return w


def draw(timestep_type: str, n: int, seed: int, content_or_style: str = "balanced", lo: int = 0,
         hi: int = 999, batch: int = 100, shift: float = 3.0, mu: float | None = None,
         linear_timesteps: bool = False, linear_timesteps2: bool = False):
    """(σ, weight) of n draws, ``batch`` draws per freshly built grid."""
    rng = np.random.default_rng(seed)
    forced = linear_timesteps or linear_timesteps2
    sig, wts = [], []
    table = np.asarray(AI_TOOLKIT_WEIGHTS, dtype=np.float64)
    for _ in range(n // batch):
        g = grid("linear" if forced else timestep_type, rng, shift, mu)
        k = indices(content_or_style, batch, rng, lo, hi)
        sig.append(np.asarray(g, dtype=np.float64)[k] / 1000)
        if timestep_type == "weighted":
            wts.append(table[k])
        elif forced:
            wts.append(bell(linear_timesteps2)[k])
        else:
            wts.append(np.ones(batch))
    return np.concatenate(sig), np.concatenate(wts)


def logsnr(sigma: np.ndarray) -> np.ndarray:
    """λ = 2·log((1 − σ)/σ) of flow σ (σ = 1 → −inf)."""
    with np.errstate(divide="ignore"):
        return 2 * (np.log1p(-sigma) - np.log(sigma))


def ks(samples: np.ndarray, cdf) -> float:
    """Two-sided KS distance between the samples (λ) and an exact cdf."""
    x = np.sort(samples)
    f = np.asarray(cdf(x), dtype=np.float64)
    n = x.size
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))


def ks_atoms(sigma: np.ndarray, cdf) -> float:
    """KS for a tool that draws atoms of a grid (big ties, e.g. 10 % of content draws on one level):
    each distinct drawn σ v_j against the model's mass above the next lower drawn σ, the model's cell of
    that level: max_j |P_ref(σ' ≥ v_j) − P_model(σ' > v_{j−1})|; ``cdf`` is the model's cdf over λ."""
    v, c = np.unique(sigma, return_counts=True)
    emp = np.cumsum(c[::-1])[::-1] / len(sigma)
    below = np.concatenate([[0.0], v[:-1]])
    return float(np.abs(emp - cdf(logsnr(below))).max())


def sd_alphas_cumprod() -> np.ndarray:
    """SD 1.x/2.x/XL DDPM table: scaled_linear β from 0.00085 to 0.012."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, T) ** 2
    return np.cumprod(1 - betas)


def ddpm_draw(n: int, seed: int, min_noise_steps: int = 0, max_noise_steps: int = T - 1) -> np.ndarray:
    """Integer timesteps: indices ``randint(min + 1, max − 1)`` into timesteps 999 … 0."""
    idx = np.random.default_rng(seed).integers(min_noise_steps + 1, max_noise_steps - 1, n)
    return (T - 1) - idx


def snr_weight(timesteps: np.ndarray, gamma: float, fixed: bool) -> np.ndarray:
    """``apply_snr_weight``: γ/SNR (``snr_gamma``, fixed) or min(γ/SNR, 1) (``min_snr_gamma``)."""
    a = sd_alphas_cumprod()
    snr = (np.sqrt(a) / np.sqrt(1 - a)) ** 2
    w = gamma / snr[timesteps]
    return w if fixed else np.minimum(w, 1.0)
