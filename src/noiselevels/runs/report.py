"""The report of a sweep folder (``noiselevels.runs.sweep``): its results collected, summarised and written.

``write_report(OUT)`` writes ``OUT/report.md`` and ``OUT/report.html``: one row per configuration with
the Fréchet distance of the new concept against held-out real images, **retention** (FD of the other
classes after fine-tuning − the base model's; 0 = no degradation), fine-tuning wall time — each mean ±
std over seeds (the mean alone with one seed, plus a line saying no spread is known) — and the plots
(``noiselevels.plots.sweep``) ``samples.png`` (the concept's samples, one row per configuration, side by
side), ``effective_weightings.png`` (W(λ) = p(λ)·w(λ) of every configuration, ε-MSE units) and
``loss_profiles.png`` (the ε-unit training loss over λ, averaged over seeds).

It reads only the folder: ``sweep.json`` (the configurations and run ids) and each run's
``result.json`` / ``error.json`` / ``samples.safetensors`` / ``loss_profile.json``; a run with neither
result nor error is *pending* (the sweep was stopped; running it again resumes).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from noiselevels.plots.sweep import (
    plot_effective_weightings,
    plot_loss_profiles,
    plot_sample_rows,
    plot_validation_curves,
)
from noiselevels.presets import qualified_name
from noiselevels.runs.bases import load_base
from noiselevels.runs.finetune import resolve_noise
from noiselevels.runs.images import make_grid, save_image

__all__ = [
    "METRICS",
    "collect",
    "metric",
    "noise_arg",
    "summary_rows",
    "validation_curves",
    "verdict",
    "write_report",
]

WEIGHTING_WINDOW = (-12.0, 12.0)  # λ window of effective_weightings.png


def noise_arg(params: Mapping[str, Any]) -> Any:
    """The ``timestep_type`` argument of ``finetune`` / ``resolve_noise`` for one configuration's
    finetune arguments: its ``noise`` table (with ``timestep_type`` as its preset, tool-qualified), else
    its ``timestep_type`` (default ``sigmoid``)."""
    if "noise" in params:
        table = dict(params["noise"])
        if "timestep_type" in params:
            table.setdefault("preset", qualified_name(params["timestep_type"]))
        return table
    return params.get("timestep_type", "sigmoid")


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
def collect(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Results of a sweep folder: ``{"sweep": sweep.json, "base": base result or None,
    "configs": {name: [results]}, "failed": {id: message}, "pending": [ids]}``."""
    out = Path(out_dir)
    meta_path = out / "sweep.json"
    if not meta_path.is_file():
        raise ValueError(f"{out} is not a sweep folder (no sweep.json)")
    meta = json.loads(meta_path.read_text())
    base, configs, failed, pending = None, {name: [] for name in meta["configs"]}, {}, []
    for rid in meta["runs"]:
        d = out / "runs" / rid
        if (d / "result.json").is_file():
            r = json.loads((d / "result.json").read_text())
            if r["kind"] == "base":
                base = r
            else:
                configs.setdefault(r["config"], []).append(r)
        elif (d / "error.json").is_file():
            failed[rid] = json.loads((d / "error.json").read_text())["error"]
        else:
            pending.append(rid)
    return {"sweep": meta, "base": base, "configs": configs, "failed": failed, "pending": pending}


def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else math.nan
    return m, s


def _pm(m: float, s: float = math.nan, digits: int = 2) -> str:
    """``mean ± std``; just the mean when there is no spread to show (one seed)."""
    if not math.isfinite(m):
        return "–"
    if not math.isfinite(s):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


# name: (path in result.json, column heading, digits, lower is better)
METRICS: dict[str, tuple[tuple[str, ...], str, int, bool]] = {
    "fd_new": (("fd_new",), "FD new ↓", 2, True),
    "retention": ((), "retention ΔFD other ↓", 2, True),  # fd_other − the base's (computed)
    "fd_other": (("fd_other",), "FD other", 2, True),
    "val_loss": (("validation", "model", "overall", "mean"), "val loss ↓", 4, True),
    "val_delta": (("validation", "difference", "overall", "mean"), "Δ val vs base ↓", 4, True),
    "val_noisy": (("validation", "difference", "bands", "noisy", "mean"), "Δ noisy", 4, True),
    "val_mid": (("validation", "difference", "bands", "mid", "mean"), "Δ mid", 4, True),
    "val_clean": (("validation", "difference", "bands", "clean", "mean"), "Δ clean", 4, True),
    "ret_change": (("retention", "change", "overall", "mean"), "retention: change ↓", 5, True),
    "ret_loss": (("retention", "loss_difference", "overall", "mean"), "retention: Δ loss ↓", 4, True),
    "image_text": (("features", "image_text"), "image–text ↑", 4, False),
    "image_image": (("features", "image_image"), "image–image ↑", 4, False),
    "feature_fd": (("features", "fd"), "FD features ↓", 3, True),
    "train_seconds": (("train_seconds",), "train s", 1, True),
}
# the metrics a verdict is given for, in order: the concept's validation loss, then its FD
VERDICT_METRICS = ("val_delta", "fd_new", "image_image")


def metric(r: Mapping[str, Any], key: str, base: Mapping[str, Any] | None = None) -> float | None:
    """The value of metric ``key`` (``METRICS``) in one run's result (None when absent)."""
    if key == "retention":
        fo, fb = r.get("fd_other"), (base or {}).get("fd_other")
        return None if fo is None or fb is None else fo - fb
    v: Any = r
    for k in METRICS[key][0]:
        if not isinstance(v, Mapping) or k not in v:
            return None
        v = v[k]
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def summary_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per configuration: mean ± std over seeds of every metric of ``METRICS`` (NaN when absent),
    and ``n``, the number of finished runs."""
    base = data["base"] or {}
    rows = []
    for name, rs in data["configs"].items():
        row: dict[str, Any] = {"config": name, "n": len(rs)}
        for key in METRICS:
            row[key] = _mean_std([metric(r, key, base) for r in rs])
        rows.append(row)
    return rows


def verdict(data: Mapping[str, Any], key: str) -> str | None:
    """The verdict on metric ``key``: the best configuration is named the winner only when, paired over
    the seeds both ran, it beats the runner-up by more than the standard deviation of those paired
    differences (the seed spread); otherwise "no measurable difference". None with < 2 configurations."""
    _, label, digits, lower = METRICS[key]
    base = data["base"] or {}
    per = {}
    for name, rs in data["configs"].items():
        vals = {r["seed"]: metric(r, key, base) for r in rs}
        vals = {s: v for s, v in vals.items() if v is not None and math.isfinite(v)}
        if vals:
            per[name] = vals
    if len(per) < 2:
        return None
    sign = 1.0 if lower else -1.0
    ranked = sorted(per, key=lambda n: sign * sum(per[n].values()) / len(per[n]))
    best, second = ranked[0], ranked[1]
    seeds = sorted(set(per[best]) & set(per[second]))
    gains = [sign * (per[second][s] - per[best][s]) for s in seeds]  # > 0: best is better on seed s
    name = "Verdict on " + label.rstrip(" ↓↑")
    if len(gains) < 2:
        return (f"{name}: **no measurable difference** — {best} leads {second} by "
                f"{abs(gains[0]) if gains else math.nan:.{digits}f} on one seed; with one seed no spread is "
                "known (add seeds)")  # fmt: skip
    m, sd = _mean_std(gains)
    seed_list = ", ".join(map(str, seeds))
    if m > sd:
        return (f"{name}: **{best}** wins — better than the runner-up {second} by {m:.{digits}f} "
                f"(paired over seeds {seed_list}; seed spread ± {sd:.{digits}f})")  # fmt: skip
    return (f"{name}: **no measurable difference** — {best} vs the runner-up {second}: {m:.{digits}f} ± "
            f"{sd:.{digits}f} (paired over seeds {seed_list}; within the seed spread)")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------
def write_report(out_dir: str | os.PathLike, *, plots: bool = True) -> Path:
    """Write ``report.md`` and ``report.html`` (and the plots) for the sweep folder ``out_dir``."""
    out = Path(out_dir)
    data = collect(out)
    figs = figures(out, data) if plots else []
    md = "\n".join(_markdown(data, summary_rows(data), figs)) + "\n"
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(_html(md, data["sweep"]["name"]))
    return out / "report.md"


def _columns(rows: list[dict[str, Any]], base: Mapping[str, Any]) -> list[str]:
    """The metrics with a value in some row (or in the base's result), in ``METRICS`` order."""
    def present(k: str) -> bool:
        return any(math.isfinite(r[k][0]) for r in rows) or (k != "retention" and metric(base, k) is not None)

    return [k for k in METRICS if present(k)]


def _or_nan(v: float | None) -> float:
    return math.nan if v is None else v


def _what(meta: Mapping[str, Any]) -> str:
    concept = meta["concept"]
    if "class" in concept:
        return f"MNIST class {concept['class']} ({concept.get('num_images', 30)} images)"
    val = f"; validation images {concept['validation_images']}" if concept.get("validation_images") else ""
    return f"images in {concept.get('images')}{val}"


_EXPLAIN = (
    "**val loss** = ε-unit denoising loss ‖ε̂ − ε‖²/D of the fine-tuned model on held-out images of the "
    "concept at fixed noise levels (λ = −8…8, the same noise for every model; "
    "`noiselevels.runs.validation`); **Δ val vs base** its paired difference to the base model without the "
    "adapter (< 0: the adapter learnt the concept), also per band (noisy λ < −3, mid, clean λ > 3); "
    "**retention: change** = how much the adapter "
    "changes the base's predictions on images and prompts without the trigger (ε units, 0 = untouched) and "
    "**retention: Δ loss** the change of the loss there (`noiselevels.runs.retention`)."
)
_EXPLAIN_FD = (
    "FD = Fréchet distance on the MNIST classifier's features (**FD new** of the concept's samples against "
    "held-out real images; **retention ΔFD other** = FD of the other classes after fine-tuning − the base "
    "model's)."
)


def _markdown(data: Mapping[str, Any], rows: list[dict[str, Any]], figs: list[tuple[str, str]]) -> list[str]:
    """The lines of report.md: header, table, verdicts, runs without a result, plots."""
    meta, base = data["sweep"], data["base"] or {}
    cols = _columns(rows, base)
    seeds = ", ".join(map(str, meta["seeds"]))
    lines = [
        f"# Sweep report: {meta['name']}",
        "",
        f"Base model `{meta['base']}`, new concept: {_what(meta)}, seeds {seeds}.",
        "",
        " ".join([_EXPLAIN, *([_EXPLAIN_FD] if "fd_new" in cols else []),
                  "**train s** = fine-tuning wall time. Mean ± std over seeds (± only with two or more)."]),
        "",
        "| configuration | runs | " + " | ".join(METRICS[k][1] for k in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    if base:
        cells = [
            "0" if k == "retention" else "–" if k == "train_seconds"
            else _pm(_or_nan(metric(base, k)), digits=METRICS[k][2])
            for k in cols
        ]
        lines.append("| base model (no fine-tune) | – | " + " | ".join(cells) + " |")
    for r in rows:
        cells = [_pm(*r[k], METRICS[k][2]) for k in cols]
        lines.append(f"| {r['config']} | {r['n']} | " + " | ".join(cells) + " |")
    lines += _verdicts(data, rows)
    if data["failed"] or data["pending"]:
        lines += ["", "## Runs without a result", ""]
        lines += [f"- `{rid}`: failed — {msg}" for rid, msg in data["failed"].items()]
        lines += [f"- `{rid}`: not run yet (run the sweep again to resume)" for rid in data["pending"]]
    if figs:
        lines += ["", "## Plots", ""] + [f"![{cap}]({fn})\n\n{cap}\n" for fn, cap in figs]
    return lines


def _verdicts(data: Mapping[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The verdict on each concept metric present (``verdict``), and the one-seed caveat."""
    found = [v for v in (verdict(data, k) for k in VERDICT_METRICS) if v]
    if not found:
        return []
    lines = ["", "## Verdict", ""]
    for v in found:
        lines += [v, ""]
    if max(r["n"] for r in rows) < 2:
        lines += ["One seed per configuration, so no spread is known: add seeds (`seeds = [0, 1, 2]` "
                  "in the sweep file) before trusting any ranking."]  # fmt: skip
    return lines


def _html(md: str, title: str) -> str:
    """A small Markdown → HTML conversion for the report's own constructs (headings, tables, images,
    bold, code, lists, paragraphs)."""

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    body, table = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                table.append(cells)
            continue
        if table:
            head, *rest = table
            body.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>")
            body += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rest]
            body.append("</table>")
            table = []
        if m := re.match(r"^(#+) (.*)", line):
            n = len(m.group(1))
            body.append(f"<h{n}>{inline(m.group(2))}</h{n}>")
        elif m := re.match(r"^!\[(.*)\]\((.*)\)$", line):
            body.append(f'<img src="{html.escape(m.group(2))}" alt="{html.escape(m.group(1))}">')
        elif line.startswith("- "):
            body.append(f"<li>{inline(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}" \
            "td,th{border:1px solid #999;padding:4px 8px}img{max-width:100%}"  # fmt: skip
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# the figures: numbers from the run folders, drawn by noiselevels.plots.sweep
# ----------------------------------------------------------------------------------------------
def figures(out: Path, data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """samples.png, effective_weightings.png, loss_profiles.png (each when there is something to draw);
    returns (file, caption) pairs."""
    figs: list[tuple[str, str]] = []
    rows = sample_rows(out, data)
    if rows:
        n = min(len(x) for x in rows.values())
        grid = make_grid(torch.cat([x[:n] for x in rows.values()]), nrow=n)
        save_image(grid, out / "samples_grid.png", nrow=1)
        plot_sample_rows(grid, list(rows), out / "samples.png", per_row=n,
                         title="samples of the new concept (first seed)")  # fmt: skip
        figs.append(("samples.png", "Samples of the new concept, one row per configuration (first seed)."))
    lam = torch.linspace(*WEIGHTING_WINDOW, 481, dtype=torch.float64)
    try:
        curves = effective_weightings(data["sweep"], lam)
        plot_effective_weightings(lam, curves, out / "effective_weightings.png", window=WEIGHTING_WINDOW)
        figs.append(("effective_weightings.png", "Effective weighting W(λ) of every configuration."))
    except ValueError:  # the base cannot be loaded here (another machine's path): no weighting plot
        pass
    curves, diffs, base_curve = validation_curves(data)
    if curves:
        plot_validation_curves(curves, diffs, out / "validation_loss.png", base=base_curve)
        cap = ("Validation loss at fixed noise levels over λ per configuration (mean ± std over seeds; base "
               "dashed) and its paired difference to the base model.")  # fmt: skip
        figs.append(("validation_loss.png", cap))
    profiles = loss_profiles(out, data)
    if profiles:
        plot_loss_profiles(
            profiles, out / "loss_profiles.png", title="fine-tuning loss profiles (mean over seeds)"
        )
        figs.append(("loss_profiles.png", "Fine-tuning loss over λ (ε units), mean over seeds."))
    return figs


def sample_rows(out: Path, data: Mapping[str, Any], *, per_row: int = 8) -> dict[str, torch.Tensor]:
    """Up to ``per_row`` samples of the new concept per configuration (its first seed that has
    ``samples.safetensors``), the base first: ``{name: (k, C, H, W)}``."""
    from safetensors.torch import load_file

    rows = {}
    ordered = [("base", [data["base"]] if data["base"] else []), *list(data["configs"].items())]
    for name, rs in ordered:
        for r in sorted(rs, key=lambda r: r["seed"]):
            f = out / "runs" / r["id"] / "samples.safetensors"
            if f.is_file():
                rows[name] = load_file(str(f))["samples"][:per_row]
                break
    return rows


def _curve(r: Mapping[str, Any], part: str) -> tuple[list[float], list[float]] | None:
    c = r.get("validation", {}).get(part, {}).get("curve")
    return ([p["logsnr"] for p in c], [p["mean"] for p in c]) if c else None


def validation_curves(data: Mapping[str, Any]):
    """(``{config: (λ, mean, std over seeds)}`` of the validation loss, the same of its paired difference
    to the base, the base's (λ, loss) or None) from the runs' ``validation`` results."""
    out: dict[str, tuple[list[float], list[float], list[float]]] = {}
    diffs: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for name, rs in data["configs"].items():
        for part, target in (("model", out), ("difference", diffs)):
            cs = [c for c in (_curve(r, part) for r in rs) if c is not None]
            if not cs or any(c[0] != cs[0][0] for c in cs):
                continue
            cols = list(zip(*(c[1] for c in cs)))
            stats = [_mean_std(list(col)) for col in cols]
            target[name] = (cs[0][0], [m for m, _ in stats], [sd for _, sd in stats])
    base = _curve(data["base"], "model") if data["base"] else None
    return out, diffs, base


def effective_weightings(meta: Mapping[str, Any], logsnr: torch.Tensor) -> dict[str, torch.Tensor]:
    """W(λ) = p(λ)·w(λ) on ``logsnr`` of every configuration in ``meta`` (sweep.json), each normalised
    to integrate to 1 over the grid. Raises ``ValueError`` when the base cannot be loaded."""
    base = load_base(meta["base"])
    curves = {}
    for name, params in meta["configs"].items():
        nc = resolve_noise(noise_arg(params), base.noise)
        w = nc.density.prob(logsnr) * nc.weighting(logsnr)
        curves[name] = w / torch.trapezoid(w, logsnr)
    return curves


def loss_profiles(out: Path, data: Mapping[str, Any]) -> dict[str, tuple[list[float], list[float]]]:
    """The last recorded ε-unit loss profile over λ of each configuration, averaged over its seeds
    (NaN where no seed has a value): ``{name: (λ bin centres, mean loss)}``."""
    out_profiles = {}
    for name, rs in data["configs"].items():
        profs = []
        for r in rs:
            f = out / "runs" / r["id"] / "loss_profile.json"
            if f.is_file():
                p = json.loads(f.read_text())
                h = p["history"][-1] if p["history"] else None
                if h:
                    profs.append((p["centers"], h["mean"]))
        if not profs:
            continue
        x = profs[0][0]
        ys = [[v if v is not None else math.nan for v in y] for _, y in profs if len(y) == len(x)]
        mean = [
            (sum(v for v in col if math.isfinite(v)) / max(1, sum(math.isfinite(v) for v in col)))
            if any(math.isfinite(v) for v in col) else math.nan
            for col in zip(*ys)
        ]  # fmt: skip
        out_profiles[name] = (x, mean)
    return out_profiles
