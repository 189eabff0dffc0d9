"""``noiselevels spacing optimize``: an optimised σ grid (and solver, with ``--solver auto``) for an exact
problem or a model, printed in the formats users paste (``noiselevels.commands.spacing.format_grid``).

``--run`` takes a run folder, a shipped base (``mnist-base``), a ``.safetensors`` base or a diffusers
pipeline (``noiselevels.runs.grid_target``); class-conditional models get labels drawn from their
classes (or ``--class K``), pipelines prompts from ``--prompt`` / ``--prompts FILE``; ``--guidance W``
makes classifier-free guidance part of the problem. The criterion (``noiselevels.sampling.optimize``)
is the RMS distance to a converged solve from the same noise; with ``--format json`` the chosen solver
and the criterion before/after are part of the output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_optimize_arguments", "json_with_result", "optimize_for_args"]

_MODEL_REFERENCE_STEPS = 48  # the reference solve of a model: uni_pc, 48 steps uniform in log σ


def add_optimize_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``spacing optimize`` beyond --steps/--sigma-min/--sigma-max/--format."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--problem", metavar="NAME",
                     help="an exact problem of noiselevels.sampling.toy: gaussian, mixture_2d, mixture_64d, "
                     "mnist")
    src.add_argument("--run", metavar="MODEL",
                     help="a run folder of `noiselevels train`, a base (mnist-base, mnist-all, a "
                     ".safetensors base) or a diffusers pipeline (folder or cached hub id)")
    p.add_argument("--solver", default="heun", metavar="S",
                   help="solver name, or auto: the grid is optimised jointly with the choice among uni_pc, "
                   "uni_pc_bh2, dpmpp_3m, dpmpp_2m, ipndm_v, deis, ipndm, euler (default: heun)")
    p.add_argument("--init", action="append", default=None, metavar="NAME",
                   help="spacing(s) to start from, the best is used (repeatable; default: karras, "
                   "exponential, kl_optimal, vp, ays, diffusers_linspace, diffusers_leading, "
                   "diffusers_trailing)")
    p.add_argument("--num-samples", type=int, default=256, metavar="B",
                   help="batch of the criterion (default: 256)")
    p.add_argument("--iters", type=int, default=40, metavar="K",
                   help="maximum sweeps of the search (default: 40): of the pattern search, or iterations "
                   "of the gradient search")
    p.add_argument("--method", choices=("auto", "gradient", "pattern"), default="auto",
                   help="gradient through the differentiable solve, the coordinate pattern search, or auto "
                   "(gradient where the model gives one; default)")
    p.add_argument("--reference-steps", type=int, default=None, metavar="K",
                   help=f"steps of the reference solve (uni_pc, uniform in log σ; default for --run: "
                   f"{_MODEL_REFERENCE_STEPS}; for --problem: an adaptive solve)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    p.add_argument("--criterion", choices=("auto", "solve_error", "klub"), default="auto",
                   help="solve_error (deterministic solvers) or the AYS KL bound (stochastic); "
                   "default: auto")
    p.add_argument("--fix-last", action="store_true",
                   help="keep the last nonzero level at sigma-min (default: it is optimised within "
                   "[sigma-min, ...))")
    p.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="classifier-free guidance scale of the model's problem (class-conditional or "
                   "pipeline)")
    p.add_argument("--class", dest="class_label", type=int, default=None, metavar="K",
                   help="one class for every sample (default: labels drawn from the model's classes)")
    p.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                   help="a prompt of a pipeline's problem (repeatable)")
    p.add_argument("--prompts", default=None, metavar="FILE",
                   help="a file of prompts, one a line (pipelines)")


def _prompts(args) -> list[str] | None:
    prompts = list(args.prompt or [])
    if args.prompts is not None:
        path = Path(args.prompts)
        if not path.is_file():
            raise ValueError(f"--prompts {args.prompts}: no such file")
        prompts += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return prompts or None


def _problem_inputs(args) -> dict:
    """optimize_spacing's keywords for an exact problem or a model, plus source / trained / conditions."""
    import torch

    if args.problem is not None:
        if args.guidance is not None or args.class_label is not None or _prompts(args):
            raise ValueError("--guidance, --class and --prompt(s) are for --run models")
        from noiselevels.sampling.toy import problem

        prob = problem(args.problem)
        return dict(denoiser=prob.denoiser, shape=prob.shape,
                    x0=prob.sample(args.num_samples, torch.Generator().manual_seed(args.seed + 1)),
                    reference=prob.reference_solve if args.problem == "gaussian" else None,
                    reference_steps=args.reference_steps, dtype=torch.float64,
                    source=f"problem {args.problem}", trained=None, conditions=None)
    from noiselevels.runs.grid_target import grid_target
    from noiselevels.sampling.solvers import SOLVERS

    stochastic = args.solver != "auto" and args.solver in SOLVERS and SOLVERS.get(args.solver).stochastic
    t = grid_target(args.run, num_samples=args.num_samples, seed=args.seed, guidance=args.guidance,
                    class_label=args.class_label, prompts=_prompts(args),
                    with_data=stochastic or args.criterion == "klub")
    steps = _MODEL_REFERENCE_STEPS if args.reference_steps is None else args.reference_steps
    return dict(denoiser=t.denoiser, shape=t.shape, x0=t.x0, reference=None, reference_steps=steps,
                dtype=t.dtype, source=t.source, trained=t.trained, conditions=t.conditions)


def optimize_for_args(args, sigma_min: float, sigma_max: float):
    """``optimize_spacing`` on the problem or model of ``args``: (SpacingResult, a dict with the source,
    the trained σ range or None, the conditions). ``noiselevels.commands.spacing`` prints the result."""
    import torch

    from noiselevels.commands._args import check_grid_size
    from noiselevels.sampling.optimize import DEFAULT_INITS, optimize_spacing

    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1; got {args.num_samples}")
    check_grid_size(args.steps)
    inputs = _problem_inputs(args)
    about = {k: inputs.pop(k) for k in ("source", "trained", "conditions")}
    result = optimize_spacing(
        inputs.pop("denoiser"), steps=args.steps, solver=args.solver, sigma_min=sigma_min,
        sigma_max=sigma_max, generator=torch.Generator().manual_seed(args.seed),
        init=tuple(args.init) if args.init else DEFAULT_INITS, num_samples=args.num_samples,
        iters=args.iters, criterion=args.criterion, method=args.method, optimize_last=not args.fix_last,
        return_info=True, **inputs,
    )
    return result, about


def json_with_result(text: str, result, about: dict) -> str:
    """``format_grid``'s JSON with the chosen solver (its ``to_dict()``) and the optimisation's numbers."""
    obj = json.loads(text)
    obj["solver"] = result.solver_options
    obj["optimization"] = {
        **about, "criterion": result.criterion, "method": result.method,
        "error_before": result.error_before, "error_after": result.error_after,
        "evaluations": result.evaluations, "seconds": result.seconds,
        "screened": [{"solver": n, "error": e} for n, e in result.screened],
    }
    obj["optimization"].pop("trained")
    return json.dumps(obj, indent=2) + "\n"  # as format_grid writes it
