"""Experiments: a grid of fine-tunes (timestep types × seeds × ranks × ...) run in parallel, resumably.

A sweep is a TOML file::

    [sweep]
    base = "mnist-base"          # any base of noiselevels.runs.finetune.load_base
    class = 7                    # the new concept: an MNIST class (held-out real images = the rest) ...
    # images = "path/to/folder"  # ... or a folder of images (then no Fréchet distance of the concept)
    num_images = 30
    seeds = [0, 1, 2]

    [finetune]                   # defaults of every run (noiselevels.runs.finetune.finetune's arguments)
    rank = 8
    steps = 300

    [eval]                       # evaluate_finetune's arguments (sample counts, ODE steps)
    num_new = 200
    num_other = 270

    [grid]                       # the Cartesian product of these finetune arguments
    timestep_type = ["linear", "sigmoid", "weighted", "shift"]

    [configs.logit_normal_shifted]   # extra named configurations (custom density / weighting, adaptive)
    noise = { density = { name = "logit_normal", mean = 0.5, std = 1.0 } }

A *configuration* is one point of the grid (named ``key=value,...``) or one ``[configs.NAME]`` table; a
*run* is a configuration with a seed. Run ``r`` lives in ``OUT/runs/<r>/`` (``spec.json``, the adapter,
its log and loss profile, the new concept's samples); it is **done** when its ``result.json`` exists —
written atomically (temporary file + ``os.replace``) as the run's last act — so a sweep stopped at any
point is resumed by running it again: finished runs are skipped, unfinished and failed ones are redone.
A run's folder name ends with a hash of its full specification, so changing a setting starts new runs
instead of reusing stale results. A failed run writes ``error.json`` (message + traceback) and the
sweep goes on; failures are listed in the report and in the exit status.

The unadapted base model is evaluated once, as the pseudo-run ``base``: the Fréchet distance of the
other classes that the fine-tunes are compared with (**retention** = FD_other(adapted) − FD_other(base),
0 = no degradation), and the base's own FD on the concept's spare label (the "before" number).

Backends:

* ``local`` (default): ``workers`` runs at a time, each in its own Python subprocess with
  ``torch.set_num_threads(cores // workers)`` (and OMP/MKL threads likewise), so N workers use the
  cores they are given without oversubscription.
* ``ray``: Ray Tune (``pip install 'noiselevels[ray]'``) runs one trial per unfinished run, each asking
  for ``cpus_per_trial`` CPUs; ``ray.init(address=...)`` is called with ``--address`` (or the
  ``RAY_ADDRESS`` environment variable; without either, a local Ray instance is started). On a cluster,
  OUT must be on storage every node sees (the trials write their run folders there); resuming works the
  same way because "done" is still the existence of ``result.json``.

When every run is done (or failed), ``run_sweep`` writes ``OUT/report.md`` and ``OUT/report.html``
(``noiselevels.runs.report``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from noiselevels.options import check_keys, read_toml
from noiselevels.runs.bases import load_base
from noiselevels.runs.checkpoint import write_json_atomic
from noiselevels.runs.config import build_adaptive
from noiselevels.runs.finetune import concept_images, evaluate_finetune, finetune, resolve_noise
from noiselevels.runs.report import noise_arg, write_report
from noiselevels.runs.sweep_guard import (
    PARENT_ENV,
    SweepLock,
    check_eval_params,
    check_run_params,
    die_with_parent,
    interrupt_on_sigterm,
    require_ray,
    signal_name,
)
from noiselevels.runs.sweep_pipeline import (
    CONCEPT_EVAL_KEYS,
    encode_pipeline_data,
    execute_pipeline,
    image_names,
    is_pipeline_base,
    pipeline_finetune_keys,
    run_concept_metrics,
    validate_pipeline,
)
from noiselevels.runs.validation import holdout_split

__all__ = [
    "RunSpec",
    "Sweep",
    "SweepResult",
    "load_sweep",
    "parse_sweep",
    "run_demo",
    "run_one",
    "run_sweep",
    "validate",
]

SWEEP_KEYS = ("base", "class", "images", "validation_images", "num_images", "seeds", "name", "workers")
FINETUNE_KEYS = (
    "timestep_type", "noise", "rank", "alpha", "lr", "steps", "batch_size", "warmup", "label", "target",
    "adaptive", "prior_weight", "prior_images",
)  # fmt: skip
FD_EVAL_KEYS = ("num_new", "num_other", "steps", "seed", "features")  # evaluate_finetune's
EVAL_KEYS = (*FD_EVAL_KEYS, *CONCEPT_EVAL_KEYS)
DEMO_SWEEP = Path(__file__).resolve().parents[3] / "examples" / "sweeps" / "timestep-types-demo.toml"


# ----------------------------------------------------------------------------------------------
# specification
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: a configuration (its name and finetune arguments) with a seed; ``kind`` is ``finetune``
    or ``base`` (the unadapted base evaluated once)."""

    config: str
    params: dict[str, Any]
    seed: int
    kind: str = "finetune"

    def to_dict(self, sweep: Sweep) -> dict[str, Any]:
        return {
            "config": self.config,
            "params": self.params,
            "seed": self.seed,
            "kind": self.kind,
            "base": sweep.base,
            "concept": sweep.concept,
            "eval": sweep.eval,
        }

    def run_id(self, sweep: Sweep) -> str:
        blob = json.dumps(self.to_dict(sweep), sort_keys=True, default=str)
        h = hashlib.sha256(blob.encode()).hexdigest()[:8]
        slug = "".join(ch if ch.isalnum() or ch in "=-_." else "_" for ch in self.config)[:60]
        return f"base-{h}" if self.kind == "base" else f"{slug}-s{self.seed}-{h}"


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A parsed sweep file (module docstring): base, concept (``{"class": c, "num_images": n}`` or
    ``{"images": dir, ...}``), seeds, finetune defaults, the configurations and evaluation settings."""

    name: str
    base: str
    concept: dict[str, Any]
    seeds: tuple[int, ...]
    configs: dict[str, dict[str, Any]]
    eval: dict[str, Any]
    workers: int | None = None
    evaluate_base: bool = True

    def runs(self) -> list[RunSpec]:
        out = [RunSpec("base", self.base_params(), 0, kind="base")] if self.evaluate_base else []
        for name, params in self.configs.items():
            out += [RunSpec(name, params, s) for s in self.seeds]
        return out


    def base_params(self) -> dict[str, Any]:
        """The data settings the base pseudo-run evaluates with: ``trigger`` and ``resolution`` when every
        configuration uses the same (pipeline sweeps; {} otherwise)."""
        out = {}
        for key in ("trigger", "resolution"):
            vals = {json.dumps(p.get(key)) for p in self.configs.values()}
            if len(vals) == 1 and (v := next(iter(self.configs.values())).get(key)) is not None:
                out[key] = v
        return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, Mapping):
        return v.get("name", "custom") if isinstance(v.get("name"), str) else "custom"
    return str(v)


def parse_sweep(d: Mapping[str, Any], *, name: str = "sweep") -> Sweep:
    """Validate a sweep table (the TOML's contents) into a :class:`Sweep`; errors name the bad key."""
    check_keys("the sweep file's top level", d, ("sweep", "finetune", "eval", "grid", "configs"))
    ft_keys = _finetune_keys(d.get("sweep", {}).get("base") if isinstance(d.get("sweep"), Mapping) else None)
    sections = {}
    for key, valid in (("sweep", SWEEP_KEYS), ("finetune", ft_keys), ("eval", EVAL_KEYS),
                       ("grid", ft_keys)):  # fmt: skip
        check_keys(f"[{key}]", d.get(key, {}), valid)
        sections[key] = dict(d.get(key, {}))
    sw, defaults, ev, grid = sections["sweep"], sections["finetune"], sections["eval"], sections["grid"]
    extra = dict(d.get("configs", {}))
    if ("class" in sw) == ("images" in sw):
        raise ValueError("[sweep] needs exactly one of class = N (an MNIST class) or images = 'DIR'")
    concept = {k: sw[k] for k in ("class", "images", "validation_images", "num_images") if k in sw}
    seeds = sw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise ValueError(f"[sweep] seeds must be a non-empty list of integers >= 0; got {seeds!r}")
    configs: dict[str, dict[str, Any]] = {}
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ValueError(f"[grid] {k} must be a non-empty list of values; got {v!r}")
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)) if keys else []:
        params = {**defaults, **dict(zip(keys, values))}
        cname = ",".join(f"{k}={_fmt(v)}" for k, v in zip(keys, values)) if len(keys) > 1 else _fmt(values[0])
        configs[cname] = params
    for cname, table in extra.items():
        if not isinstance(table, Mapping):
            raise ValueError(f"[configs.{cname}] must be a table of finetune arguments; got {table!r}")
        check_keys(f"[configs.{cname}]", table, ft_keys)
        if cname in configs or cname == "base":
            raise ValueError(f"configuration name {cname!r} is used twice")
        configs[cname] = {**defaults, **dict(table)}
    if not configs:
        raise ValueError("the sweep has no configurations: add a [grid] or [configs.NAME] tables")
    workers = sw.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"[sweep] workers must be an integer >= 1; got {workers!r}")
    return Sweep(
        name=str(sw.get("name", name)),
        base=str(sw.get("base", "mnist-base")),
        concept=concept,
        seeds=tuple(seeds),
        configs=configs,
        eval=ev,
        workers=workers,
    )


def _finetune_keys(base: Any) -> tuple[str, ...]:
    """The [finetune] / [grid] keys: every ``finetune_latent`` argument for a pipeline base
    (``runs.sweep_pipeline``), else ``finetune``'s."""
    return pipeline_finetune_keys() if base is not None and is_pipeline_base(str(base)) else FINETUNE_KEYS


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read and validate a sweep TOML file (its name defaults to the file's stem)."""
    return parse_sweep(read_toml(path, "sweep"), name=Path(path).stem)


def validate(sweep: Sweep) -> None:
    """Check everything that can fail before any run starts: the base loads, every configuration's
    timestep type / noise table resolves, the concept's images exist and are enough."""
    if is_pipeline_base(sweep.base):
        validate_pipeline(sweep)
        return
    check_eval_params(sweep.eval)  # every run's arguments, before anything loads or runs
    for name, params in sweep.configs.items():
        check_run_params(name, params)
    base = load_base(sweep.base)
    for name, params in sweep.configs.items():
        try:
            nc = resolve_noise(noise_arg(params), base.noise)
            if params.get("adaptive"):
                build_adaptive(dict(params["adaptive"]), nc.objective())
        except ValueError as e:
            raise ValueError(f"configuration {name!r}: {e}") from None
    concept_images(**_concept_args(sweep.concept), shape=tuple(base.data["shape"]))


def _concept_args(concept: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "images": concept.get("images"),
        "class_label": concept.get("class"),
        "num_images": concept.get("num_images"),
    }


# ----------------------------------------------------------------------------------------------
# one run (in a worker process, or a Ray trial)
# ----------------------------------------------------------------------------------------------
def run_one(run_dir: str | os.PathLike, *, threads: int | None = None) -> dict[str, Any]:
    """Execute the run described by ``run_dir/spec.json``; write ``result.json`` (atomically, last) or
    ``error.json``; return the result. Used by the worker subprocesses and the Ray trials."""
    run_dir = Path(run_dir)
    spec = json.loads((run_dir / "spec.json").read_text())
    if threads:
        torch.set_num_threads(int(threads))
    t0 = time.perf_counter()
    (run_dir / "error.json").unlink(missing_ok=True)
    try:
        result = _execute(spec, run_dir, t0)
        write_json_atomic(run_dir / "result.json", result)
        return result
    except Exception as e:
        err = {"id": run_dir.name, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        write_json_atomic(run_dir / "error.json", err)
        raise


def _execute(spec: Mapping[str, Any], run_dir: Path, t0: float) -> dict[str, Any]:
    """Fine-tune (or take the base, ``kind = "base"``) and evaluate on the concept: the run's result
    (wall time counted from ``t0``). Adapter, log, loss profile and samples go into ``run_dir``."""
    if is_pipeline_base(spec["base"]):
        result, samples = execute_pipeline(spec, run_dir, t0)
        if samples is not None:
            _save_samples(samples, run_dir / "samples.safetensors")
        result["threads"] = torch.get_num_threads()
        return result
    base = load_base(spec["base"])
    shape = tuple(base.data["shape"])
    x, real_new, _ = concept_images(**_concept_args(spec["concept"]), shape=shape)
    x, x_val, holdout = _folder_split(spec["concept"], x, shape)
    label = spec["params"].get("label", base.spare_label)
    other = [c for c in (base.trained_classes or []) if c != label]
    result: dict[str, Any] = {"id": run_dir.name, "config": spec["config"], "seed": spec["seed"],
                              "kind": spec["kind"]}  # fmt: skip
    if spec["kind"] == "base":
        model, noise, train_s, final_loss = base.model, base.noise, 0.0, None
    else:
        params = dict(spec["params"])
        params["timestep_type"] = noise_arg(params)
        params.pop("noise", None)
        res = finetune(base, x, out_dir=run_dir, seed=spec["seed"], extra_info={"holdout": holdout}, **params)
        model, noise, train_s = res.model, res.noise, res.train_seconds
        final_loss = res.log[-1]["loss"] if res.log else None
        label = res.label
    if real_new is not None and label is not None:
        eval_kw = {k: spec["eval"][k] for k in FD_EVAL_KEYS if k in spec["eval"]}
        m = evaluate_finetune(model, noise, shape, label=label, real_new=real_new, other_classes=other,
                              **eval_kw)  # fmt: skip
        _save_samples(m.pop("samples_new"), run_dir / "samples.safetensors")
        result.update(m)
    concept = run_concept_metrics(base, None if spec["kind"] == "base" else model, label,
                                  concept=spec["concept"], real_new=real_new, x_val=x_val,
                                  ev=spec["eval"])  # fmt: skip
    if concept.get("samples") is not None:  # an image-folder concept: its samples for the report's grid
        _save_samples(concept.pop("samples"), run_dir / "samples.safetensors")
    result.update(concept)
    result.update(
        train_seconds=train_s,
        wall_seconds=time.perf_counter() - t0,
        final_loss=final_loss,
        label=label,
        threads=torch.get_num_threads(),
    )
    return result


def _folder_split(concept: Mapping[str, Any], x: torch.Tensor, shape) -> tuple[torch.Tensor, Any, Any]:
    """An image-folder concept: (training images, held-out images, their names) — ``validation_images``
    when given, else a fixed, seeded 20 % of the folder (``validation.holdout_split``, seed 0); an MNIST
    class: (x, None, None) (its held-out images are the class's other real images)."""
    if "images" not in concept:
        return x, None, None
    if concept.get("validation_images"):
        x_val, _, _ = concept_images(images=concept["validation_images"], shape=shape)
        return x, x_val, None
    names = image_names(concept["images"])[: len(x)]
    train, val = holdout_split(len(x), seed=0)
    return x[train], x[val], [names[i] for i in val]


def _save_samples(samples: torch.Tensor, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"samples": samples.contiguous()}, str(path))


def _worker_main(argv: list[str]) -> int:
    die_with_parent()  # a sweep killed with -9 takes its workers with it
    run_dir, threads = argv[0], int(argv[1])
    try:
        run_one(run_dir, threads=threads)
    except Exception as e:
        print(f"run {Path(run_dir).name} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SweepResult:
    """What :func:`run_sweep` returns: the output folder, run ids done before / now / failed."""

    out_dir: Path
    skipped: list[str]
    finished: list[str]
    failed: dict[str, str]
    seconds: float
    interrupted: list[str] = dataclasses.field(default_factory=list)  # ended by a signal: redone next time


def _prepare(sweep: Sweep, out: Path) -> list[tuple[str, Path]]:
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for r in sweep.runs():
        rid = r.run_id(sweep)
        d = out / "runs" / rid
        d.mkdir(parents=True, exist_ok=True)
        spec = r.to_dict(sweep)
        if not (d / "spec.json").is_file():
            write_json_atomic(d / "spec.json", spec)
        runs.append((rid, d))
    write_json_atomic(
        out / "sweep.json",
        {"name": sweep.name, "base": sweep.base, "concept": sweep.concept, "seeds": list(sweep.seeds),
         "configs": sweep.configs, "eval": sweep.eval, "runs": [rid for rid, _ in runs]},
    )  # fmt: skip
    return runs


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def run_sweep(
    sweep: Sweep | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    cpus_per_trial: int | None = None,
    report: bool = True,
    progress: bool = True,
) -> SweepResult:
    """Run every unfinished run of ``sweep`` into ``out_dir`` and write the report (module docstring).

    ``workers``: parallel runs (local backend; default: the sweep's ``workers``, else 1); each gets
    ``cores // workers`` torch threads. ``backend``: ``local`` or ``ray``; ``address``: the Ray cluster
    (``ray.init(address=...)``). Validation errors (unknown timestep type, missing images) are raised
    before anything runs, so finished runs are never touched.
    """
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray'; got {backend!r}")
    workers = workers if workers is not None else (sweep.workers or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1; got {workers!r}")
    if backend == "ray":
        require_ray()  # before anything is written into OUT
    validate(sweep)
    out = Path(out_dir)
    with SweepLock(out), interrupt_on_sigterm():
        return _sweep(sweep, out, workers=workers, backend=backend, address=address,
                      cpus_per_trial=cpus_per_trial, report=report, progress=progress)  # fmt: skip


def _sweep(sweep: Sweep, out: Path, *, workers, backend, address, cpus_per_trial, report, progress):
    """:func:`run_sweep` holding the folder's lock: prepare the run folders, run the unfinished ones."""
    runs = _prepare(sweep, out)
    todo = [(rid, d) for rid, d in runs if not (d / "result.json").is_file()]
    skipped = [rid for rid, d in runs if (d / "result.json").is_file()]
    t0 = time.perf_counter()
    if progress:
        print(f"sweep {sweep.name}: {len(runs)} runs, {len(skipped)} already done, {len(todo)} to run")
    if todo and is_pipeline_base(sweep.base):
        encode_pipeline_data(sweep, out)  # the data's latents and text embeddings, once for all runs
    interrupted: list[str] = []
    if backend == "local":
        failed, interrupted = _run_local(todo, workers, progress=progress)
    else:
        failed = _run_ray(todo, out, address=address, cpus_per_trial=cpus_per_trial or 1)
    finished = [rid for rid, d in todo if (d / "result.json").is_file()]
    for rid, _d in todo:
        if rid not in finished and rid not in failed and rid not in interrupted:
            failed[rid] = "no result written"
    res = SweepResult(out, skipped, finished, failed, time.perf_counter() - t0, interrupted)
    if report:
        write_report(out)
    return res


def _run_local(
    todo: list[tuple[str, Path]], workers: int, *, progress: bool
) -> tuple[dict[str, str], list[str]]:
    """Run each run in its own subprocess, ``workers`` at a time, threads = cores // workers; returns
    the failed runs (id → message) and the interrupted ones (their worker ended by a signal)."""
    threads = max(1, _cores() // workers)
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[PARENT_ENV] = str(os.getpid())
    failed: dict[str, str] = {}
    interrupted: list[str] = []
    procs: dict[str, subprocess.Popen] = {}

    def one(item: tuple[str, Path]) -> None:
        rid, d = item
        with open(d / "worker.log", "w") as log:
            p = subprocess.Popen(
                [sys.executable, "-m", "noiselevels.runs.sweep", "--worker", str(d), str(threads)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
            procs[rid] = p
            rc = p.wait()
        if signal_name(rc) is not None:  # SIGTERM / SIGINT / SIGKILL: interrupted, not failed
            interrupted.append(rid)
            if progress:
                print(f"  interrupted {rid} ({signal_name(rc)}); the next sweep redoes it", flush=True)
        elif rc != 0:
            err = d / "error.json"
            msg = json.loads(err.read_text())["error"] if err.is_file() else f"worker exited with status {rc}"
            failed[rid] = msg
            if progress:
                print(f"  failed {rid}: {msg}", flush=True)
        elif progress:
            print(f"  done {rid}", flush=True)

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        list(pool.map(one, todo))
    except KeyboardInterrupt:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failed, interrupted


def _run_ray(todo: list[tuple[str, Path]], out: Path, *, address: str | None, cpus_per_trial: int) -> dict:
    """One Ray Tune trial per run; each trial calls :func:`run_one` (threads = ``cpus_per_trial``)."""
    try:
        import ray
        from ray import tune
    except ImportError as e:
        raise ValueError("--backend ray needs Ray Tune: pip install 'noiselevels[ray]'") from e
    if not todo:
        return {}
    if not ray.is_initialized():
        kw: dict[str, Any] = {"address": address} if address else {}
        if not address and not os.environ.get("RAY_ADDRESS"):
            kw["num_cpus"] = _cores()
        ray.init(**kw, include_dashboard=False, log_to_driver=False)
    dirs = {rid: str(d.resolve()) for rid, d in todo}

    def trainable(config):
        res = run_one(config["run_dir"], threads=cpus_per_trial)
        return {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus_per_trial}),
        param_space={"run_dir": tune.grid_search(list(dirs.values()))},
        run_config=tune.RunConfig(storage_path=str((out / "ray").resolve()), name="trials", verbose=0),
        tune_config=tune.TuneConfig(reuse_actors=False),
    )
    grid = tuner.fit()
    failed = {}
    for r in grid:
        if r.error is not None:
            rid = Path(r.config["run_dir"]).name
            failed[rid] = str(r.error).strip().splitlines()[-1] if str(r.error).strip() else "trial failed"
    return failed


# ----------------------------------------------------------------------------------------------
# the demo
# ----------------------------------------------------------------------------------------------
def run_demo(out_dir: str | os.PathLike = "runs/demo/timestep-types", *, workers: int | None = None) -> Path:
    """``make demo``'s timestep-type study: run ``examples/sweeps/timestep-types-demo.toml`` (resuming
    if ``out_dir`` holds a part of it) and return the path of its ``report.md``."""
    if not DEMO_SWEEP.is_file():
        raise ValueError(f"the demo sweep {DEMO_SWEEP} is missing (run from a source checkout)")
    sweep = load_sweep(DEMO_SWEEP)
    if workers is None:
        workers = max(1, min(_cores(), 4))
    run_sweep(sweep, out_dir, workers=workers)
    return Path(out_dir) / "report.md"


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2:]))
    print("usage: python -m noiselevels.runs.sweep --worker RUN_DIR THREADS (internal)", file=sys.stderr)
    sys.exit(2)
