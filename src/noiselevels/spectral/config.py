"""The ``[spectral]`` table of a training run: per-instance training and sampling.

:func:`resolve_spectral_config` validates the table; :class:`SpectralRun` is what a per-instance run
stores (``spectral.json``): the schedule family (:class:`~noiselevels.spectral.instance.InstanceSchedules`),
the mixture over bounds (:class:`~noiselevels.spectral.mixture.BoundsMixture`), the resolved table and
the training set's bounds summary. Training draws λ per example from the example's own bounds
(:meth:`SpectralRun.draw`); sampling draws bounds from the mixture and integrates along each instance's
own σ grid (:meth:`SpectralRun.sampling_grid`, :func:`~noiselevels.spectral.sampler.solve_per_instance`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from noiselevels.options import check_keys
from noiselevels.spectral.bounds import _check_taus, _floor_logsnr, _ring_mask, summarize
from noiselevels.spectral.instance import InstanceSchedules
from noiselevels.spectral.mixture import BoundsMixture
from noiselevels.spectral.schedules import _check_kind

__all__ = ["SPECTRAL_DEFAULTS", "SpectralRun", "resolve_spectral_config"]

_F64 = torch.float64

SPECTRAL_DEFAULTS: dict[str, Any] = {
    "kind": "mixed",
    "mix": 0.5,
    "tau_lo": 0.1,
    "tau_hi": 10.0,
    "dc": "include",
    "quantisation_floor": True,
    "shape": "tight",
    "knots": 65,
    "components": 4,
    "seed": 0,
}
"""Keys of the ``[spectral]`` table of a training configuration and their defaults: the tight-schedule
``kind``/``mix`` and bound options (:func:`bounds`), ``shape`` of the per-instance family (``"tight"``:
the training set's global tight schedule; ``"linear"``: λ linear in t), ``knots`` of that shape, and
the Gaussian mixture's ``components`` and ``seed``."""


def resolve_spectral_config(section: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[spectral]`` table with defaults filled in; unknown keys or bad values raise ValueError."""
    check_keys("[spectral]", section, SPECTRAL_DEFAULTS)
    cfg = {**SPECTRAL_DEFAULTS, **dict(section)}
    _check_kind(cfg["kind"], cfg["mix"])
    _check_taus(cfg["tau_lo"], cfg["tau_hi"])
    _ring_mask(torch.zeros(1, dtype=_F64), cfg["dc"])
    _floor_logsnr(cfg["quantisation_floor"])
    if cfg["shape"] not in ("tight", "linear"):
        raise ValueError(f"[spectral] shape must be 'tight' or 'linear'; got {cfg['shape']!r}")
    for k, lo in (("knots", 3), ("components", 1), ("seed", 0)):
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"[spectral] {k} must be an integer >= {lo}; got {v!r}")
    return cfg


@dataclasses.dataclass
class SpectralRun:
    """What a per-instance run needs at training and sampling time: the schedule family, the mixture
    over bounds, the resolved ``[spectral]`` config and the training set's bounds summary. Written to a
    run folder as ``spectral.json`` (:meth:`to_dict`) and read back with :meth:`from_dict`."""

    family: InstanceSchedules
    mixture: BoundsMixture
    config: dict[str, Any]
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def fit(cls, section: Mapping[str, Any], images: Tensor, labels: Tensor | None = None) -> SpectralRun:
        """Measure the training images' bounds, build the family's shape and fit the mixture."""
        cfg = resolve_spectral_config(section)
        opts = {k: cfg[k] for k in ("tau_lo", "tau_hi", "dc", "quantisation_floor")}
        if cfg["shape"] == "tight":
            fam = InstanceSchedules.from_data(
                images, kind=cfg["kind"], mix=cfg["mix"], knots=cfg["knots"], **opts
            )
        else:
            fam = InstanceSchedules.linear(**opts)
        lo, hi = fam.bounds(images)
        mix = BoundsMixture.fit(lo, hi, labels, components=cfg["components"], seed=cfg["seed"])
        return cls(fam, mix, cfg, summarize(lo, hi, labels))

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "family": self.family.to_dict(),
            "mixture": self.mixture.to_dict(),
            "summary": self.summary,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpectralRun:
        try:
            return cls(
                InstanceSchedules.from_dict(d["family"]),
                BoundsMixture.from_dict(d["mixture"]),
                dict(d["config"]),
                dict(d.get("summary", {})),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a spectral run description (spectral.json): {e}") from None

    def draw(self, x0: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Training: (λ (B,), extra (B, 2)) for a batch; see :meth:`InstanceSchedules.draw`."""
        return self.family.draw(x0, generator=generator)

    def sampling_grid(
        self,
        n: int,
        steps: int,
        *,
        labels: Tensor | None = None,
        spacing: str = "schedule",
        spacing_params: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Inference: draw n bounds from the mixture (per label) and return their σ grids
        (n, steps + 1) and the conditioning ``extra`` (n, 2) = (λ_min, λ_max) (float64)."""
        lo, hi = self.mixture.sample(n, labels=labels, generator=generator)
        sig = self.family.sigmas(
            steps, logsnr_min=lo, logsnr_max=hi, spacing=spacing, spacing_params=spacing_params
        )
        return sig, torch.stack([lo, hi], dim=1)
