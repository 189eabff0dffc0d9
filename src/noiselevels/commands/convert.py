"""``noiselevels convert FILE|PRESET --to TOOL``: the settings of another tool that come closest to the same
effective weighting W(λ) = p(λ)·w(λ), printed as that tool writes them, with the distance left.

Every preset of the target tool and its numeric parameters are searched for the least total-variation
distance between the normalised W's (a coarse grid per parameter, then a 1-D refinement); when nothing comes
within 0.05 (TV) the output says the target cannot express the source.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from noiselevels.commands._args import preset_spec
from noiselevels.commands.inspect import add_tool_file_args

TOOLS = ("ai-toolkit", "kohya", "diffusers", "onetrainer", "simpletuner")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="the closest settings of another tool (same effective weighting W)",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  noiselevels convert ai-toolkit:weighted --to kohya\n"
            "  noiselevels convert 'kohya:shift?discrete_flow_shift=3' --to simpletuner\n"
            "  noiselevels convert examples/configs/ai_toolkit_flux_lora.yaml --to onetrainer\n"
        ),
    )
    p.add_argument("source", help="TOML file with [noise], a tool's config file, or tool:name[?k=v&k=v]")
    p.add_argument("--to", required=True, metavar="TOOL",
                   help=f"the target tool ({', '.join(TOOLS)})")  # fmt: skip
    add_tool_file_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from noiselevels.commands.compare import load_any
    from noiselevels.presets import PRESETS
    from noiselevels.presets.convert import convert

    cfg, label = load_any(args.source, args)
    name, params = (None, None)
    if not (args.source == "-" or args.source.endswith(".toml") or Path(args.source).is_file()):
        name, params = preset_spec(args.source, f"preset {args.source!r}: parameter")
        if name not in PRESETS:
            name, params = None, None
    result = convert(cfg, args.to, source_preset=name, source_params=params)
    print(f"source: {label}")
    print("\n".join(result.lines(label)))
    return 0
