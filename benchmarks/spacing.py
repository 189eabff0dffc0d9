"""Benchmark: sampling error of every named spacing and of the optimised grid on exact problems.

For each exact problem (a 2-D Gaussian mixture, a 64-D anisotropic mixture, the empirical distribution
of 500 MNIST digits), each deterministic solver (euler, heun, dpmpp_2m) and each NFE budget in
{4, 6, 8, 10, 16, 32} (heun: N = ⌊(NFE + 1)/2⌋ steps, 2N − 1 evaluations), the root-mean-square error
of the N-step solve against the exact end point x* = D(x(σ_min), σ_min) of the probability-flow ODE
(``noiselevels.sampling.optimize`` docstring), on held-out starting noise x_T = 80·ε, for:

* every named spacing that takes a σ range (karras ρ=7, exponential, polyexponential ρ=2, vp, beta,
  kl_optimal), all on σ ∈ [0.002, 80];
* the grid of ``optimize_spacing`` (optimised on a different noise batch, so the numbers are
  out-of-sample).

It also measures the per-step overhead of ``solve`` over calling the denoiser directly for a
1M-parameter MLP denoiser (784 → 512 → 512 → 784), and writes ``benchmarks/results/spacing.json`` and
``benchmarks/results/spacing.md``.

Run (about 10 CPU minutes, one thread):

    .venv/bin/python benchmarks/spacing.py            # everything
    .venv/bin/python benchmarks/spacing.py --quick    # 2-D mixture only, fewer sweeps (a minute)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
import time
from pathlib import Path

import torch

from noiselevels.sampling.optimize import optimize_spacing, solve_error
from noiselevels.sampling.solvers import solve, solver
from noiselevels.sampling.spacings import spacing
from noiselevels.sampling.toy import problem

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
NFES = (4, 6, 8, 10, 16, 32)
SOLVERS = ("euler", "heun", "dpmpp_2m")
NAMED = {
    "karras": {},
    "exponential": {},
    "polyexponential": {"rho": 2.0},
    "vp": {},
    "beta": {},
    "kl_optimal": {},
}
# per problem: optimisation batch, held-out batch, reference tolerance, sweep budget (scaled by steps)
SETTINGS = {
    "mixture_2d": {"train": 256, "test": 512, "rtol": 1e-9, "sweeps": 300},
    "mixture_64d": {"train": 128, "test": 256, "rtol": 1e-8, "sweeps": 200},
    # the empirical distribution's error counts samples that land on another example: it needs a larger
    # batch than its cost suggests, or the search fits the batch (48 draws did, out of sample)
    "mnist": {"train": 128, "test": 256, "rtol": 1e-8, "sweeps": 60},
}
OUT = Path(__file__).parent / "results"


def _ratio(a: float, b: float) -> float | None:
    """a/b; 1 when both are 0 (e.g. every sample on the right example); None (JSON null) for x/0."""
    if b == 0:
        return 1.0 if a == 0 else None
    return a / b


def _r(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def steps_for(solver_name: str, nfe: int) -> int:
    return (nfe + 1) // 2 if solver(solver_name).evals_per_step == 2 else nfe


def run_problem(name: str, *, quick: bool, log) -> dict:
    cfg = SETTINGS[name]
    prob = problem(name)
    t0 = time.perf_counter()
    x_t = torch.randn(cfg["test"], *prob.shape, generator=torch.Generator().manual_seed(1234),
                      dtype=torch.float64) * SIGMA_MAX
    tol = cfg["rtol"]
    ref = prob.reference_solve(x_t, sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, rtol=tol, atol=tol)
    target = prob.denoiser(ref, SIGMA_MIN)
    log(f"[{name}] reference for {cfg['test']} samples in {time.perf_counter() - t0:.1f} s")
    out = {"dim": prob.dim, "test_samples": cfg["test"], "train_samples": cfg["train"], "solvers": {}}
    for sname in SOLVERS:
        rows = {}
        for nfe in NFES:
            steps = steps_for(sname, nfe)
            row = {"steps": steps, "nfe": solver(sname).nfe(steps), "named": {}}
            for sp, kw in NAMED.items():
                grid = spacing(sp, **kw).sigmas(steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
                row["named"][sp] = solve_error(prob.denoiser, grid, x_t, target, solver=sname)
            t1 = time.perf_counter()
            sweeps = max(2, cfg["sweeps"] // max(steps, 1)) if not quick else 3
            res = optimize_spacing(
                prob.denoiser, steps=steps, solver=sname, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                shape=prob.shape, generator=torch.Generator().manual_seed(0), num_samples=cfg["train"],
                iters=min(40, sweeps), reference=lambda x, **kw: prob.reference_solve(
                    x, rtol=cfg["rtol"], atol=cfg["rtol"], **kw), return_info=True, patience=None,
            )
            row["optimized"] = solve_error(prob.denoiser, res.sigmas, x_t, target, solver=sname)
            row["optimized_sigmas"] = res.sigmas.tolist()
            row["optimize_seconds"] = time.perf_counter() - t1
            row["optimize_evaluations"] = res.evaluations
            best = min(row["named"], key=row["named"].get)
            row["best_named"] = best
            row["ratio_to_best_named"] = _ratio(row["optimized"], row["named"][best])
            row["ratio_to_karras"] = _ratio(row["optimized"], row["named"]["karras"])
            rows[str(nfe)] = row
            log(f"[{name}] {sname:9s} NFE {row['nfe']:>2}: best named {best} {row['named'][best]:.3e}, "
                f"optimized {row['optimized']:.3e} (x{_r(row['ratio_to_best_named'])}) "
                f"in {row['optimize_seconds']:.1f} s")
        out["solvers"][sname] = rows
    out["seconds"] = time.perf_counter() - t0
    return out


STOCHASTIC_STEPS = (4, 6, 8, 10, 16, 32)


def run_stochastic(name: str, *, log) -> dict:
    """euler_ancestral: the AYS KL bound (the criterion of stochastic solvers) of each grid, on held-out
    data draws; the optimised grid is fitted on other draws. Steps = NFE for this solver."""
    from noiselevels.sampling.optimize import _klub_criterion

    cfg = SETTINGS[name]
    prob = problem(name)
    t0 = time.perf_counter()
    test = prob.sample(cfg["test"], torch.Generator().manual_seed(4321))
    train = prob.sample(cfg["train"], torch.Generator().manual_seed(8765))
    rows = {}
    for steps in STOCHASTIC_STEPS:
        bound = _klub_criterion(prob.denoiser, test, steps, torch.Generator().manual_seed(5))
        row = {"steps": steps, "named": {}}
        for sp, kw in NAMED.items():
            grid = spacing(sp, **kw).sigmas(steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
            row["named"][sp] = bound(grid[:-1].tolist())
        res = optimize_spacing(
            prob.denoiser, steps=steps, solver="euler_ancestral", sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
            x0=train, generator=torch.Generator().manual_seed(0), num_samples=cfg["train"],
            iters=min(40, max(2, cfg["sweeps"] // steps)), return_info=True, patience=None,
        )
        row["optimized"] = bound(res.sigmas[:-1].tolist())
        row["optimized_sigmas"] = res.sigmas.tolist()
        best = min(row["named"], key=row["named"].get)
        row["best_named"] = best
        row["ratio_to_best_named"] = _ratio(row["optimized"], row["named"][best])
        rows[str(steps)] = row
        log(f"[{name}] euler_ancestral KL bound, {steps} steps: best named {best} {row['named'][best]:.3e}, "
            f"optimized {row['optimized']:.3e} (x{_r(row['ratio_to_best_named'])})")
    return {"dim": prob.dim, "test_samples": cfg["test"], "rows": rows, "seconds": time.perf_counter() - t0}


def markdown_stochastic(results: dict) -> str:
    lines = ["# Spacing benchmark, stochastic sampling: the AYS KL bound", "",
             f"Command: `{results['command']}` ({results['seconds']:.0f} s, {results['machine']}).", "",
             "Σ_i ∫ σ⁻³ E‖D(x_σ, σ) − D(x_{σ_i}, σ_i)‖² dσ over the nonzero steps (Sabour et al. 2024), per "
             "element, Monte Carlo on held-out data draws with fixed random numbers; the optimised grid "
             "(`optimize_spacing(..., solver='euler_ancestral')`, criterion 'klub') was fitted on other "
             "draws. This is a bound on the KL divergence of the discretised reverse SDE, not a sample "
             "quality measurement; lower is better.", ""]
    for pname, p in results["problems"].items():
        rows = p["rows"]
        keys = [str(k) for k in STOCHASTIC_STEPS]
        lines += [f"## {pname}", "", "| spacing | " + " | ".join(f"{k} steps" for k in keys) + " |",
                  "|---|" + "---|" * len(keys)]
        names = [*NAMED, "optimized"]
        table = {n: [rows[k]["named"][n] if n != "optimized" else rows[k]["optimized"] for k in keys]
                 for n in names}
        col_best = [min(table[n][j] for n in names) for j in range(len(keys))]
        for n in names:
            cells = [f"**{_fmt(v)}**" if v == col_best[j] else _fmt(v) for j, v in enumerate(table[n])]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


class MLPDenoiser(torch.nn.Module):
    """A 1.07M-parameter MLP used as an x̂₀ predictor: 784 → 512 → 512 → 784 with the noise level."""

    def __init__(self, dim: int = 784, width: int = 512):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim + 1, width), torch.nn.SiLU(), torch.nn.Linear(width, width), torch.nn.SiLU(),
            torch.nn.Linear(width, dim),
        )

    def forward(self, x, sigma):
        c = torch.log(sigma)[:, None] / 4
        return self.net(torch.cat([x / torch.sqrt(1 + sigma[:, None] ** 2), c], 1))


def _identity(x, sigma):
    return x


@torch.no_grad()
def overhead(steps: int = 32, batch: int = 64, repeats: int = 30) -> dict:
    """Per-step overhead of ``solve`` (euler, dpmpp_2m) over calling the denoiser ``steps`` times."""
    torch.manual_seed(0)
    model = MLPDenoiser().eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(batch, 784) * SIGMA_MAX
    grid = spacing("karras").sigmas(steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    sig = [x.new_full((batch,), float(s)) for s in grid[:-1]]

    def direct():
        for s in sig:
            model(x, s)

    coef = [float((grid[i + 1] - grid[i]) / grid[i]) for i in range(steps)]

    def loop():  # the Euler sampler a user would write by hand
        y = x
        for s, c in zip(sig, coef):
            y = y + (y - model(y, s)) * c
        return y

    t_loop, t_euler = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        loop()
        t_loop.append(time.perf_counter() - t)
        t = time.perf_counter()
        solve(model, x, sigmas=grid, solver="euler")
        t_euler.append(time.perf_counter() - t)
    res = {"parameters": params, "steps": steps, "batch": batch, "repeats": repeats,
           "hand_loop_ms_per_step": 1e3 * min(t_loop) / steps,
           "euler_vs_hand_loop": min(t_euler) / min(t_loop) - 1}
    for name in ("euler", "dpmpp_2m"):
        t_direct, t_solve = [], []
        for _ in range(repeats):  # interleaved, min of repeats: robust to a shared machine
            t = time.perf_counter()
            direct()
            t_direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            solve(model, x, sigmas=grid, solver=name)
            t_solve.append(time.perf_counter() - t)
        t_bare = []
        for _ in range(repeats):
            t = time.perf_counter()
            solve(_identity, x, sigmas=grid, solver=name)
            t_bare.append(time.perf_counter() - t)
        d, s, b = min(t_direct), min(t_solve), min(t_bare)
        res[name] = {"direct_ms_per_step": 1e3 * d / steps, "solve_ms_per_step": 1e3 * s / steps,
                     "overhead": s / d - 1, "solver_work": b / d}
    return res


def _fmt(v: float) -> str:
    return f"{v:.2e}"


def markdown(results: dict) -> str:
    total = results["seconds"] + results.get("earlier_seconds", 0.0)
    lines = ["# Spacing benchmark: sampling error against the exact ODE solution", "",
             f"Command: `{results['command']}` ({total:.0f} s in all, {results['machine']}).", "",
             "RMS error of the N-step solve against the exact end point D(x(σ_min), σ_min) of the "
             "probability-flow ODE on σ ∈ [0.002, 80], on held-out noise; the optimised grid "
             "(`optimize_spacing`, default settings except the batch size and sweep budget) was "
             "fitted on a different noise batch. Lower is better; **bold** = best in the column. "
             "On the empirical distribution (mnist) a sample either lands on the reference's example "
             "(error ≈ 0) or on another one (error ≈ the distance between digits), so its error mostly "
             "counts wrong landings and is noisy.", ""]
    lines += ["## Ratio optimised / best named grid at 10 NFE (heun: 9 NFE)", "",
              "| problem | " + " | ".join(SOLVERS) + " |", "|---|" + "---|" * len(SOLVERS)]
    for pname, p in results["problems"].items():
        cells = []
        for s in SOLVERS:
            r = p["solvers"][s]["10"]
            cells.append(f"{_r(r['ratio_to_best_named'])} (vs {r['best_named']})")
        lines.append(f"| {pname} | " + " | ".join(cells) + " |")
    lines.append("")
    for pname, p in results["problems"].items():
        lines += [f"## {pname} (dim {p['dim']}, {p['test_samples']} held-out samples)", ""]
        for s in SOLVERS:
            rows = p["solvers"][s]
            nfes = [rows[str(n)]["nfe"] for n in NFES]
            lines += [f"### {s}", "", "| spacing | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
                      "|---|" + "---|" * len(nfes)]
            names = [*NAMED, "optimized"]
            table = {n: [rows[str(k)]["named"][n] if n != "optimized" else rows[str(k)]["optimized"]
                         for k in NFES] for n in names}
            col_best = [min(table[n][j] for n in names) for j in range(len(NFES))]
            for n in names:
                cells = [f"**{_fmt(v)}**" if v == col_best[j] else _fmt(v) for j, v in enumerate(table[n])]
                lines.append(f"| {n} | " + " | ".join(cells) + " |")
            lines.append("")
        g = p["solvers"]["heun"]["10"]["optimized_sigmas"]
        lines += [f"Optimised heun grid at 9 NFE: `{[round(v, 4) for v in g]}`", ""]
    o = results.get("overhead")
    if o:
        lines += ["## Per-step overhead of `solve`", "",
                  f"{o['parameters'] / 1e6:.2f}M-parameter MLP denoiser, batch {o['batch']}, "
                  f"{o['steps']} steps, float32, one CPU thread, minimum of {o['repeats']} interleaved "
                  "repeats. 'solver work' is the time `solve` spends outside the denoiser (measured with "
                  "a denoiser that returns its input) as a fraction of one model call.", "",
                  "| solver | denoiser alone (ms/step) | solve (ms/step) | overhead | solver work |",
                  "|---|---|---|---|---|"]
        for s in ("euler", "dpmpp_2m"):
            r = o[s]
            lines.append(f"| {s} | {r['direct_ms_per_step']:.3f} | {r['solve_ms_per_step']:.3f} | "
                         f"{100 * r['overhead']:.1f} % | {100 * r['solver_work']:.2f} % |")
        lines += ["", "Against the same Euler sampler written by hand "
                  f"({o['hand_loop_ms_per_step']:.3f} ms/step): `solve(..., solver='euler')` takes "
                  f"{100 * o['euler_vs_hand_loop']:+.1f} %. The 'denoiser alone' column calls the model on "
                  "one fixed input, so its gap to `solve` also holds the cost of the state updates and of "
                  "feeding the model new inputs each step.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2-D mixture only, 3 sweeps")
    ap.add_argument("--problems", nargs="*", default=None, choices=list(SETTINGS))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stochastic", action="store_true",
                    help="the KL-bound benchmark of euler_ancestral instead (writes spacing_stochastic.*)")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                    help="merge the results of several runs (e.g. problems run in parallel) and re-render")
    args = ap.parse_args(argv)
    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        merged = dict(parts[0])
        merged["problems"] = {}
        for part in parts:
            merged["problems"].update(part["problems"])
        merged["problems"] = {k: merged["problems"][k] for k in SETTINGS if k in merged["problems"]}
        cmds = [re.sub(r" --out \S+", "", part["command"]) for part in parts]
        merged["command"] = " & ".join(cmds) + " (in parallel, then --merge)"
        merged["seconds"] = max(part["seconds"] for part in parts)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "spacing.json").write_text(json.dumps(merged, indent=1, allow_nan=False) + "\n")
        (args.out / "spacing.md").write_text(markdown(merged) + "\n")
        return 0
    torch.set_num_threads(args.threads)
    names = args.problems or (["mixture_2d"] if args.quick else list(SETTINGS))
    t0 = time.perf_counter()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    results = {
        "command": " ".join(["python benchmarks/spacing.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)",
        "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "nfes": list(NFES), "problems": {},
    }
    if args.stochastic:
        for n in names:
            results["problems"][n] = run_stochastic(n, log=log)
        results["seconds"] = time.perf_counter() - t0
        args.out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(results, indent=1, allow_nan=False) + "\n"
        (args.out / "spacing_stochastic.json").write_text(text)
        (args.out / "spacing_stochastic.md").write_text(markdown_stochastic(results) + "\n")
        log(f"wrote {args.out}/spacing_stochastic.json/.md in {results['seconds']:.0f} s")
        return 0
    stem = "spacing_quick" if args.quick else "spacing"
    previous = args.out / f"{stem}.json"
    if args.problems and previous.is_file():  # re-run some problems, keep the others' results
        old = json.loads(previous.read_text())
        kept = {k: v for k, v in old["problems"].items() if k not in names}
        results["problems"].update(kept)
        results["command"] = "; ".join([old["command"], results["command"]])
        results["earlier_seconds"] = old.get("seconds", 0.0) + old.get("earlier_seconds", 0.0)
    args.out.mkdir(parents=True, exist_ok=True)
    for n in names:
        results["problems"][n] = run_problem(n, quick=args.quick, log=log)
        results["seconds"] = time.perf_counter() - t0
        (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    results["problems"] = {k: results["problems"][k] for k in SETTINGS if k in results["problems"]}
    results["overhead"] = overhead()
    log(f"overhead: {json.dumps(results['overhead'])}")
    results["seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results) + "\n")
    log(f"wrote {args.out / stem}.json/.md in {results['seconds']:.0f} s")
    return 0 if all(math.isfinite(r["seconds"]) for r in results["problems"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
