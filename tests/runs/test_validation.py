"""noiselevels.runs.validation: the ε-unit loss at fixed levels against the closed form for Gaussian data,
the same number for every parameterisation of one denoiser, independence of batch size and item count,
bands and standard errors, paired differences, prediction changes, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from noiselevels.levels import alpha_sigma, broadcast
from noiselevels.parameterizations import parameterization
from noiselevels.runs.run import sample_generators
from noiselevels.runs.validation import (
    DEFAULT_GRID,
    Item,
    holdout_split,
    items_from,
    level_errors,
    level_summary,
    paired,
    validation_loss,
)

S = 0.7  # std of the Gaussian data


class GaussianOracle(torch.nn.Module):
    """The exact denoiser of x₀ ~ N(0, S²I) under ``process``, returning ``param``'s target (float64).
    ε̂ = σ·z/(α²S² + σ²), x̂₀ = α S²·z/(α²S² + σ²); ``bias`` adds a constant to ε̂."""

    def __init__(self, param: str, process: str = "vp", bias: float = 0.0):
        super().__init__()
        self.p, self.process, self.bias = parameterization(param), process, bias
        self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, zin, lam, **cond):
        a, s = (broadcast(c, zin) for c in alpha_sigma(logsnr=lam, process=self.process))
        z = zin  # no input scaling for these parameterisations
        den = a * a * S * S + s * s
        eps_hat = s * z / den + self.bias
        x0_hat = (z - s * eps_hat) / a
        return self.p.target(x0=x0_hat, eps=eps_hat, alpha=a, sigma=s)


def gaussian_items(n, shape=(1, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return items_from(S * torch.randn((n, *shape), generator=g, dtype=torch.float64))


def test_gaussian_closed_form():
    items = gaussian_items(400)
    le = level_errors({"m": GaussianOracle("eps")}, items, process="vp", parameterization="eps", seed=3)
    summ = level_summary(le.errors["m"], le.grid)
    lam = torch.tensor(DEFAULT_GRID, dtype=torch.float64)
    a2 = torch.sigmoid(lam)
    expected = a2 * S * S / (a2 * S * S + torch.sigmoid(-lam))  # E‖ε̂ − ε‖²/D of the exact denoiser
    got = torch.tensor([c["mean"] for c in summ["curve"]], dtype=torch.float64)
    se = torch.tensor([c["stderr"] for c in summ["curve"]], dtype=torch.float64)
    assert ((got - expected).abs() < 4 * se).all(), (got, expected, se)
    # the standard error is std over items / √N: for D = 16 i.i.d. dims of a scaled χ², std = E·√(2/D)
    torch.testing.assert_close(se, expected * math.sqrt(2 / 16) / math.sqrt(400), rtol=0.2, atol=0)


@pytest.mark.parametrize(("param", "process"), [("v", "vp"), ("x0", "vp"), ("flow", "flow"), ("v", "ve")])
def test_same_denoiser_same_loss_in_every_parameterisation(param, process):
    items = gaussian_items(6)
    ref = level_errors({"m": GaussianOracle("eps", process)}, items, process=process, parameterization="eps")
    got = level_errors({"m": GaussianOracle(param, process)}, items, process=process, parameterization=param)
    torch.testing.assert_close(got.errors["m"], ref.errors["m"], rtol=1e-9, atol=1e-12)


def test_fixed_noise_independent_of_batch_and_item_count():
    items = gaussian_items(5)
    kw = {"process": "vp", "parameterization": "eps", "seed": 11, "repeats": 2}
    m = {"m": GaussianOracle("eps", bias=0.1)}
    a = level_errors(m, items, batch_size=1, **kw).errors["m"]
    b = level_errors(m, items, batch_size=64, **kw).errors["m"]
    c = level_errors(m, items[:3], batch_size=7, **kw).errors["m"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a[:3], c, rtol=0, atol=0)
    d = level_errors(m, items, **{**kw, "seed": 12}).errors["m"]
    assert not torch.equal(a, d)  # another seed: other noise


def test_changes_and_paired_difference():
    items = gaussian_items(8)
    models = {"base": GaussianOracle("v"), "adapted": GaussianOracle("v", bias=0.3)}
    le = level_errors(models, items, process="vp", parameterization="v", reference="base")
    # a constant bias δ in ε̂ changes the prediction by δ² per dimension in ε units, at every level
    torch.testing.assert_close(le.changes["adapted"], torch.full((8, 9), 0.09, dtype=torch.float64))
    # and raises the loss by δ² on average (cross term 2δ·mean(ε̂ − ε) averages out)
    d = paired(le.errors["adapted"], le.errors["base"], le.grid)
    assert abs(d["overall"]["mean"] - 0.09) < 4 * d["overall"]["stderr"] + 1e-9
    assert paired(le.errors["base"], le.errors["base"], le.grid)["overall"] == {"mean": 0.0, "stderr": 0.0}
    res = validation_loss(models["adapted"], items, process="vp", parameterization="v",
                          baseline=models["base"])  # fmt: skip
    assert res["difference"]["overall"]["mean"] == pytest.approx(d["overall"]["mean"], rel=1e-12)
    assert res["settings"]["bands"]["noisy"] == [None, -3.0]


def test_level_summary_bands_by_hand():
    grid = [-6.0, -3.0, 0.0, 3.0, 4.0]
    v = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 9.0]], dtype=torch.float64)
    s = level_summary(v, grid)
    assert [c["mean"] for c in s["curve"]] == [2.0, 3.0, 4.0, 5.0, 7.0]
    assert s["curve"][0]["stderr"] == pytest.approx(math.sqrt(2.0) / math.sqrt(2))
    assert s["bands"]["noisy"]["logsnr"] == [-6.0] and s["bands"]["mid"]["logsnr"] == [-3.0, 0.0, 3.0]
    assert s["bands"]["clean"] == {"mean": 7.0, "stderr": pytest.approx(2.0), "logsnr": [4.0]}
    assert s["bands"]["mid"]["mean"] == pytest.approx(4.0)  # per-item band means 3 and 5
    assert s["overall"]["mean"] == pytest.approx(4.2) and s["num_items"] == 2
    assert level_summary(v[:1], grid)["overall"]["stderr"] is None  # one item: no spread


def test_conditioning_is_batched_per_item():
    x0 = torch.zeros(4, 1, 2, 2, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3])

    class Echo(torch.nn.Module):  # ε̂ = label: loss grows with the label
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, z, lam, labels):
            return labels.to(z.dtype).view(-1, 1, 1, 1).expand_as(z)

    le = level_errors({"m": Echo()}, items_from(x0, {"labels": labels}), process="vp",
                      parameterization="eps", grid=[0.0], repeats=50, batch_size=3)  # fmt: skip
    # item i's noise comes from its own generator seeded from (seed 0, i): (repeats, levels, *shape)
    eps = torch.stack([torch.randn((50, 1, 1, 2, 2), generator=g, dtype=torch.float64)
                       for g in sample_generators(0, range(4))])  # fmt: skip
    expected = (labels.double().view(4, 1, 1, 1, 1, 1) - eps).pow(2).mean((1, 2, 3, 4, 5))
    torch.testing.assert_close(le.errors["m"][:, 0], expected, rtol=1e-12, atol=0)


def test_holdout_split_and_bad_input():
    tr, va = holdout_split(10, seed=0)
    assert len(va) == 2 and sorted(tr + va) == list(range(10)) and holdout_split(10, seed=0) == (tr, va)
    assert holdout_split(10, seed=1) != (tr, va) and len(holdout_split(2)[1]) == 1
    with pytest.raises(ValueError, match="at least 2 images"):
        holdout_split(1)
    items = gaussian_items(2)
    m = {"m": GaussianOracle("eps")}
    with pytest.raises(ValueError, match="finite, increasing"):
        level_errors(m, items, process="vp", parameterization="eps", grid=[1.0, 0.0])
    with pytest.raises(ValueError, match="no validation items"):
        level_errors(m, [], process="vp", parameterization="eps")
    with pytest.raises(ValueError, match="reference 'x' is not one of"):
        level_errors(m, items, process="vp", parameterization="eps", reference="x")
    with pytest.raises(ValueError, match="leading dimension 2"):
        items_from(torch.zeros(2, 1, 2, 2), {"labels": torch.zeros(3)})
    assert isinstance(items[0], Item)
