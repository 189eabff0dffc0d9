"""``noiselevels spacing list | show NAME | optimize``: sampling grids, printed in the formats users paste.

* ``list``: every registered spacing with a one-line description.
* ``show NAME --steps N [--sigma-min S --sigma-max S] [--param k=v ...] [--format F]``: the grid of N
  steps as a table (i, σ_ve, λ, flow t), JSON, a diffusers ``set_timesteps(sigmas=[...])`` line or a
  ComfyUI SIGMAS list. ``--param`` values are TOML (numbers, lists, true/false, "quoted") or bare
  words (``noiselevels.commands._args``); nested components take a name and dotted parameters, e.g.
  ``--param schedule=ddpm --param schedule.beta_schedule=scaled_linear`` for ``uniform_t`` or
  ``--param density=logit_normal --param density.std=1.0`` for ``from_density``.
* ``optimize``: an optimised grid for a model or exact problem (implemented in
  ``noiselevels.sampling.optimize``; see ``_add_optimize_arguments`` / ``_run_optimize``).

For ``show`` the σ range defaults to the spacing's own (EDM's 0.002–80 for formula grids, the table's
ends for AYS, custom grids, the diffusers index rules of discrete schedules and ComfyUI's table
schedulers ``simple`` / ``normal`` / ``sgm_uniform`` / ``ddim_uniform``, which read Stable Diffusion's
table unless ``--param schedule=...`` names another); for ``optimize`` it defaults to 0.002–80.

``--format diffusers`` targets ``EulerDiscreteScheduler`` (and the other schedulers that take VE σ in
``set_timesteps(sigmas=...)``), not ``FlowMatchEulerDiscreteScheduler``, whose sigmas are flow
t = σ/(1 + σ) without the trailing 0 (the ``flow_t`` column of ``--format table`` / ``json``; set
``shift=1.0``). With ``optimize --run``, a grid reaching outside the σ range the run was trained on
gets a one-line warning on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from noiselevels.commands._args import build_params, check_grid_size

FORMATS = ("table", "json", "diffusers", "comfyui")
# A grid that starts at σ = inf (zero terminal SNR) in the tools' own finite stand-ins for it:
DIFFUSERS_ZSNR_SIGMA = math.sqrt((1 - 2**-24) / 2**-24)
"""diffusers' EulerDiscreteScheduler with rescale_betas_zero_snr sets ᾱ_T = 2⁻²⁴: σ_T ≈ 4096."""
COMFYUI_ZSNR_ALPHA_BAR = 4.8973451890853435e-08
COMFYUI_ZSNR_SIGMA = math.sqrt((1 - COMFYUI_ZSNR_ALPHA_BAR) / COMFYUI_ZSNR_ALPHA_BAR)
"""ComfyUI's ModelSamplingDiscrete(zsnr=True) sets ᾱ_T = 4.8973451890853435e-08 (comfy/model_sampling.py,
rescale_zero_terminal_snr_sigmas): σ_T ≈ 4518.8."""
OPTIMIZE_SIGMA_RANGE = (0.002, 80.0)  # σ_ve range of `spacing optimize` unless --sigma-min/max


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "spacing",
        help="sampling grids: list them, show one (table / JSON / diffusers / ComfyUI), optimise one",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  noiselevels spacing list\n"
            "  noiselevels spacing show karras --steps 18 --param rho=7\n"
            "  noiselevels spacing show ays --steps 20 --param model=sdxl --format diffusers\n"
            "  noiselevels spacing show sgm_uniform --steps 20 --format comfyui\n"
            "  noiselevels spacing show uniform_t --steps 10 --param schedule=ddpm \\\n"
            "      --param schedule.beta_schedule=scaled_linear --param schedule.beta_start=0.00085 \\\n"
            "      --param schedule.beta_end=0.012 --param rule=trailing\n"
            "  noiselevels spacing show from_density --steps 12 --param density=lognormal_sigma \\\n"
            "      --format json\n"
        ),
    )
    p.set_defaults(func=_no_action, _parser=p)
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    pl = actions.add_parser("list", help="the registered spacings with a one-line description")
    pl.set_defaults(func=run)

    ps = actions.add_parser(
        "show",
        help="print the grid of one spacing",
        description="Print the σ grid (N + 1 values, trailing 0) of one spacing.",
    )
    ps.add_argument("name", help="spacing name (see `noiselevels spacing list`)")
    _add_grid_arguments(ps, steps_required=True, default_range="the spacing's")
    ps.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a spacing parameter (TOML value or bare word; dotted keys for nested components; repeatable)",
    )
    ps.set_defaults(func=run)

    po = actions.add_parser(
        "optimize",
        help="optimise a grid for a model / exact problem and a step budget",
        description="Optimise the σ grid of N steps for a denoiser and a solver.",
    )
    _add_grid_arguments(po, steps_required=True, default_range=OPTIMIZE_SIGMA_RANGE)
    _add_optimize_arguments(po)
    po.set_defaults(func=run)


def _add_grid_arguments(
    p: argparse.ArgumentParser, *, steps_required: bool, default_range: str | tuple[float, float]
) -> None:
    """--steps, --sigma-min/--sigma-max (``default_range``: a pair, or words for the help) and --format."""
    lo, hi = (default_range, default_range) if isinstance(default_range, str) else default_range
    p.add_argument("--steps", type=int, required=steps_required, metavar="N", help="number of steps (>= 1)")
    p.add_argument("--sigma-min", type=float, metavar="S", help=f"smallest nonzero σ_ve (default: {lo})")
    p.add_argument("--sigma-max", type=float, metavar="S", help=f"largest σ_ve (default: {hi})")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="output format (default: table); diffusers = VE σ for EulerDiscreteScheduler."
        "set_timesteps(sigmas=...), not for FlowMatchEulerDiscreteScheduler (that takes the flow_t "
        "column of table/json, without the trailing 0, with shift=1.0)",
    )


def _add_optimize_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``spacing optimize`` beyond --steps/--sigma-min/--sigma-max/--format
    (``noiselevels.commands.spacing_optimize``)."""
    from noiselevels.commands.spacing_optimize import add_optimize_arguments

    add_optimize_arguments(p)


def _no_action(args) -> int:
    args._parser.print_help()
    return 2


def run(args) -> int:
    if args.action == "list":
        return _run_list(args)
    if args.action == "show":
        return _run_show(args)
    if args.action == "optimize":
        return _run_optimize(args)
    raise ValueError(f"unknown spacing action {args.action!r}; valid actions: list, show, optimize")


def _run_list(args) -> int:
    from noiselevels.sampling.spacings import spacing_summaries

    rows = spacing_summaries()
    width = max(len(name) for name, _ in rows)
    for name, summary in rows:
        print(f"{name:<{width}}  {summary}")
    return 0


def _run_show(args) -> int:
    from noiselevels.sampling.spacings import spacing

    check_grid_size(args.steps)
    s = spacing(args.name, **build_params(args.params, "--param"))
    sigmas = s.sigmas(args.steps, sigma_min=args.sigma_min, sigma_max=args.sigma_max)
    timesteps = None
    if getattr(s, "rule", None) in ("leading", "linspace", "trailing"):  # diffusers' index rules
        timesteps = [float(t) for t in s.timesteps(args.steps)]
    text = format_grid(sigmas, fmt=args.format, title=s.describe(), component=s.to_dict(),
                       timesteps=timesteps)
    print(text, end="")
    return 0


def _run_optimize(args) -> int:
    """``spacing optimize`` (``noiselevels.commands.spacing_optimize``): the grid to stdout in
    ``--format`` (JSON: with the chosen solver and the criterion), the criterion before/after to stderr."""
    from noiselevels.commands.spacing_optimize import json_with_result, optimize_for_args
    from noiselevels.sampling.spacings import spacing

    sigma_min = OPTIMIZE_SIGMA_RANGE[0] if args.sigma_min is None else args.sigma_min
    sigma_max = OPTIMIZE_SIGMA_RANGE[1] if args.sigma_max is None else args.sigma_max
    result, about = optimize_for_args(args, sigma_min, sigma_max)
    print(f"# {result.criterion} ({result.method} search, solver {result.solver}): "
          f"{result.error_before:.6g} -> {result.error_after:.6g} ({result.improvement:.2f}x) in "
          f"{result.evaluations} evaluations, {result.seconds:.1f} s", file=sys.stderr)
    if args.format == "diffusers" and about["trained"] is not None:
        warning = range_warning(result.sigmas, about["trained"])
        if warning:
            print(warning, file=sys.stderr)
    title = f"optimized for {about['source']}, solver {result.solver}"
    component = spacing("custom", sigmas=result.sigmas.tolist()).to_dict()
    text = format_grid(result.sigmas, fmt=args.format, title=title, component=component)
    print(json_with_result(text, result, about) if args.format == "json" else text, end="")
    return 0


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------
def range_warning(sigmas, trained: tuple[float, float]) -> str | None:
    """A one-line warning when the nonzero levels of a σ_ve grid reach outside ``trained`` (σ_min,
    σ_max), the range a model was trained on; None when the grid lies inside it."""
    import torch

    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    s = s[s > 0]
    if not s.numel():
        return None
    lo, hi = float(s.min()), float(s.max())
    if lo >= trained[0] and hi <= trained[1]:
        return None
    return (
        f"warning: the grid's σ range [{lo:.4g}, {hi:.4g}] reaches outside the σ range the model was "
        f"trained on, [{trained[0]:.4g}, {trained[1]:.4g}] (--sigma-min/--sigma-max narrow the grid)"
    )


def _num(x: float) -> str:
    """Shortest round-trip repr of a float (0.0, 80.0, 0.002, ...)."""
    return repr(float(x))


def _json_number(v: float, inf_text: str | None) -> float | str | None:
    """A float for JSON (which has no inf): finite as is, ±inf as the string "Infinity" / "-Infinity"
    (Python's float() and JavaScript's Number() both read them), or None where ``inf_text`` is None."""
    if math.isfinite(v):
        return float(v)
    if v > 0 and inf_text is None:
        return None
    return "Infinity" if v > 0 else "-Infinity"


def format_grid(
    sigmas, *, fmt: str = "table", title: str = "", component: dict | None = None, timesteps=None
) -> str:
    """Render a σ_ve grid (n + 1 values, trailing 0) as text in one of ``FORMATS``.

    ``table``: columns i, σ_ve, λ = −2 log σ, flow t = σ/(1 + σ). ``json``: an object with the steps,
    the grid in σ, λ (+inf written as null) and flow t, the spacing's ``to_dict()`` and, for diffusers'
    index rules, its ``timesteps``. ``diffusers``: a ``scheduler.set_timesteps(sigmas=[...])`` line (the
    list includes the trailing 0, as ``EulerDiscreteScheduler`` expects). ``comfyui``: a comma-separated
    SIGMAS list.

    **A grid that starts at σ = inf** (zero terminal SNR, e.g. ``uniform_t`` with ``rule=trailing`` on a
    rescaled table): ``json`` writes σ = inf as the string ``"Infinity"`` and λ = −inf as
    ``"-Infinity"`` (JSON has no inf; Python's ``float()`` and JavaScript's ``Number()`` read both),
    flow t = 1, and ``"zero_terminal_snr": true``; ``diffusers`` writes diffusers' own stand-in
    σ_T = √((1 − 2⁻²⁴)/2⁻²⁴) ≈ 4096 (``EulerDiscreteScheduler(rescale_betas_zero_snr=True)`` sets
    ᾱ_T = 2⁻²⁴, so its σ → timestep lookup lands on T − 1) and, for the index rules, the equivalent
    ``set_timesteps(timesteps=[...])`` line; ``comfyui`` writes ComfyUI's σ_T ≈ 4518.8 (ᾱ_T =
    4.8973451890853435e-08 of ``ModelSamplingDiscrete`` with ``zsnr=True``).
    """
    import torch

    from noiselevels.levels import flow_t, logsnr_from_sigma

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    lam = logsnr_from_sigma(sigma=s)
    t = flow_t(logsnr=lam)
    steps = s.numel() - 1
    sig_list = [float(v) for v in s]
    ztsnr = math.isinf(sig_list[0])
    head = f"{title}, {steps} step{'s' if steps != 1 else ''}" if title else f"{steps} steps"
    if fmt == "json":
        obj = {
            "spacing": component,
            "steps": steps,
            "sigmas": [_json_number(v, "Infinity") for v in sig_list],
            "logsnrs": [_json_number(v, None) for v in lam.tolist()],
            "flow_t": [float(v) for v in t],
        }
        if ztsnr:
            obj["zero_terminal_snr"] = True
        if timesteps is not None:
            obj["timesteps"] = [float(v) for v in timesteps]
        return json.dumps(obj, indent=2, allow_nan=False) + "\n"
    if fmt == "diffusers":
        return _diffusers_lines(head, sig_list, timesteps)
    if fmt == "comfyui":
        note = f" (σ = inf written as ComfyUI's zsnr σ_T = {COMFYUI_ZSNR_SIGMA:.6g})" if ztsnr else ""
        sig_list = [COMFYUI_ZSNR_SIGMA if math.isinf(v) else v for v in sig_list]
        values = ", ".join(_num(v) for v in sig_list)
        return f"# {head}: ComfyUI SIGMAS (VE sigmas, trailing 0){note}\n{values}\n"
    lines = [f"# {head}", f"{'i':>4}  {'sigma':>14}  {'logsnr':>12}  {'flow_t':>10}"]
    for i, (sv, lv, tv) in enumerate(zip(sig_list, lam.tolist(), t.tolist())):
        lam_text = "inf" if lv == math.inf else f"{lv + 0.0:.6f}"
        lines.append(f"{i:>4}  {sv:>14.8g}  {lam_text:>12}  {tv:>10.6f}")
    return "\n".join(lines) + "\n"


def _diffusers_lines(head: str, sig_list: list[float], timesteps) -> str:
    """The ``diffusers`` format: a ``set_timesteps(sigmas=[...])`` line (σ = inf as diffusers' ≈ 4096)
    and, for diffusers' index rules, the ``set_timesteps(timesteps=[...])`` line."""
    lines = [
        f"# {head}: VE sigmas with the trailing 0, for schedulers that take custom sigmas",
        "# (e.g. EulerDiscreteScheduler; timesteps are derived from the model's own sigma table)",
    ]
    if math.isinf(sig_list[0]):
        lines.append(
            f"# σ = inf (zero terminal SNR) written as diffusers' σ_T = {DIFFUSERS_ZSNR_SIGMA!r} "
            "(EulerDiscreteScheduler(rescale_betas_zero_snr=True): ᾱ_T = 2**-24)"
        )
        sig_list = [DIFFUSERS_ZSNR_SIGMA if math.isinf(v) else v for v in sig_list]
    lines.append(f"scheduler.set_timesteps(sigmas=[{', '.join(_num(v) for v in sig_list)}])")
    if timesteps is not None:
        ts = ", ".join(str(int(v)) if float(v).is_integer() else _num(v) for v in timesteps)
        lines.append("# or, better for zero terminal SNR (diffusers' zero-SNR σ table is not monotone at T),")
        lines.append("# the same diffusers timesteps (DDIMScheduler: timestep_spacing; Euler: timesteps=)")
        lines.append(f"# scheduler.set_timesteps(timesteps=[{ts}])")
    return "\n".join(lines) + "\n"
