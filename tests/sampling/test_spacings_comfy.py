"""Tests of ComfyUI's scheduler spacings (simple, normal, sgm_uniform, ddim_uniform over a model's σ table)
and of laplace: hand-checked indices on 10-entry tables, whole grids against small float64 numpy
reimplementations of the documented rules, cross-checks against diffusers' index rules (uniform_t),
grid invariants and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from noiselevels.catalog import from_dict
from noiselevels.cli import main
from noiselevels.components import SPACINGS
from noiselevels.sampling.spacings import sd_schedule, spacing
from noiselevels.schedules import schedule

F64 = torch.float64
TABLE_SPACINGS = ("simple", "normal", "sgm_uniform", "ddim_uniform")
SD_SIGMA_MIN, SD_SIGMA_MAX = 0.0291671582, 14.6146412293  # SD's σ at timesteps 0 and 999


class _Table:
    """A discrete 'schedule' given by its σ table (index 0 = least noise): σ values are easy to read."""

    def __init__(self, sigmas):
        self.sigmas = np.asarray(sigmas, dtype=np.float64)

    def logsnr_table(self):
        return torch.from_numpy(-2.0 * np.log(self.sigmas))


ONE_TO_TEN = _Table(np.arange(1.0, 11.0))  # σ_k = k + 1, so a grid value names its index


def _grid(*values) -> torch.Tensor:
    return torch.tensor([*values, 0.0], dtype=F64)


# ----------------------------------------------------------------------------------------------
# independent float64 numpy versions of the documented rules
# ----------------------------------------------------------------------------------------------
def _np_sigma_table(T: int, beta_start: float, beta_end: float) -> np.ndarray:
    """σ_k = √((1 − ᾱ_k)/ᾱ_k) of a scaled_linear β table, straight from the betas."""
    betas = np.linspace(beta_start**0.5, beta_end**0.5, T) ** 2
    abar = np.cumprod(1.0 - betas)
    return np.sqrt((1.0 - abar) / abar)


def _np_simple(sig: np.ndarray, n: int) -> np.ndarray:
    T = len(sig)
    return np.array([sig[T - 1 - int(i * (T / n))] for i in range(n)] + [0.0])


def _np_ddim_uniform(sig: np.ndarray, n: int) -> np.ndarray:
    T, out, k = len(sig), [], 1
    while k < T:
        out.append(sig[k])
        k += max(T // n, 1)
    return np.array([*out[::-1], 0.0])


def _np_normal(sig: np.ndarray, n: int, *, drop_last: bool) -> np.ndarray:
    T = len(sig)
    t = np.linspace(T - 1, 0, n + 1 if drop_last else n)[:n]
    return np.append(np.exp(np.interp(t, np.arange(T), np.log(sig))), 0.0)


def _np_laplace(n: int, lo: float, hi: float, mu: float, beta: float) -> np.ndarray:
    u = np.linspace(0.0, 1.0, n)
    log_sigma = mu - beta * np.sign(0.5 - u) * np.log(1.0 - 2.0 * np.abs(0.5 - u) + 1e-5)
    return np.append(np.clip(np.exp(log_sigma), lo, hi), 0.0)


def _np_reference(name: str, sig: np.ndarray, n: int) -> np.ndarray:
    if name == "simple":
        return _np_simple(sig, n)
    if name == "ddim_uniform":
        return _np_ddim_uniform(sig, n)
    return _np_normal(sig, n, drop_last=name == "sgm_uniform")


def _ddim_keeps(T: int, n: int) -> bool:
    return len(range(1, T, max(T // n, 1))) == n


# ----------------------------------------------------------------------------------------------
# hand-checked indices on a 10-entry table σ = 1, 2, …, 10
# ----------------------------------------------------------------------------------------------
def test_simple_by_hand():
    s = spacing("simple", schedule=ONE_TO_TEN)
    # T/N = 10/3: k = 9 − ⌊0⌋, 9 − ⌊3.33⌋, 9 − ⌊6.67⌋ = 9, 6, 3
    assert s.timesteps(3).tolist() == [9.0, 6.0, 3.0]
    assert_close(s.sigmas(3), _grid(10, 7, 4), rtol=1e-14, atol=0)
    # T/N = 2.5: ⌊0⌋, ⌊2.5⌋, ⌊5⌋, ⌊7.5⌋ = 0, 2, 5, 7
    assert_close(s.sigmas(4), _grid(10, 8, 5, 3), rtol=1e-14, atol=0)
    assert_close(s.sigmas(1), _grid(10), rtol=1e-14, atol=0)
    assert_close(s.sigmas(10), _grid(*range(10, 0, -1)), rtol=1e-14, atol=0)  # N = T: the whole table


def test_ddim_uniform_by_hand():
    s = spacing("ddim_uniform", schedule=ONE_TO_TEN)
    # ⌊10/3⌋ = 3: indices 1, 4, 7 → σ 2, 5, 8 (never index 0, and here not the top either)
    assert s.timesteps(3).tolist() == [7.0, 4.0, 1.0]
    assert_close(s.sigmas(3), _grid(8, 5, 2), rtol=1e-14, atol=0)
    assert_close(s.sigmas(5), _grid(10, 8, 6, 4, 2), rtol=1e-14, atol=0)  # stride 2: 1, 3, 5, 7, 9
    assert_close(s.sigmas(1), _grid(2), rtol=1e-14, atol=0)  # stride 10: index 1 only
    assert_close(s.sigmas(9), _grid(*range(10, 1, -1)), rtol=1e-14, atol=0)  # stride 1: 1 … 9
    # N = 4 has stride 2 as well: ComfyUI would run 5 steps
    with pytest.raises(
        ValueError, match=r"for 4 steps \(indices from 1 in strides of 2\) gives 5 steps.*n=3 or n=5"
    ):
        s.sigmas(4)
    with pytest.raises(ValueError, match=r"gives 9 steps, not 10.*use n=9$"):
        s.sigmas(10)


def test_normal_and_sgm_uniform_by_hand():
    normal = spacing("normal", schedule=ONE_TO_TEN)
    sgm = spacing("sgm_uniform", schedule=ONE_TO_TEN)
    # normal: t = linspace(9, 0, N); sgm_uniform: linspace(9, 0, N + 1) without its last (t = 0)
    assert normal.timesteps(4).tolist() == [9.0, 6.0, 3.0, 0.0]
    assert_close(normal.sigmas(4), _grid(10, 7, 4, 1), rtol=1e-14, atol=0)
    assert sgm.timesteps(3).tolist() == [9.0, 6.0, 3.0]
    assert_close(sgm.sigmas(3), _grid(10, 7, 4), rtol=1e-14, atol=0)
    # t = 4.5 lies halfway between σ = 5 and σ = 6 in log σ: √30 (linear σ would give 5.5)
    assert normal.timesteps(3).tolist() == [9.0, 4.5, 0.0]
    assert_close(normal.sigmas(3), _grid(10, math.sqrt(30.0), 1), rtol=1e-14, atol=0)
    assert_close(sgm.sigmas(2), _grid(10, math.sqrt(30.0)), rtol=1e-14, atol=0)
    assert_close(normal.sigmas(1), _grid(10), rtol=1e-14, atol=0)
    assert_close(sgm.sigmas(1), _grid(10), rtol=1e-14, atol=0)


def test_near_zero_table_ends_become_the_final_zero():
    # normal: table[0] ≤ 1e-5 → N + 1 timesteps, table[0] is the end: the sgm_uniform timesteps
    tiny_first = _Table([1e-6, *range(2, 11)])
    assert_close(spacing("normal", schedule=tiny_first).sigmas(3), _grid(10, 7, 4), rtol=1e-14, atol=0)
    assert_close(spacing("normal", schedule=ONE_TO_TEN).sigmas(3)[-2], torch.tensor(1.0, dtype=F64))
    # ddim_uniform: table[1] ≤ 1e-5 → the rule for N + 1 steps, table[1] is the end
    tiny_two = _Table([1e-7, 1e-6, *range(3, 11)])
    s = spacing("ddim_uniform", schedule=tiny_two)
    assert_close(s.sigmas(4), _grid(10, 8, 6, 4), rtol=1e-14, atol=0)  # rule for 5: 9, 7, 5, 3, (1)
    assert_close(s.sigmas(2), _grid(8, 5), rtol=1e-14, atol=0)  # rule for 3: 7, 4, (1)
    with pytest.raises(ValueError, match="gives 4 steps, not 3"):  # rule for 4: stride 2, five levels
        s.sigmas(3)
    # 1e-5 itself counts as zero (math.isclose(σ, 0, abs_tol=1e-5)); a little more does not
    edge = _Table([1e-5, *range(2, 11)])
    assert spacing("normal", schedule=edge).timesteps(3).tolist() == [9.0, 6.0, 3.0]
    above = _Table([1.1e-5, *range(2, 11)])
    assert spacing("normal", schedule=above).timesteps(3).tolist() == [9.0, 4.5, 0.0]


def test_simple_keeps_comfyuis_float_truncation():
    s = spacing("simple")
    # 19 · (1000/38) = 499.99999999999994 in float64, truncated to 499: k = 999 − 499 = 500, not 499
    assert 19 * (1000 / 38) < 500
    assert s.timesteps(38)[19].item() == 500.0
    assert (1000 - 1 - (19 * 1000) // 38) == 499  # the exact-arithmetic index it replaces


# ----------------------------------------------------------------------------------------------
# the SD table: whole grids against the numpy reimplementations
# ----------------------------------------------------------------------------------------------
def test_default_table_is_stable_diffusions():
    sd = schedule("ddpm", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    assert sd_schedule() == sd
    for name in TABLE_SPACINGS:
        s = spacing(name)
        assert s.schedule == sd
        lo, hi = s.sigma_range()
        assert lo == pytest.approx(SD_SIGMA_MIN, rel=1e-8) and hi == pytest.approx(SD_SIGMA_MAX, rel=1e-10)
    assert_close(spacing("simple").table(), torch.from_numpy(_np_sigma_table(1000, 0.00085, 0.012)),
                 rtol=1e-12, atol=0)  # fmt: skip


@pytest.mark.parametrize("name", TABLE_SPACINGS)
@pytest.mark.parametrize("n", [1, 2, 5, 10, 20, 25, 38, 50, 77, 250, 999])
def test_sd_grids_match_the_numpy_rules(name, n):
    sig = _np_sigma_table(1000, 0.00085, 0.012)
    s = spacing(name)
    if name == "ddim_uniform" and not _ddim_keeps(1000, n):
        with pytest.raises(ValueError, match=f"not {n}"):
            s.sigmas(n)
        return
    got = s.sigmas(n)
    ref = torch.from_numpy(_np_reference(name, sig, n))
    assert got.shape == ref.shape == (n + 1,)
    assert_close(got, ref, rtol=1e-12, atol=0)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(TABLE_SPACINGS), T=st.integers(2, 80), n=st.integers(1, 80),
       ends=st.sampled_from([(0.0001, 0.02), (0.00085, 0.012), (0.001, 0.3)]))  # fmt: skip
def test_small_tables_match_the_numpy_rules(name, T, n, ends):
    sig = _np_sigma_table(T, *ends)
    s = spacing(name, schedule=schedule("ddpm", num_train_timesteps=T, beta_schedule="scaled_linear",
                                        beta_start=ends[0], beta_end=ends[1]))  # fmt: skip
    valid = {"simple": n <= T, "ddim_uniform": _ddim_keeps(T, n) and n < T}.get(name, True)
    if not valid:
        with pytest.raises(ValueError):
            s.sigmas(n)
        return
    assert_close(s.sigmas(n), torch.from_numpy(_np_reference(name, sig, n)), rtol=1e-11, atol=0)


def test_sd_values_at_twenty_steps():
    # spot values, computed by hand from the table: simple k_1 = 999 − 50 = 949, ddim k_0 = 1 + 19·50
    table = spacing("simple").table()
    assert spacing("simple").sigmas(20)[1].item() == table[949].item()
    assert spacing("ddim_uniform").sigmas(20)[0].item() == table[951].item()
    assert spacing("simple").sigmas(20)[-2].item() == table[49].item()
    assert spacing("normal").sigmas(20)[-2].item() == pytest.approx(SD_SIGMA_MIN, rel=1e-6)
    # sgm_uniform's last timestep is 999/20 = 49.95: 5 % of the way from entry 49 to entry 50 in log σ
    sgm_last = math.exp(0.05 * math.log(table[49].item()) + 0.95 * math.log(table[50].item()))
    assert spacing("sgm_uniform").sigmas(20)[-2].item() == pytest.approx(sgm_last, rel=1e-13)


# ----------------------------------------------------------------------------------------------
# agreement with diffusers' index rules (uniform_t, itself tested against diffusers)
# ----------------------------------------------------------------------------------------------
SD = sd_schedule()


@pytest.mark.parametrize("n", [1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500, 1000])
def test_simple_is_trailing_when_n_divides_T(n):
    ref = spacing("uniform_t", schedule=SD, rule="trailing")
    assert_close(spacing("simple").timesteps(n), ref.timesteps(n), rtol=0, atol=0)
    assert_close(spacing("simple").sigmas(n), ref.sigmas(n), rtol=1e-15, atol=0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 10, 20, 25, 40, 50, 100, 999])
def test_ddim_uniform_is_leading_with_steps_offset_one(n):
    ref = spacing("uniform_t", schedule=SD, rule="leading", steps_offset=1)
    assert_close(spacing("ddim_uniform").timesteps(n), ref.timesteps(n), rtol=0, atol=0)
    assert_close(spacing("ddim_uniform").sigmas(n), ref.sigmas(n), rtol=1e-15, atol=0)


def test_normal_has_the_linspace_timesteps_and_interpolates_log_sigma():
    ref = spacing("uniform_t", schedule=SD, rule="linspace")
    for n in (2, 4, 10, 28, 38):  # 999/(N − 1) is an integer: both read table entries
        assert_close(spacing("normal").sigmas(n), ref.sigmas(n), rtol=1e-15, atol=0)
    # N = 7: t = 832.5, 666, 499.5, 333, 166.5, 0. Halfway between entries log σ interpolation gives the
    # geometric mean of the neighbours, linear σ the arithmetic mean (larger); at integers both are entries
    ts = spacing("normal").timesteps(7)
    assert_close(ts, ref.timesteps(7), rtol=0, atol=0)
    got, lin = spacing("normal").sigmas(7)[:-1], ref.sigmas(7)[:-1]
    frac = ts != ts.floor()
    assert frac.tolist() == [False, True, False, True, False, True, False]
    assert torch.all(got[frac] < lin[frac])
    assert_close(got[~frac], lin[~frac], rtol=1e-15, atol=0)


# ----------------------------------------------------------------------------------------------
# invariants
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TABLE_SPACINGS)
@pytest.mark.parametrize("n", [1, 2, 10, 20, 50])
def test_table_grids_decrease_to_zero_from_the_table(name, n):
    s = spacing(name)
    got = s.sigmas(n)
    table = s.table()
    assert got.dtype == F64 and got.shape == (n + 1,)
    assert got[-1] == 0 and torch.all(got.diff() < 0) and torch.all(torch.isfinite(got))
    assert torch.all(got[:-1] >= table[0]) and torch.all(got[:-1] <= table[-1])
    if name == "ddim_uniform":  # starts at index 1 + (N − 1)·⌊T/N⌋, below the top
        assert got[0].item() == table[1 + (n - 1) * (1000 // n)].item()
    else:
        assert got[0].item() == table[-1].item()
    assert_close(s.logsnrs(n), -2.0 * torch.log(got), rtol=0, atol=0)


def test_table_spacings_take_their_range_from_the_table():
    for name in TABLE_SPACINGS:
        with pytest.raises(ValueError, match="takes its σ range"):
            spacing(name).sigmas(10, sigma_min=0.1)
        with pytest.raises(ValueError, match="takes its σ range"):
            spacing(name).logsnrs(10, logsnr_min=-5.0)


def test_another_table_by_schedule():
    ddpm = schedule("ddpm")  # diffusers' default: linear β from 1e-4 to 0.02
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1.0 - betas)
    linear = np.sqrt((1.0 - abar) / abar)
    for name in TABLE_SPACINGS:
        ref = torch.from_numpy(_np_reference(name, linear, 10))
        assert_close(spacing(name, schedule=ddpm).sigmas(10), ref, rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------------------------
# laplace
# ----------------------------------------------------------------------------------------------
def test_laplace_by_hand():
    s = spacing("laplace")
    # u = 0, ½, 1: log σ = ∓β·log ε at the ends (σ = ε^(∓½)), μ in the middle
    got = s.sigmas(3, sigma_min=1e-3, sigma_max=1e3)
    assert_close(got, _grid(1e-5**-0.5, 1.0, 1e-5**0.5), rtol=1e-13, atol=0)
    # u = ¼, ¾: σ = (½ + ε)^(∓½)
    got = s.sigmas(5, sigma_min=1e-3, sigma_max=1e3)
    assert_close(got[1:4], torch.tensor([0.50001**-0.5, 1.0, 0.50001**0.5], dtype=F64), rtol=1e-13, atol=0)
    # the default range (0.002, 80) clips only the top
    got = s.sigmas(3)
    assert_close(got, _grid(80.0, 1.0, 1e-5**0.5), rtol=1e-13, atol=0)
    assert_close(s.sigmas(1), _grid(80.0), rtol=0, atol=0)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 21, 50])
@pytest.mark.parametrize(
    "lo_hi_mu_beta",
    [
        (0.002, 80.0, 0.0, 0.5),
        (0.0291675, 14.614642, 0.0, 0.5),
        (0.01, 50.0, 0.5, 0.8),
        (1e-4, 1e4, -1.0, 0.3),
    ],
)
def test_laplace_matches_the_numpy_rule(n, lo_hi_mu_beta):
    lo, hi, mu, beta = lo_hi_mu_beta
    got = spacing("laplace", mu=mu, beta=beta).sigmas(n, sigma_min=lo, sigma_max=hi)
    assert_close(got, torch.from_numpy(_np_laplace(n, lo, hi, mu, beta)), rtol=1e-13, atol=0)
    assert got[-1] == 0 and torch.all(got.diff() < 0)


def test_laplace_is_the_laplace_schedule_at_uniform_time():
    mu, beta, n = 0.3, 0.7, 41
    got = spacing("laplace", mu=mu, beta=beta).logsnrs(n, logsnr_min=-40.0, logsnr_max=40.0)
    u = torch.linspace(0.0, 1.0, n, dtype=F64)
    lam = schedule("laplace", mu=-2 * mu, b=2 * beta).logsnr(1.0 - u[1:-1])
    # ε = 1e-5 moves log(1 − 2|½ − u|) by less than ε/(1 − 2|½ − u|), so λ by less than 2β times that
    bound = 2 * beta * 1e-5 / (1.0 - 2.0 * (0.5 - u[1:-1]).abs())
    assert torch.all((got[1:-2] - lam).abs() <= bound)
    assert (got[1:-2] - lam).abs().max() > 0.5 * bound.max()  # and the ε is there


# ----------------------------------------------------------------------------------------------
# registry, serialisation, command line
# ----------------------------------------------------------------------------------------------
def test_registered_and_serialisable():
    assert set(SPACINGS.names()) >= {*TABLE_SPACINGS, "laplace"}
    for s in [
        *(spacing(name) for name in TABLE_SPACINGS),
        spacing("normal", schedule=schedule("ddpm", num_train_timesteps=500)),
        spacing("laplace", mu=0.5, beta=0.25),
    ]:
        assert from_dict(json.loads(json.dumps(s.to_dict()))) == s
        assert_close(from_dict(s.to_dict()).sigmas(5), s.sigmas(5), rtol=0, atol=0)


def test_cli_list_and_show(capsys):
    assert main(["spacing", "list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {*TABLE_SPACINGS, "laplace"} <= set(names)
    assert main(["spacing", "show", "simple", "--steps", "20", "--format", "json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["spacing"]["name"] == "simple" and obj["spacing"]["schedule"]["beta_end"] == 0.012
    assert_close(torch.tensor(obj["sigmas"], dtype=F64), spacing("simple").sigmas(20), rtol=1e-7, atol=0)
    assert main(["spacing", "show", "ddim_uniform", "--steps", "10", "--param", "schedule=ddpm",
                 "--format", "comfyui"]) == 0  # fmt: skip
    values = [float(v) for v in capsys.readouterr().out.splitlines()[1].split(",")]
    ref = spacing("ddim_uniform", schedule=schedule("ddpm")).sigmas(10)
    assert_close(torch.tensor(values, dtype=F64), ref, rtol=1e-7, atol=0)
    assert main(["spacing", "show", "ddim_uniform", "--steps", "7"]) == 2
    assert "gives 8 steps, not 7" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*TABLE_SPACINGS, "laplace"])
@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_bad_step_counts(name, n):
    with pytest.raises(ValueError, match="number of steps n must be an integer >= 1"):
        spacing(name).sigmas(n)


def test_too_many_steps_for_the_table():
    with pytest.raises(ValueError, match=r"simple: at most T = 1000 steps .* got n=1001"):
        spacing("simple").sigmas(1001)
    with pytest.raises(ValueError, match=r"gives 8 steps, not 7.*use n=5 or n=8"):
        spacing("ddim_uniform").sigmas(7)
    with pytest.raises(ValueError, match=r"gives 999 steps, not 1000.*use n=999$"):
        spacing("ddim_uniform").sigmas(1000)
    with pytest.raises(ValueError, match="gives 999 steps, not 600"):
        spacing("ddim_uniform").timesteps(600)
    assert spacing("normal").sigmas(3000).shape == (3001,)  # fractional timesteps: any N


def test_bad_tables():
    for name in TABLE_SPACINGS:
        with pytest.raises(ValueError, match="needs a discrete schedule with a logsnr_table"):
            spacing(name, schedule=schedule("cosine"))
        with pytest.raises(ValueError, match=r"finite σ table.*rescale_betas_zero_snr"):
            spacing(name, schedule=schedule("ddpm", rescale_betas_zero_snr=True))
        with pytest.raises(ValueError, match="increases with the index"):
            spacing(name, schedule=_Table([1.0, 3.0, 2.0]))
        with pytest.raises(ValueError, match="at least 2 entries"):
            spacing(name, schedule=_Table([1.0]))
        with pytest.raises(ValueError, match=r"unknown parameter\(s\) 'rho'.*valid parameters: schedule"):
            spacing(name, rho=7.0)


def test_bad_laplace():
    with pytest.raises(ValueError, match=r"beta must be > 0; got 0\.0"):
        spacing("laplace", beta=0.0)
    with pytest.raises(ValueError, match="mu must be a finite number; got inf"):
        spacing("laplace", mu=math.inf)
    with pytest.raises(ValueError, match=r"n=500 clips more than one level to sigma_max=14\.6146"):
        spacing("laplace").sigmas(500, sigma_min=0.0291675, sigma_max=14.614642)
    with pytest.raises(ValueError, match=r"clips more than one level to sigma_min=0\.5"):
        spacing("laplace").sigmas(10, sigma_min=0.5, sigma_max=80.0)
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        spacing("laplace").sigmas(10, sigma_min=5.0, sigma_max=1.0)
