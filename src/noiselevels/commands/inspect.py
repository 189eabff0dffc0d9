"""``noiselevels inspect [FILE] [--preset TOOL:NAME] [component flags] [--out DIR] [--json FILE]``.

Shows what a training configuration actually weights: the density p(λ) its noise levels are drawn
from, the loss weight w(λ) in ε-MSE units and the effective weighting W(λ) = p(λ)·w(λ), as PNG plots
over λ and over the tool's own time axis, a printed summary, and (``--json``) the curves on a λ grid.
FILE is a noiselevels TOML with a [noise] table, or a training tool's own file as it is (ai-toolkit job
YAML, kohya command line or --config_file TOML, OneTrainer JSON, SimpleTuner config.json/.toml, a diffusers
script's command line; ``-`` reads a pasted command line); it first says what it read it as and which
options that affect noise levels it does not model. With ``--spacing NAME --steps N`` it also shows
where a sampler's levels fall against the training density: how many steps land where training rarely
looked (marked on the λ plot).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from noiselevels.commands._args import build_params, check_grid_size, parse_params, preset_spec
from noiselevels.options import check_memory


def add_range_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--range",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        default=None,
        help="λ window for plots, summaries and JSON (default -10 10)",
    )
    p.add_argument("--points", type=int, default=None, metavar="N", help="λ grid points (default 2001)")


def add_tool_file_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tool",
        choices=["ai-toolkit", "kohya", "onetrainer", "simpletuner", "diffusers"],
        help="read the file as this tool's (default: detected)",
    )
    p.add_argument(
        "--resolution",
        metavar="W[xH]",
        help="training resolution for resolution-dependent shifts (default: the file's, else the model's)",
    )


def read_tool_config(path: str, args):
    """A tool's own file as a NoiseConfig (printing what it was read as), or None for a noiselevels TOML."""
    from noiselevels.presets.files import is_tool_file, read_tool_file

    if not is_tool_file(path):
        if args.tool:
            raise ValueError(f"{path}: a noiselevels config ([noise] table); --tool applies to tools' files")
        return None
    res = read_tool_file(path, tool=args.tool, resolution=args.resolution)
    for line in res.lines():
        print(line)
    return res.config


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="plot and summarise what a configuration weights: p(λ), w(λ), W(λ)",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  noiselevels inspect examples/configs/kohya_flux_sigmoid.toml --out runs/inspect\n"
            "  noiselevels inspect examples/configs/kohya_flux_lora.sh --resolution 768\n"
            "  noiselevels inspect --preset ai-toolkit:weighted --json weighted.json\n"
            "  noiselevels inspect --preset kohya:shift --preset-param discrete_flow_shift=3.1582\n"
            "  noiselevels inspect --process vp --parameterization v --schedule cosine \\\n"
            "      --density uniform_t --weighting min_snr --weighting-param gamma=5\n"
            "  noiselevels inspect examples/configs/kohya_sdxl_min_snr.toml --spacing karras --steps 20 \\\n"
            "      --sigma-max 80\n"
            "  noiselevels inspect --list-presets\n"
        ),
    )
    p.add_argument(
        "config",
        nargs="?",
        help="TOML file with a [noise] section, or a tool's config file / command line ('-': stdin)",
    )
    add_tool_file_args(p)
    p.add_argument(
        "--base",
        metavar="PIPELINE",
        help="a diffusers pipeline folder or cached hub id: what `finetune --base PIPELINE` trains with the "
        "--preset / [noise] table as its timestep type at --resolution (default: the native size)",
    )
    p.add_argument(
        "--preset",
        metavar="TOOL:NAME",
        help="a tool's setting, e.g. kohya:sigmoid or 'kohya:shift?discrete_flow_shift=3' "
        "(see --list-presets)",
    )
    p.add_argument("--preset-param", action="append", default=[], metavar="K=V", help="preset parameter")
    p.add_argument("--process", choices=["vp", "ve", "flow"])
    p.add_argument("--parameterization", choices=["eps", "x0", "v", "flow", "edm"])
    p.add_argument("--density", metavar="NAME", help="training density p(λ), e.g. logit_normal")
    p.add_argument("--density-param", action="append", default=[], metavar="K=V")
    p.add_argument("--weighting", metavar="NAME", help="loss weight w(λ), e.g. min_snr")
    p.add_argument("--weighting-param", action="append", default=[], metavar="K=V")
    p.add_argument("--schedule", metavar="NAME", help="schedule (for uniform_t and the tool axis)")
    p.add_argument("--schedule-param", action="append", default=[], metavar="K=V")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a TOML value, e.g. noise.density.std=1.5 (repeatable)",
    )
    p.add_argument(
        "--out", metavar="DIR", default="runs/inspect", help="folder for the PNGs (default runs/inspect)"
    )
    p.add_argument("--no-plots", action="store_true", help="do not write PNGs")
    p.add_argument("--json", metavar="FILE", help="write the configuration, summary and curves as JSON")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    add_range_args(p)
    g = p.add_argument_group("a sampler's levels against the training density")
    g.add_argument("--spacing", metavar="NAME", help="sampling spacing (see `noiselevels spacing list`)")
    g.add_argument("--spacing-param", action="append", default=[], metavar="K=V", help="spacing parameter")
    g.add_argument("--steps", type=int, metavar="N", help="sampler steps (default 20 with --spacing)")
    g.add_argument("--sigma-min", type=float, metavar="S", help="smallest σ_ve > 0 (default: the spacing's)")
    g.add_argument("--sigma-max", type=float, metavar="S", help="largest σ_ve (default: the spacing's)")
    g.add_argument(
        "--tail", type=float, default=0.01, help="training mass that counts as 'rarely looked' (default 0.01)"
    )
    p.set_defaults(func=run)


def noise_table(args) -> dict:
    """The [noise] table from a TOML file (if any), overrides and the component flags."""
    from noiselevels.config import apply_overrides, read_toml

    doc = read_toml(args.config) if args.config else {}
    doc = apply_overrides(doc, args.overrides)
    if args.config and "noise" not in doc:
        raise ValueError(f"{args.config}: no [noise] section")
    if not isinstance(doc.get("noise", {}), dict):
        raise ValueError(f"[noise] must be a table; got {doc['noise']!r}")
    noise = dict(doc.get("noise", {}))
    if isinstance(noise.get("preset_params", {}), dict) is False and (args.preset or args.preset_param):
        raise ValueError(f"noise.preset_params must be a table; got {noise['preset_params']!r}")
    if args.preset:
        name, params = preset_spec(args.preset, "--preset parameter")
        noise["preset"] = name
        if params:
            noise["preset_params"] = {**noise.get("preset_params", {}), **params}
    if args.preset_param:
        noise["preset_params"] = {
            **noise.get("preset_params", {}),
            **parse_params(args.preset_param, "--preset-param"),
        }
    if args.process:
        noise["process"] = args.process
    if args.parameterization:
        noise["parameterization"] = args.parameterization
    for key in ("density", "weighting", "schedule"):
        name = getattr(args, key)
        params = parse_params(getattr(args, f"{key}_param"), f"--{key}-param")
        if name is not None:
            noise[key] = {"name": name, **params}
        elif params:
            if key not in noise:
                raise ValueError(
                    f"--{key}-param given without --{key} NAME and without a [noise.{key}] table"
                )
            base = noise[key] if isinstance(noise[key], dict) else {"name": noise[key]}
            noise[key] = {**base, **params}
    if not noise:
        raise ValueError("nothing to inspect: give a CONFIG.toml, --preset TOOL:NAME or --density NAME")
    return noise


def window(args) -> tuple[float, float, int]:
    from noiselevels.analysis import DEFAULT_LOGSNR_RANGE, DEFAULT_POINTS

    lo, hi = args.range if args.range else DEFAULT_LOGSNR_RANGE
    if args.points is not None and args.points < 2:
        raise ValueError(f"--points must be >= 2; got {args.points}")
    if args.points is not None:
        check_memory(64 * 8 * args.points, f"--points {args.points}", "use fewer points")
    return float(lo), float(hi), int(DEFAULT_POINTS if args.points is None else args.points)


def sampler_levels(args):
    """``(spacing, sigmas)`` from --spacing/--steps/--sigma-min/--sigma-max, or None without --spacing."""
    given = [f for f, v in (("--steps", args.steps), ("--sigma-min", args.sigma_min),
                            ("--sigma-max", args.sigma_max)) if v is not None]  # fmt: skip
    if args.spacing_param:
        given.append("--spacing-param")
    if args.spacing is None:
        if given:
            raise ValueError(f"{given[0]} needs --spacing NAME (the sampler whose levels to check)")
        return None
    from noiselevels.sampling.spacings import spacing

    sp = spacing(args.spacing, **build_params(args.spacing_param, "--spacing-param"))
    steps = 20 if args.steps is None else args.steps
    check_grid_size(steps)
    return sp, sp.sigmas(steps, sigma_min=args.sigma_min, sigma_max=args.sigma_max)


def write_json(path: str, payload: dict) -> None:
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=1) + "\n")


def run(args) -> int:
    if args.list_presets:
        from noiselevels.presets import PRESETS

        for name in sorted(PRESETS):
            print(f"{name:44s} {PRESETS[name].summary}")
        return 0

    cfg = pipeline_config(args) if args.base else tool_file_config(args)
    if cfg is None:
        from noiselevels.config import noise_config

        noise = noise_table(args)
        try:
            cfg = noise_config(noise)
        except ValueError as e:
            raise ValueError(f"{args.config or 'command line'}: {e}") from None
    lo, hi, n = window(args)
    eff = cfg.effective_weighting()
    summary = eff.summary(lo, hi, n)
    sampler = sampler_levels(args)

    print(cfg.describe())
    print()
    for line in summary.lines():
        print(line)
    align = None if sampler is None else print_alignment(cfg, *sampler, tail=args.tail)
    if not args.no_plots:
        write_plots(args, cfg, (lo, hi, n), levels=None if align is None else align.logsnr)
    if args.json:
        payload = {
            **({} if align is None else {"sampler": sampler_json(*sampler, align)}),
            "config": cfg.to_dict(),
            "summary": summary.to_dict(),
            "curves": eff.grid(lo, hi, n).to_dict(),
            "tool_axis": tool_axis_json(cfg),
        }
        write_json(args.json, payload)
        print(f"json: {args.json}")
    return 0


def tool_file_config(args):
    """The NoiseConfig of a tool's file given as CONFIG (None for a noiselevels TOML or no file)."""
    if args.config is None:
        if args.tool or args.resolution:
            raise ValueError("--tool and --resolution need a FILE (--resolution also goes with --base)")
        return None
    cfg = read_tool_config(args.config, args)
    if cfg is None:
        return None
    given = (
        ("--preset", args.preset),
        ("--process", args.process),
        ("--density", args.density),
        ("--parameterization", args.parameterization),
        ("--weighting", args.weighting),
        ("--schedule", args.schedule),
        ("--set", args.overrides),
        ("--preset-param", args.preset_param),
    )
    flags = [f for f, v in given if v]  # fmt: skip
    if flags:
        raise ValueError(f"{flags[0]} cannot be combined with a tool's file ({args.config})")
    print()
    return cfg


def pipeline_config(args):
    """With ``--base PIPELINE``: the noise of a fine-tune of it at ``--resolution``, the --preset /
    component flags / TOML [noise] table being its timestep type (none: the pipeline's own)."""
    from noiselevels.presets.files._parsed import parse_resolution
    from noiselevels.runs.pipeline_noise import pipeline_noise

    if args.base == "":
        raise ValueError("--base is empty: give a pipeline folder or a hub id")
    if args.tool:
        raise ValueError("--tool applies to a tool's FILE, not to --base")
    if args.config and read_tool_config_kind(args.config):
        raise ValueError(f"{args.config}: with --base give the timestep type as --preset or a [noise] TOML")
    flags = (args.config, args.preset, args.preset_param, args.process, args.parameterization, args.density,
             args.weighting, args.schedule, args.overrides)  # fmt: skip
    timestep_type = noise_table(args) if any(flags) else None
    res = None if args.resolution is None else parse_resolution(args.resolution)
    info = pipeline_noise(args.base, timestep_type, res)
    label = info.noise.preset or ("the timestep type" if timestep_type else "its own noise (uniform levels)")
    print(info.read_as(label))
    print()
    return info.noise


def read_tool_config_kind(path: str) -> bool:
    """Whether ``path`` is a tool's own file (not a noiselevels TOML)."""
    from noiselevels.presets.files import is_tool_file

    return is_tool_file(path)


def print_alignment(cfg, sp, sigmas, *, tail: float):
    """Print where the sampler's levels ``sigmas`` (VE σ, trailing 0) fall against the training density
    of ``cfg``; return ``noiselevels.analysis.alignment``'s result."""
    from noiselevels.analysis import alignment

    align = alignment(cfg.density, sigmas=sigmas, tail=tail)
    levels = align.logsnr
    nz = sigmas[:-1]
    print()
    print(
        f"sampler {sp.describe()}, {len(nz)} steps: σ_ve {float(nz[0]):.4g} → {float(nz[-1]):.4g} "
        f"(λ {float(levels.min()):+.2f} → {float(levels.max()):+.2f})"
    )
    for line in align.lines():
        print(f"  {line}")
    q = ", ".join(f"{float(v):.3f}" for v in align.quantiles)
    print(f"  training cdf at each level (0 = noisiest draw, 1 = cleanest): {q}")
    return align


def write_plots(args, cfg, grid: tuple[float, float, int], *, levels=None) -> None:
    """logsnr.png (p, w, W over λ, the sampler's ``levels`` marked) and tool_axis.png in ``--out``."""
    from noiselevels import plots

    lo, hi, n = grid
    out = Path(args.out)
    label = cfg.preset or (Path(args.config).stem if args.config else "config")
    p1 = plots.plot_logsnr(
        {label: cfg}, out / "logsnr.png", logsnr_min=lo, logsnr_max=hi, n=n, title=label, levels=levels
    )
    p2 = plots.plot_tool_axis({label: cfg}, out / "tool_axis.png", title=label)
    print()
    print(f"plots: {p1}, {p2}")


def sampler_json(sp, sigmas, align) -> dict:
    """The ``sampler`` entry of ``--json``: the spacing, its levels and where they fall in training."""
    return {
        "spacing": sp.to_dict(),
        "sigmas": sigmas.tolist(),
        "logsnr": align.logsnr.tolist(),
        "training_cdf": align.quantiles.tolist(),
        "relative_density": align.relative_density.tolist(),
        "tail": align.tail,
        "fraction_noisy_tail": align.fraction_noisy_tail,
        "fraction_clean_tail": align.fraction_clean_tail,
        "training_support": [v if math.isfinite(v) else None for v in align.support],
        "fraction_unseen": align.fraction_unseen,
    }


def tool_axis_json(cfg) -> dict:
    """The ``tool_axis`` entry of ``--json``: density and own-loss weight over the tool's time axis."""
    from noiselevels.plots import tool_axis_curves

    ta = tool_axis_curves(cfg)
    return {
        "axis": ta["axis"],
        "x": ta["x"].tolist(),
        "density": ta["density"].tolist(),
        "weight_own_loss": [v if v == v else None for v in ta["weight"].tolist()],
    }
