"""Zero terminal SNR: grids that start at σ = inf (solvers, denoiser, export), against diffusers' DDIM."""

from __future__ import annotations

import math

import pytest
import torch

from noiselevels.levels import alpha_sigma, broadcast
from noiselevels.sampling import toy
from noiselevels.sampling.denoiser import as_denoiser
from noiselevels.sampling.solvers import SOLVERS, initial_x, solve
from noiselevels.sampling.spacings import spacing
from noiselevels.schedules import schedule, zero_terminal_snr

F64 = torch.float64
SD_BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


def _ztsnr_ddpm():
    return zero_terminal_snr(schedule("ddpm", **SD_BETAS))


class ExactModel(torch.nn.Module):
    """The exact v- (or flow-) prediction of a Gaussian mixture under a process, as a network would be
    called: ``model(z, logsnr)``; at α = 0 (λ = −inf) x̂₀ = E[x₀]."""

    def __init__(self, prob, process="vp", param="v"):
        super().__init__()
        self.prob, self.process, self.param = prob, process, param
        self.mean = (prob.log_w.exp()[:, None] * prob.means).sum(0)

    def forward(self, z, logsnr):
        alpha, sigma = alpha_sigma(logsnr=logsnr.to(F64), process=self.process)
        a, s = broadcast(alpha, z), broadcast(sigma, z)
        pure = (alpha == 0)[:, None]
        x0 = self.prob.denoiser(z / a.clamp_min(1e-300), sigma / alpha)
        x0 = torch.where(pure, self.mean.expand_as(z), x0)
        eps = (z - a * x0) / s
        return a * eps - s * x0 if self.param == "v" else eps - x0


@pytest.fixture(scope="module")
def prob():
    return toy.mixture_2d()


def test_ddim_zero_snr_trailing_matches_diffusers(prob):
    """Euler on the trailing grid of a rescaled (zero-SNR) SD table from σ = inf is diffusers' DDIMScheduler
    (rescale_betas_zero_snr, trailing, v_prediction, η = 0) step for step, to float64 rounding."""
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(
        num_train_timesteps=1000, rescale_betas_zero_snr=True, timestep_spacing="trailing",
        prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=True, **SD_BETAS,
    )  # fmt: skip
    n = 10
    sched.set_timesteps(n)
    table = _ztsnr_ddpm().logsnr_table()
    model = ExactModel(prob)
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    z, seen = noise.clone(), []
    for t in sched.timesteps:
        lam = table[int(t)].expand(z.shape[0])
        v = model(z, lam)
        seen.append(float(lam[0]))
        z = sched.step(v, t, z, eta=0.0).prev_sample
    sigmas = spacing("uniform_t", schedule=_ztsnr_ddpm(), rule="trailing").sigmas(n)
    assert math.isinf(float(sigmas[0])) and seen[0] == -math.inf
    torch.testing.assert_close(-2 * torch.log(sigmas[:-1]), torch.tensor(seen, dtype=F64))
    den = as_denoiser(model, process="vp", parameterization="v")
    ours = solve(den, initial_x(noise, sigmas), sigmas=sigmas, solver="euler")
    torch.testing.assert_close(ours, z, rtol=1e-5, atol=1e-5)  # diffusers keeps ᾱ in float32: 1e-6 apart


def _grid():
    return torch.tensor([math.inf, 20.0, 5.0, 1.0, 0.3, 0.05, 0.0], dtype=F64)


@pytest.mark.parametrize("name", SOLVERS.names())
def test_every_solver_starts_at_inf(prob, name):
    """For every solver: finite samples, and the result equals the DDIM step from pure noise followed by
    the solver on the rest of the grid (same generator draws); the callback sees i = 0 at σ = inf."""
    den = as_denoiser(ExactModel(prob), process="vp", parameterization="v")
    noise = torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    seen = []
    gen = torch.Generator().manual_seed(2)
    out = solve(den, initial_x(noise, _grid()), sigmas=_grid(), solver=name, generator=gen,
                callback=lambda d: seen.append((d["i"], d["sigma"])))  # fmt: skip
    assert torch.isfinite(out).all()
    x1 = ExactModel(prob).mean.expand_as(noise) + 20.0 * noise  # x̂₀ = E[x₀] at σ = inf, then + σ₁·ε
    rest = solve(den, x1, sigmas=_grid()[1:], solver=name, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out, rest, rtol=1e-12, atol=1e-12)
    assert seen[0] == (0, math.inf) and seen[1][0] == 1 and seen[1][1] == 20.0


def test_per_row_grids_start_at_inf(prob):
    den = as_denoiser(ExactModel(prob), process="vp", parameterization="v")
    noise = torch.randn(3, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    grids = torch.stack([_grid(), torch.tensor([math.inf, 30.0, 2.0, 0.7, 0.2, 0.01, 0.0], dtype=F64),
                         _grid()])  # fmt: skip
    out = solve(den, initial_x(noise, grids), sigmas=grids, solver="dpmpp_2m")
    for b in range(3):
        one = solve(den, noise[b : b + 1].clone(), sigmas=grids[b], solver="dpmpp_2m")
        torch.testing.assert_close(out[b : b + 1], one, rtol=1e-12, atol=1e-12)


def test_flow_model_from_pure_noise(prob):
    """Flow matching (α = 1 − t, σ = t): x̂₀ at t = 1 is ε − u = E[x₀] for the exact velocity; a fine
    Euler solve from σ = inf matches the exact ODE solution from a large finite σ."""
    den = as_denoiser(ExactModel(prob, process="flow", param="flow"), process="flow", parameterization="flow")
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    at_inf = den(noise, torch.full((16,), math.inf, dtype=F64))
    torch.testing.assert_close(at_inf, ExactModel(prob).mean.expand(16, 2))
    grid = torch.cat([torch.tensor([math.inf], dtype=F64), spacing("karras").sigmas(200, sigma_max=1e4)])
    out = solve(den, initial_x(noise, grid), sigmas=grid, solver="heun")
    ref = prob.reference_solve(noise * 1e4 + ExactModel(prob).mean, 1e4, 0.002)
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-3)


def test_eps_and_ve_refused_at_inf(prob):
    x = torch.randn(4, 2, dtype=F64)
    inf = torch.full((4,), math.inf, dtype=F64)
    with pytest.raises(ValueError, match="ε-prediction"):
        as_denoiser(lambda z, lam: z, process="vp", parameterization="eps")(x, inf)
    with pytest.raises(ValueError, match="ve process"):
        as_denoiser(lambda z, lam: z, process="ve", parameterization="x0")(x, inf)
    with pytest.raises(ValueError, match="ε-prediction"):
        solve(as_denoiser(lambda z, lam: z, process="vp", parameterization="eps"), x, sigmas=_grid())


@pytest.mark.parametrize(
    "grid, match",
    [
        ([10.0, math.inf, 0.0], "only the first"),
        ([math.inf, math.inf, 0.0], "only the first"),
        ([math.nan, 1.0, 0.0], "only the first"),
        ([[math.inf, 1.0, 0.0], [5.0, 1.0, 0.0]], "starts at inf"),
    ],
)
def test_bad_inf_grids(grid, match):
    x = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(ValueError, match=match):
        solve(lambda x, s: x, x, sigmas=torch.tensor(grid, dtype=F64), solver="euler")


def test_initial_x():
    noise = torch.randn(2, 3, dtype=F64)
    torch.testing.assert_close(initial_x(noise, _grid()), noise)
    torch.testing.assert_close(initial_x(noise, torch.tensor([4.0, 1.0, 0.0], dtype=F64)), 4.0 * noise)
    per_row = torch.tensor([[4.0, 1.0, 0.0], [2.0, 1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(initial_x(noise, per_row), noise * torch.tensor([[4.0], [2.0]], dtype=F64))


# ------------------------------------------------------------------------------------------------
# runs, the command line, exports and configuration checks
# ------------------------------------------------------------------------------------------------
ZTSNR_NOISE = {
    "process": "vp",
    "parameterization": "v",
    "schedule": {"name": "ddpm", "zero_terminal_snr": True, **SD_BETAS},
    "density": {"name": "uniform_t"},
    "weighting": {"name": "constant", "units": "v"},
}


def _noise(**changes):
    from noiselevels.config import noise_config

    return noise_config({**ZTSNR_NOISE, **changes})


def test_run_spacing_defaults_to_the_runs_schedule():
    from noiselevels.runs.run import spacing_for_run

    grid = spacing_for_run(_noise(), "uniform_t", {"rule": "trailing"}).sigmas(5)
    want = spacing("uniform_t", schedule=_ztsnr_ddpm(), rule="trailing").sigmas(5)
    torch.testing.assert_close(grid, want)
    assert math.isinf(float(grid[0]))


def test_sample_command_starts_at_pure_noise(tmp_path):
    """`sample RUN --spacing uniform_t --spacing-param rule=trailing` on a ZTSNR v-prediction run: the
    grid starts at σ = inf (first denoiser call at σ = inf) and the images are finite."""
    from safetensors.torch import load_file

    from noiselevels.cli import main
    from noiselevels.runs.config import to_toml

    cfg = {"noise": ZTSNR_NOISE, "data": {"name": "mnist", "size": 8, "batch_size": 8, "num_images": 40},
           "model": {"channels": [8], "emb_dim": 8, "fourier_features": 4},
           "train": {"steps": 2, "log_every": 1, "ckpt_every": 0, "warmup": 1}}  # fmt: skip
    (tmp_path / "c.toml").write_text(to_toml(cfg))
    assert main(["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    out = tmp_path / "s"
    args = ["sample", str(tmp_path / "run"), "--spacing", "uniform_t", "--spacing-param", "rule=trailing",
            "--steps", "4", "--num", "3", "--out", f"{out}.png",
            "--save-tensor", f"{out}.safetensors"]  # fmt: skip
    assert main(args) == 0
    x = load_file(f"{out}.safetensors")["samples"]
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()


def _show(capsys, fmt):
    from noiselevels.cli import main

    args = ["spacing", "show", "uniform_t", "--steps", "5", "--param", "schedule=ddpm", "--param",
            "schedule.rescale_betas_zero_snr=true", "--param", "rule=trailing", "--format", fmt]  # fmt: skip
    assert main(args) == 0
    return capsys.readouterr().out


def test_json_export_of_an_inf_grid(capsys, tmp_path):
    import json

    from noiselevels.commands.sample import load_sigmas

    text = _show(capsys, "json")
    obj = json.loads(text)
    want = spacing("uniform_t", schedule=zero_terminal_snr(schedule("ddpm")), rule="trailing").sigmas(5)
    assert obj["sigmas"][0] == "Infinity" and obj["logsnrs"][0] == "-Infinity" and obj["logsnrs"][-1] is None
    assert obj["zero_terminal_snr"] is True and obj["timesteps"] == [999.0, 799.0, 599.0, 399.0, 199.0]
    torch.testing.assert_close(torch.tensor([float(v) for v in obj["sigmas"]], dtype=F64), want)
    (tmp_path / "g.json").write_text(text)
    torch.testing.assert_close(load_sigmas(str(tmp_path / "g.json")), want)


def test_diffusers_and_comfyui_exports_of_an_inf_grid(capsys):
    """diffusers: σ = inf is written as EulerDiscreteScheduler's own zero-SNR σ_T, and its timesteps give
    the same grid in that scheduler; ComfyUI: its zsnr σ_T."""
    diffusers = pytest.importorskip("diffusers")
    from noiselevels.commands.spacing import COMFYUI_ZSNR_SIGMA, DIFFUSERS_ZSNR_SIGMA

    lines = [ln for ln in _show(capsys, "diffusers").splitlines() if "set_timesteps(" in ln]
    sig = eval(lines[0].split("sigmas=")[1].rstrip(")"))
    ts = eval(lines[1].split("timesteps=")[1].rstrip(")"))
    euler = diffusers.EulerDiscreteScheduler(rescale_betas_zero_snr=True)
    assert float(euler.sigmas[0]) == pytest.approx(DIFFUSERS_ZSNR_SIGMA, rel=1e-6)
    euler.set_timesteps(timesteps=ts)
    torch.testing.assert_close(euler.sigmas.double(), torch.tensor(sig, dtype=F64), rtol=1e-5, atol=1e-6)
    comfy = _show(capsys, "comfyui").splitlines()[1].split(", ")
    a_T = 4.8973451890853435e-08  # ComfyUI's ᾱ_T (comfy/model_sampling.py)
    assert float(comfy[0]) == COMFYUI_ZSNR_SIGMA == pytest.approx(((1 - a_T) / a_T) ** 0.5)


def test_broken_combinations_are_warned_or_refused():
    import warnings

    from noiselevels.noise import NoiseConfigWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _noise()  # ZTSNR + v: fine
    with pytest.warns(NoiseConfigWarning, match="ε-prediction"):
        _noise(parameterization="eps")
    with pytest.warns(NoiseConfigWarning, match="flow matching"):
        _noise(process="flow", parameterization="flow", schedule={"name": "flow"}, noise_offset=0.1)
    with pytest.warns(NoiseConfigWarning, match="workaround"):
        _noise(noise_offset=0.1)
    with pytest.raises(ValueError, match="ve process"):
        _noise(process="ve", parameterization="x0")


def test_finite_start_on_a_ztsnr_run_is_warned():
    from noiselevels.noise import NoiseConfigWarning
    from noiselevels.runs.run import generate

    model = lambda z, lam, **kw: torch.zeros_like(z)  # noqa: E731
    with pytest.warns(NoiseConfigWarning, match="rule=trailing"):
        generate(model, _noise(), (2,), num=2, steps=3, spacing="karras", solver="euler")
    rule = {"rule": "trailing"}
    x = generate(model, _noise(), (2,), num=2, steps=3, spacing="uniform_t", spacing_params=rule)
    assert torch.isfinite(x).all()
