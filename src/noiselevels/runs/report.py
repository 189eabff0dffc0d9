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

from noiselevels.plots.sweep import plot_effective_weightings, plot_loss_profiles, plot_sample_rows
from noiselevels.presets import qualified_name
from noiselevels.runs.bases import load_base
from noiselevels.runs.finetune import resolve_noise
from noiselevels.runs.images import make_grid, save_image

__all__ = ["collect", "noise_arg", "summary_rows", "write_report"]

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


def summary_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per configuration: mean ± std over seeds of fd_new, retention, train_seconds."""
    base = data["base"] or {}
    fd_other_base = base.get("fd_other")
    rows = []
    for name, rs in data["configs"].items():
        ret = [r["fd_other"] - fd_other_base for r in rs if "fd_other" in r and fd_other_base is not None]
        rows.append({
            "config": name,
            "n": len(rs),
            "fd_new": _mean_std([r.get("fd_new") for r in rs]),
            "retention": _mean_std(ret),
            "fd_other": _mean_std([r.get("fd_other") for r in rs]),
            "train_seconds": _mean_std([r.get("train_seconds") for r in rs]),
        })  # fmt: skip
    return rows


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


def _markdown(data: Mapping[str, Any], rows: list[dict[str, Any]], figs: list[tuple[str, str]]) -> list[str]:
    """The lines of report.md: the header, the table, the winners, runs without a result, the plots."""
    meta, base = data["sweep"], data["base"] or {}
    concept = meta["concept"]
    what = f"MNIST class {concept['class']}" if "class" in concept else f"images in {concept.get('images')}"
    lines = [
        f"# Sweep report: {meta['name']}",
        "",
        f"Base model `{meta['base']}`, new concept: {what} ({concept.get('num_images', 'all')} images), "
        f"seeds {', '.join(map(str, meta['seeds']))}.",
        "",
        "FD = Fréchet distance on the MNIST classifier's features (`noiselevels.runs.metrics`; lower is "
        "better): **FD new** of the concept's samples against held-out real images of it; **retention** = "
        "FD of the other classes after fine-tuning − the base model's (0 = no degradation, lower is "
        "better); **train s** = fine-tuning wall time. Mean ± std over seeds (± only with two or more).",
        "",
        "| configuration | runs | FD new ↓ | retention ΔFD other ↓ | FD other | train s |",
        "|---|---|---|---|---|---|",
    ]
    if base:
        lines.append(f"| base model (no fine-tune) | – | {_pm(base.get('fd_new', math.nan))} | 0 | "
                     f"{_pm(base.get('fd_other', math.nan))} | – |")  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['n']} | {_pm(*r['fd_new'])} | {_pm(*r['retention'])} | "
            f"{_pm(*r['fd_other'])} | {_pm(*r['train_seconds'], 1)} |"
        )
    lines += _winners(rows)
    if data["failed"] or data["pending"]:
        lines += ["", "## Runs without a result", ""]
        lines += [f"- `{rid}`: failed — {msg}" for rid, msg in data["failed"].items()]
        lines += [f"- `{rid}`: not run yet (run the sweep again to resume)" for rid in data["pending"]]
    if figs:
        lines += ["", "## Plots", ""] + [f"![{cap}]({fn})\n\n{cap}\n" for fn, cap in figs]
    return lines


def _winners(rows: list[dict[str, Any]]) -> list[str]:
    """The best configuration for the new concept and for retention, and the one-seed caveat."""
    ok = [r for r in rows if math.isfinite(r["fd_new"][0])]
    if not ok:
        return []
    best = min(ok, key=lambda r: r["fd_new"][0])
    lines = ["", f"Best for the new concept: **{best['config']}** (FD new {_pm(*best['fd_new'])})."]
    okr = [r for r in ok if math.isfinite(r["retention"][0])]
    if okr:
        bestr = min(okr, key=lambda r: r["retention"][0])
        lines.append(f"Best retention: **{bestr['config']}** (ΔFD other {_pm(*bestr['retention'])}).")
    if max(r["n"] for r in ok) < 2:
        lines += ["", "One seed per configuration, so no spread is known: add seeds (`seeds = [0, 1, 2]` "
                  "in the sweep file) before trusting a ranking by a few FD points."]  # fmt: skip
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
