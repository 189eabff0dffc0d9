"""``noiselevels compare A B [--out DIR] [--json FILE]``: how far apart two configurations' weightings are.

A and B are each a TOML file with a [noise] section, a training tool's own file as it is (ai-toolkit
YAML, kohya command line or --config_file TOML, OneTrainer / SimpleTuner JSON, diffusers command line) or
a preset name (``kohya:sigmoid``; parameters
as ``kohya:shift?discrete_flow_shift=3.16&sigmoid_scale=1``). Prints the total-variation distance
of the normalised effective weightings W = p·w, where they differ most, the shift in noise level
between them (as a flow shift factor) and the ratio of their overall loss scales; writes overlaid
plots over λ and over the tools' time axes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from noiselevels.commands._args import preset_spec
from noiselevels.commands.inspect import (
    add_range_args,
    add_tool_file_args,
    read_tool_config,
    window,
    write_json,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare two configurations' effective weightings (TOML files or presets)",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  noiselevels compare examples/configs/kohya_flux_sigmoid.toml ai-toolkit:sigmoid\n"
            "  noiselevels compare kohya:sigmoid onetrainer:sigmoid --out runs/compare\n"
            "  noiselevels compare examples/configs/kohya_flux_lora.sh \\\n"
            "      examples/configs/ai_toolkit_flux_lora.yaml\n"
            "  noiselevels compare 'kohya:shift?discrete_flow_shift=3' diffusers:logit_normal \\\n"
            "      --json cmp.json\n"
        ),
    )
    p.add_argument("a", help="TOML file, a tool's config file, or preset name (tool:name[?k=v&k=v])")
    p.add_argument("b", help="TOML file, a tool's config file, or preset name (tool:name[?k=v&k=v])")
    add_tool_file_args(p)
    p.add_argument(
        "--out", metavar="DIR", default="runs/compare", help="folder for the PNGs (default runs/compare)"
    )
    p.add_argument("--no-plots", action="store_true", help="do not write PNGs")
    p.add_argument("--json", metavar="FILE", help="write both configurations and the distances as JSON")
    add_range_args(p)
    p.set_defaults(func=run)


def load_any(spec: str, args=None):
    """A NoiseConfig from a noiselevels TOML, a tool's file (``args`` gives --tool / --resolution) or a
    preset name ``tool:name[?k=v&...]``; and its label."""
    from noiselevels.config import load_config
    from noiselevels.presets import PRESETS, preset

    if spec == "-" or spec.endswith(".toml") or Path(spec).is_file():
        cfg = None if args is None else read_tool_config(spec, args)
        if cfg is not None:
            return cfg, "stdin" if spec == "-" else Path(spec).name
        return load_config(spec), Path(spec).stem
    name, params = preset_spec(spec, f"preset {spec!r}: parameter")
    if name not in PRESETS:
        raise ValueError(
            f"{spec!r} is neither a TOML file nor a preset; valid presets: {', '.join(sorted(PRESETS))}"
        )
    return preset(name, **params), spec


def run(args) -> int:
    from noiselevels.analysis import compare

    cfg_a, label_a = load_any(args.a, args)
    cfg_b, label_b = load_any(args.b, args)
    if label_a == label_b:
        label_a, label_b = f"A: {label_a}", f"B: {label_b}"
    lo, hi, n = window(args)
    cmp = compare(cfg_a, cfg_b, logsnr_min=lo, logsnr_max=hi, n=n)

    print(f"A = {label_a}")
    print("    " + cfg_a.describe().replace("\n", "\n    "))
    print(f"B = {label_b}")
    print("    " + cfg_b.describe().replace("\n", "\n    "))
    print()
    print(f"effective weightings W = p·w over λ ∈ [{lo:g}, {hi:g}]:")
    for line in cmp.lines("A", "B"):
        print("  " + line)

    if not args.no_plots:
        from noiselevels import plots

        out = Path(args.out)
        configs = {label_a: cfg_a, label_b: cfg_b}
        p1 = plots.plot_logsnr(
            configs,
            out / "compare_logsnr.png",
            logsnr_min=lo,
            logsnr_max=hi,
            n=n,
            title=f"{label_a} vs {label_b}",
        )
        p2 = plots.plot_tool_axis(configs, out / "compare_tool_axis.png", title=f"{label_a} vs {label_b}")
        print()
        print(f"plots: {p1}, {p2}")
    if args.json:
        write_json(
            args.json,
            {
                "a": {"label": label_a, "config": cfg_a.to_dict()},
                "b": {"label": label_b, "config": cfg_b.to_dict()},
                "comparison": cmp.to_dict(),
            },
        )
        print(f"json: {args.json}")
    return 0
