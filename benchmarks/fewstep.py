"""Benchmark: few-step sampling accuracy of noiselevels' solvers, named grids and optimised grids against
diffusers' schedulers, driven by the same network and the same starting noise.

Models: the shipped ``mnist-base`` (class-conditional rectified flow, labels drawn from its 9 classes,
no guidance) and the exact 64-D Gaussian mixture of ``noiselevels.sampling.toy`` (``mixture_64d``).
Every sampler starts from the same x_T at σ_T = 157.41, the top of diffusers' default DDPM table
(linear β 1e-4…0.02, 1000 steps; the first level of every default diffusers grid), and is scored by
the RMS distance of its samples to the converged probability-flow ODE solution from the same x_T
(mnist-base: ``uni_pc`` with 96 steps uniform in log σ down to 0.002, then D; its distance to the
48-step solve is reported; the mixture: an adaptive Dormand–Prince solve at rtol 1e-8).

* diffusers 0.42 schedulers with their default configuration, the VE denoiser given to them as an
  ε-prediction (ε̂ = (x − D(x, σ))/σ at the σ the scheduler assigns to its step): DPMSolverMultistep
  (DPM++2M), DPMSolverMultistep with Karras sigmas, UniPCMultistep (bh2, order 2), DDIM with trailing
  timesteps, EulerDiscrete; NFE = steps for all;
* noiselevels: every one-evaluation-per-step solver on every named grid over [0.002, σ_T] (table grids
  keep their own levels, clipped); the grid of ``optimize_spacing(solver="auto")`` fitted on a
  different noise batch and different labels (64 samples, 8 gradient iterations, 48-step reference),
  scored on the held-out batch (64 samples; the mixture: 256), with its wall time — at every budget on
  the mixture, at 5 and 8 NFE (the targets) on mnist-base, to keep the run near 20 CPU minutes.

FD is not measured: on mnist-base several 5–16-step samplers score a lower FD than the converged ODE
solution itself (issue 15), so FD ranks a sampler partly by its truncation error, not by accuracy.

Run (about 20 CPU minutes, one thread; ``--quick``: fewer samples and budgets, a few minutes):

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/fewstep.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from noiselevels.sampling.optimize import _initial_grid, optimize_spacing
from noiselevels.sampling.solvers import solve
from noiselevels.sampling.toy import ode_solve, problem

SIGMA_MIN = 0.002
SOLVERS = ("uni_pc", "uni_pc_bh2", "dpmpp_3m", "dpmpp_2m", "deis", "ipndm_v", "ipndm", "euler")
GRIDS = ("karras", "exponential", "ays", "diffusers_linspace", "diffusers_trailing")
OUT = Path(__file__).resolve().parent / "results"


def _diffusers_schedulers() -> dict:
    import diffusers

    return {
        "DPM++2M": lambda: diffusers.DPMSolverMultistepScheduler(),
        "DPM++2M Karras": lambda: diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True),
        "UniPC": lambda: diffusers.UniPCMultistepScheduler(),
        "DDIM trailing": lambda: diffusers.DDIMScheduler(timestep_spacing="trailing"),
        "Euler": lambda: diffusers.EulerDiscreteScheduler(),
    }


def _sigma_top() -> float:
    import diffusers

    a = diffusers.DDPMScheduler().alphas_cumprod[-1].double()
    return float(((1 - a) / a).sqrt())


@torch.no_grad()
def diffusers_sample(make, den, x_ve: Tensor, sigma_top: float, nfe: int) -> tuple[Tensor, int]:
    """Run a diffusers scheduler with the VE denoiser as an ε-model from x_ve at σ_top; (x₀, NFE)."""
    sched = make()
    sched.set_timesteps(nfe)
    ac = sched.alphas_cumprod.double()
    sample = x_ve / math.sqrt(1 + sigma_top**2) * float(sched.init_noise_sigma)
    calls = 0
    for i, t in enumerate(sched.timesteps):
        z = sched.scale_model_input(sample, t)
        if hasattr(sched, "sigmas"):
            sigma = float(sched.sigmas[i])
        else:
            sigma = float(((1 - ac[int(t)]) / ac[int(t)]).sqrt())
        x = z * math.sqrt(1 + sigma**2)
        eps = (x - den(x, torch.full((x.shape[0],), sigma, dtype=x.dtype))) / sigma
        calls += 1
        sample = sched.step(eps.to(sample.dtype), t, sample).prev_sample
    return sample, calls


def rms(a: Tensor, b: Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean().sqrt())


def _counted(den):
    count = [0]

    def wrapped(x, s):
        count[0] += 1
        return den(x, s)

    return wrapped, count


def evaluate_model(name, den_test, den_fit, x_ve, target, sigma_top, nfes, fit_samples, iters, dtype, shape,
                   optimize_nfes):
    """Every sampler at every NFE on the held-out batch; the optimised grids fitted on ``den_fit``."""
    rows = []
    makers = _diffusers_schedulers()
    for nfe in nfes:
        row = {"nfe": nfe, "diffusers": {}, "named": {}, "optimized": None}
        for label, make in makers.items():
            out, calls = diffusers_sample(make, den_test, x_ve, sigma_top, nfe)
            assert calls == nfe
            row["diffusers"][label] = rms(out, target)
        for grid_name in GRIDS:
            grid = _initial_grid(grid_name, nfe, SIGMA_MIN, sigma_top, keep_last=True)
            for s in SOLVERS:
                counted, count = _counted(den_test)
                with torch.no_grad():
                    out = solve(counted, x_ve, sigmas=grid, solver=s)
                assert count[0] == nfe
                row["named"][f"{s} @ {grid_name}"] = rms(out, target)
        if nfe not in optimize_nfes:
            _summarise(row)
            print(f"[{name}] NFE {nfe}: diffusers best {row['diffusers_best']} "
                  f"{row['diffusers_best_rms']:.4f}, named best {row['named_best']} "
                  f"{row['named_best_rms']:.4f}", flush=True)
            rows.append(row)
            continue
        t0 = time.perf_counter()
        res = optimize_spacing(den_fit, steps=nfe, solver="auto", sigma_min=SIGMA_MIN, sigma_max=sigma_top,
                               shape=shape, generator=torch.Generator().manual_seed(nfe),
                               num_samples=fit_samples, iters=iters, reference_steps=48, dtype=dtype,
                               return_info=True)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            out = solve(den_test, x_ve, sigmas=res.sigmas, solver=res.solver)
        row["optimized"] = {"solver": res.solver, "sigmas": res.sigmas.tolist(), "rms": rms(out, target),
                            "fit_before": res.error_before, "fit_after": res.error_after, "seconds": seconds,
                            "evaluations": res.evaluations, "method": res.method}
        _summarise(row)
        print(f"[{name}] NFE {nfe}: diffusers best {row['diffusers_best']} {row['diffusers_best_rms']:.4f}, "
              f"named best {row['named_best']} {row['named_best_rms']:.4f}, optimised {res.solver} "
              f"{row['optimized']['rms']:.4f} ({seconds:.0f} s)", flush=True)
        rows.append(row)
    return rows


def _summarise(row):
    dname, dval = min(row["diffusers"].items(), key=lambda kv: kv[1])
    nname, nval = min(row["named"].items(), key=lambda kv: kv[1])
    row.update(diffusers_best=dname, diffusers_best_rms=dval, named_best=nname, named_best_rms=nval,
               ratio_named=nval / dval)
    if row["optimized"] is not None:
        row["ratio_optimized"] = row["optimized"]["rms"] / dval


def mnist_setup(n_test, n_fit, sigma_top):
    from noiselevels.runs.grid_target import grid_target

    test = grid_target("mnist-base", num_samples=n_test, seed=1000)
    fit = grid_target("mnist-base", num_samples=n_fit, seed=0)
    g = torch.Generator().manual_seed(12345)
    x_ve = torch.randn(n_test, *test.shape, generator=g) * math.sqrt(1 + sigma_top**2)
    t0 = time.perf_counter()
    with torch.no_grad():
        refs = {}
        for steps in (48, 96):
            u = torch.linspace(math.log(sigma_top), math.log(SIGMA_MIN), steps + 1, dtype=torch.float64)
            x_min = solve(test.denoiser, x_ve, sigmas=torch.exp(u), solver="uni_pc")
            refs[steps] = test.denoiser(x_min, torch.full((n_test,), SIGMA_MIN))
    info = {"reference_48_vs_96": rms(refs[48], refs[96]), "reference_seconds": time.perf_counter() - t0,
            "test_conditions": test.conditions, "fit_conditions": fit.conditions}
    return test.denoiser, fit.denoiser, x_ve, refs[96], test.shape, info


def mixture_setup(n_test, sigma_top):
    prob = problem("mixture_64d")
    g = torch.Generator().manual_seed(12345)
    x_ve = torch.randn(n_test, *prob.shape, generator=g, dtype=torch.float64) * math.sqrt(1 + sigma_top**2)
    x_min = ode_solve(prob.denoiser, x_ve, sigma_max=sigma_top, sigma_min=SIGMA_MIN, rtol=1e-8, atol=1e-8)
    target = prob.denoiser(x_min, torch.full((n_test,), SIGMA_MIN, dtype=torch.float64))
    return prob.denoiser, x_ve, target, prob.shape


def write_markdown(results, path):
    lines = ["# Few-step sampling: noiselevels vs diffusers (benchmarks/fewstep.py)", "",
             results["note"], "", f"Machine: {results['machine']}; {results['threads']} thread(s).", ""]
    for model, block in results["models"].items():
        lines += [f"## {model}", "", block.get("setup", ""), "",
                  "| NFE | diffusers best | RMS | noiselevels best named | RMS | ratio | optimised (solver) "
                  "| RMS | ratio | optimiser s |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in block["rows"]:
            o = r["optimized"]
            opt = (f"{o['solver']} | {o['rms']:.4f} | {r['ratio_optimized']:.2f} | {o['seconds']:.0f}"
                   if o is not None else "not run | | | ")
            lines.append(f"| {r['nfe']} | {r['diffusers_best']} | {r['diffusers_best_rms']:.4f} | "
                         f"{r['named_best']} | {r['named_best_rms']:.4f} | {r['ratio_named']:.2f} | {opt} |")
        lines += ["", "All diffusers schedulers (RMS to the converged solution):", "",
                  "| NFE | " + " | ".join(block["rows"][0]["diffusers"]) + " |",
                  "|---|" + "---|" * len(block["rows"][0]["diffusers"])]
        for r in block["rows"]:
            lines.append(f"| {r['nfe']} | " + " | ".join(f"{v:.4f}" for v in r["diffusers"].values()) + " |")
        lines += ["", "noiselevels solvers on named grids (RMS; rows solver, columns grid):", ""]
        for r in block["rows"]:
            lines += [f"NFE {r['nfe']}:", "", "| solver | " + " | ".join(GRIDS) + " |",
                      "|---|" + "---|" * len(GRIDS)]
            for s in SOLVERS:
                cells = " | ".join(f"{r['named'][f'{s} @ {g}']:.4f}" for g in GRIDS)
                lines.append(f"| {s} | {cells} |")
            lines.append("")
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sigma_top = _sigma_top()
    nfes = (5, 8) if args.quick else (4, 5, 6, 8, 10)
    n_test, n_fit = (32, 32) if args.quick else (64, 64)
    optimize_nfes = (5, 8)
    t0 = time.perf_counter()
    results = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "sigma_top": sigma_top, "sigma_min": SIGMA_MIN, "nfes": list(nfes), "models": {},
               "note": __doc__.split("\n\n")[1].replace("\n", " ")}
    den, x_ve, target, shape = mixture_setup(256, sigma_top)
    rows = evaluate_model("mixture_64d", den, den, x_ve, target, sigma_top, nfes, 128, 20, torch.float64,
                          shape, nfes)
    results["models"]["mixture_64d"] = {"rows": rows, "setup": "exact 64-D Gaussian mixture, 256 held-out "
                                        "samples, optimiser fitted on 128 others (20 iterations)"}
    den_test, den_fit, x_ve, target, shape, info = mnist_setup(n_test, n_fit, sigma_top)
    print(f"[mnist-base] reference: 48 vs 96 steps RMS {info['reference_48_vs_96']:.4f}", flush=True)
    rows = evaluate_model("mnist-base", den_test, den_fit, x_ve, target, sigma_top, nfes, n_fit, 8,
                          torch.float32, shape, optimize_nfes)
    results["models"]["mnist-base"] = {
        "rows": rows, **info,
        "setup": f"{n_test} held-out samples ({info['test_conditions']}); optimiser fitted on {n_fit} other "
                 f"noises and labels; reference = uni_pc 96 steps (its RMS to the 48-step solve: "
                 f"{info['reference_48_vs_96']:.4f})"}
    results["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "fewstep_quick" if args.quick else "fewstep"
    tmp = out / f".{name}.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, out / f"{name}.json")
    write_markdown(results, out / f"{name}.md")
    print(f"wrote {out / name}.json/.md in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
