"""The trainer: one loop for CPU, one GPU, many GPUs (``accelerate launch``), with the loss profile over λ.

A run is described by a TOML file (``noiselevels.runs.config``: [noise], [data], [model], [train],
[adaptive], [spectral]). ``train(config, out_dir)`` trains with AdamW (linear warm-up to ``lr``, then
constant), keeps an EMA of the weights, clips the gradient norm — the one training step of
``noiselevels.runs.loop`` — and writes into ``out_dir``::

    config.json, config.toml   the resolved configuration (presets expanded, defaults filled in)
    log.jsonl                  one record per log interval: step, loss, lr, images/s and (with
                               ``grad_clip`` > 0) grad_norm, the interval's mean gradient norm
                               before clipping; the last record may be a final partial interval
    loss_profile.json/.npz     per log interval, the mean and variance of the ε-unit loss ‖ε̂−ε‖²/D
                               in ``profile_bins`` bins of λ over the training range
    loss_profile.png           the profile plotted (noiselevels.plots.plot_loss_profile)
    checkpoints/               atomic safetensors checkpoints (noiselevels.runs.checkpoint)
    samples/                   image grids every ``sample_every`` steps (0 = never)

**The loss profile** (``noiselevels.runs.profile``) bins the unweighted ε-unit loss of every sample by
its λ — the diagnostic that shows which levels the effective weighting W(λ) = p(λ)·w(λ) neglects.

**Resuming.** ``train(..., resume=True)`` (``noiselevels train --resume --out DIR``) restores the
weights, EMA, optimizer, the objective's noise generator, the global torch RNG, the data iterator's
position, the adaptive sampler and the partially accumulated log interval from the newest checkpoint,
so a resumed run reproduces the loss curve of an uninterrupted run with the same seed (bitwise on
CPU). ``steps`` may be raised on resume to train longer.

**Robustness.** Ctrl-C (SIGINT) finishes the current step, saves a checkpoint and returns. A
non-finite loss stops the run before the optimizer step with a ``NonFiniteLossError`` naming the λ
range of the offending samples; the last good checkpoint is left untouched.

**Multi-GPU / multi-node.** The loop is built on 🤗 accelerate. ``noiselevels train CONFIG --out DIR``
runs single-process (on CPU when no GPU is visible); ``accelerate launch --multi_gpu --num_processes 4
-m noiselevels train CONFIG --out DIR`` runs data-parallel on GPUs (add ``--num_machines``,
``--machine_rank``, ``--main_process_ip`` for several nodes). Several CPU processes (gloo) are
started with ``torchrun --standalone --nproc_per_node 2 -m noiselevels train CONFIG --out DIR``
(``accelerate launch --cpu`` starts only one process without an MPI setup); accelerate picks the
process group up from the environment either way. ``batch_size`` is the global batch, split
evenly over the processes; each process draws its own data order and noise (seeded from ``seed`` and
its rank); losses and the loss profile are reduced over processes; only the main process writes.

The configuration, loss profile and run-loading names are re-exported here (``from
noiselevels.runs.train import TrainConfig, LossProfile, load_run, generate`` keeps working).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from noiselevels.runs.adaptive import sampler_state
from noiselevels.runs.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    optimizer_state_from_flat,
    optimizer_state_to_flat,
    save_checkpoint,
    write_json_atomic,
)
from noiselevels.runs.config import (
    PRECISIONS,
    DataConfig,
    TrainConfig,
    TrainOptions,
    build_adaptive,
    build_model_for,
    check_int,
    load_train_config,
    noise_config,
    plain,
    to_toml,
)
from noiselevels.runs.loop import EMA, LogInterval, NonFiniteLossError, TrainStep, warmup_lr
from noiselevels.runs.profile import LossProfile, nan_to_none, profile_range
from noiselevels.runs.run import Run, default_sigma_range, generate, load_run, sample_grid
from noiselevels.spectral import SpectralRun, resolve_spectral_config
from noiselevels.training.adaptive import AdaptiveSampler

__all__ = [
    "DataConfig",
    "LossProfile",
    "NonFiniteLossError",
    "Run",
    "TrainConfig",
    "TrainOptions",
    "TrainResult",
    "build_adaptive",
    "build_model_for",
    "default_sigma_range",
    "generate",
    "load_run",
    "load_train_config",
    "noise_config",
    "profile_range",
    "to_toml",
    "train",
]


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns: where it wrote, how far it got, and the per-interval log records.

    ``log`` holds the complete log intervals; ``final_record`` is the last record written to
    ``log.jsonl`` — the final partial interval's when the run stopped inside one (None if nothing was
    logged)."""

    out_dir: Path
    step: int
    status: str  # "completed" | "interrupted"
    log: list[dict[str, Any]]
    checkpoint: Path | None
    images_per_second: float
    main_process: bool = True
    final_record: dict[str, Any] | None = None


class _SigintFlag:
    """Turns the first Ctrl-C into a flag checked between steps; a second one interrupts at once."""

    def __init__(self):
        self.hit = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _split_state(state: Mapping[str, Any], prefix: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors, rest = {}, {}
    for k, v in state.items():
        if isinstance(v, Tensor):
            tensors[f"{prefix}{k}"] = v.detach().cpu()
        else:
            rest[k] = v
    return tensors, rest


def _write_log(out: Path, log: list[dict[str, Any]]) -> None:
    tmp = out / ".log.jsonl.tmp"
    tmp.write_text("".join(json.dumps(nan_to_none(r)) + "\n" for r in log))
    os.replace(tmp, out / "log.jsonl")


def _resolve_config(
    config, out: Path, *, resume: bool, steps: int | None, force: bool = False
) -> TrainConfig:
    """The configuration to train with: the stored one when resuming, else ``config``; ``steps``
    overrides [train] steps. Refuses to resume without a checkpoint or to overwrite one, and (unless
    ``force``) to overwrite a run folder whose checkpoints are unusable."""
    if resume:
        stored = out / "config.json"
        if not stored.is_file():
            raise ValueError(f"cannot resume: {stored} does not exist (not a run folder?)")
        cfg = load_train_config(stored)
        if latest_checkpoint(out / "checkpoints") is None:
            raise CheckpointError(f"cannot resume: no checkpoint under {out / 'checkpoints'}")
    else:
        cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config or {})
        if latest_checkpoint(out / "checkpoints") is not None:
            raise ValueError(
                f"run folder {out} already holds checkpoints; continue it with --resume or choose a new --out"
            )
        _check_not_a_run(out, force=force)
    if steps is not None:
        cfg = cfg.replace(train=dataclasses.replace(cfg.train, steps=check_int("train", "steps", steps, 1)))
    return cfg


def _check_not_a_run(out: Path, *, force: bool) -> None:
    """A folder holding another run's log or checkpoints (none loadable) is not overwritten unless
    ``force``; with ``force`` its checkpoints are removed first."""
    ckpts = out / "checkpoints"
    old = [n for n in ("log.jsonl",) if (out / n).is_file()]  # a config alone: a run that never logged
    if ckpts.is_dir() and any(ckpts.iterdir()):
        old.append("checkpoints/ (none loadable)")
    if not old:
        return
    if not force:
        raise ValueError(
            f"run folder {out} already holds a run ({', '.join(old)}); choose a new --out, or overwrite "
            "it with --force"
        )
    shutil.rmtree(ckpts, ignore_errors=True)


def _with_sampler(objective, sampler: AdaptiveSampler | None):
    """The objective drawing its levels from ``sampler`` (unchanged when None)."""
    if sampler is None:
        return objective
    if "sampler" not in {f.name for f in dataclasses.fields(objective)}:
        raise ValueError("this Objective has no 'sampler' field; adaptive sampling is not supported")
    return dataclasses.replace(objective, sampler=sampler)


class _Trainer:
    """One invocation of :func:`train`: the pieces it builds (``__init__``), the resume, the loop and
    its log / sample / checkpoint actions, each a small method."""

    def __init__(self, cfg: TrainConfig, out: Path, *, sampler, model, callback, progress: bool):
        from accelerate import Accelerator

        self.out, self.callback, self.progress = out, callback, progress
        opts = self.opts = cfg.train
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(), mixed_precision=PRECISIONS[opts.precision]
        )
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.main = self.accelerator.is_main_process
        if cfg.data.batch_size % self.world:
            raise ValueError(
                f"[data] batch_size {cfg.data.batch_size} must be divisible by the number of processes "
                f"{self.world}"
            )
        self.device = self.accelerator.device
        self.train_set = cfg.data.load("train")
        self.meta = self.train_set.metadata()
        self.nc = noise_config(cfg.noise)
        objective = self.nc.objective()
        if opts.stratified:
            objective = dataclasses.replace(objective, stratified=True)
        if cfg.adaptive and sampler is None:
            sampler = build_adaptive(cfg.adaptive, objective)
        self.sampler: AdaptiveSampler | None = sampler
        self.objective = _with_sampler(objective, sampler)
        self.spec: SpectralRun | None = None
        if cfg.spectral is not None:  # per-instance schedules: the model gets (λ_min, λ_max) as ``extra``
            self.spec = SpectralRun.fit(cfg.spectral, self.train_set.data, self.train_set.labels)
            cfg = cfg.replace(
                spectral=resolve_spectral_config(cfg.spectral), model={"extra_dim": 2, **cfg.model}
            )
        self.cfg = cfg
        self._build_model(model)
        self._build_state()

    def _build_model(self, model) -> None:
        """The network (seeded: identical initial weights on every process), its EMA copy, AdamW."""
        cfg, opts = self.cfg, self.opts
        torch.manual_seed(opts.seed)
        if model is None:
            model, model_cfg = build_model_for(cfg.model, self.meta)
        else:
            c = getattr(model, "config", None)
            model_cfg = c.to_dict() if hasattr(c, "to_dict") else dict(cfg.model)
        self.conditional = model_cfg.get("num_classes") is not None
        if self.conditional and self.train_set.labels is None:
            raise ValueError(f"[model] is class-conditional but data set {cfg.data.name!r} has no labels")
        self.resolved = cfg.replace(noise=plain(self.nc.to_dict()), model=model_cfg)
        self.ema = copy.deepcopy(model).requires_grad_(False).eval() if opts.ema_decay > 0 else None
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=warmup_lr(opts.lr, opts.warmup, 0),
            weight_decay=opts.weight_decay,
            betas=(0.9, 0.999),
        )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        if self.ema is not None:
            self.ema.to(self.device)
        self.raw = self.accelerator.unwrap_model(self.model)

    def _build_state(self) -> None:
        """Data order, noise generator, RNG, loss profile, log and the training step."""
        opts, rank, acc = self.opts, self.rank, self.accelerator
        self.data_iter = self.train_set.batches(
            self.cfg.data.batch_size // self.world, seed=opts.seed * 1_000_003 + rank
        )
        # a CPU generator: densities draw λ on the CPU, and a run's noise is the same on any device
        self.noise_gen = torch.Generator().manual_seed(opts.seed * 7919 + 17 + rank)
        torch.manual_seed(opts.seed * 104_729 + 31 + rank)  # dropout, classifier-free label dropout
        self.profile = LossProfile(
            *profile_range(self.objective.density or self.nc.density), opts.profile_bins
        )
        if self.sampler is not None and callable(getattr(self.sampler, "profile_overlay", None)):
            self.profile.overlay = self.sampler.profile_overlay  # [adaptive]
        self.log: list[dict[str, Any]] = []
        self.interval = LogInterval()
        self.step = 0
        all_finite = None
        if self.world > 1:
            all_finite = lambda f: acc.reduce(f.float().reshape(1), "min").bool().all()  # noqa: E731
        ckpts = self.out / "checkpoints"
        self.train_step = TrainStep(
            self.optimizer,
            self.model.parameters(),
            lr=opts.lr,
            warmup=opts.warmup,
            grad_clip=opts.grad_clip,
            ema=None if self.ema is None else EMA(self.ema, self.raw, opts.ema_decay),
            backward=acc.backward,
            clip_grad_norm=acc.clip_grad_norm_,
            all_finite=all_finite,
            note=lambda: f"run stopped, last good checkpoint: {latest_checkpoint(ckpts) or 'none'}",
            check_grad=opts.precision != "fp16",  # fp16's loss scaler skips inf-gradient steps itself
        )

    def restore(self) -> None:
        """Resume from the newest checkpoint (module docstring: everything that makes it bitwise)."""
        ck = load_checkpoint(self.out / "checkpoints")
        st, rank = ck.state, self.rank
        if st.get("world_size", 1) != self.world:
            raise ValueError(
                f"cannot resume a run written by {st.get('world_size')} process(es) with {self.world}; "
                "use the same number of processes"
            )
        try:
            self.raw.load_state_dict(ck.model)
            if self.ema is not None and ck.ema is not None:
                self.ema.load_state_dict(ck.ema)
            self.optimizer.load_state_dict(optimizer_state_from_flat(ck.optimizer, st["optimizer"]))
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"cannot resume: checkpoint {ck.path} does not fit the run's config.json ({first})"
            ) from None
        if ck.step > self.opts.steps:
            raise ValueError(
                f"cannot resume: the run is at step {ck.step}, past --steps {self.opts.steps}; "
                f"give --steps >= {ck.step} (the stored configuration is left as it is)"
            )
        self.step = ck.step
        self.data_iter.load_state_dict({**st["data_iter"], "seed": self.data_iter.seed})
        self.noise_gen.set_state(ck.extra[f"rng.noise.{rank}"])
        torch.set_rng_state(ck.extra[f"rng.torch.{rank}"])
        if torch.cuda.is_available() and f"rng.cuda.{rank}" in ck.extra:
            torch.cuda.set_rng_state(ck.extra[f"rng.cuda.{rank}"])
        self.profile.load_state_dict(st["profile"])
        self.log = list(st["log"])
        self.interval = LogInterval.from_dict(st["interval"])
        if self.sampler is not None:
            self.sampler.load_state_dict(sampler_state(st, ck.extra))

    def write_run_files(self) -> None:
        """config.json / .toml, data.json and (per-instance runs) spectral.json — main process only."""
        if not self.main:
            return
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", self.resolved.to_dict())
        (out / "config.toml").write_text(to_toml(self.resolved.to_dict()))
        write_json_atomic(out / "data.json", self.meta)
        if self.spec is not None:
            write_json_atomic(out / "spectral.json", nan_to_none(self.spec.to_dict()))

    def checkpoint(self) -> Path | None:
        """Save a checkpoint (every process's RNG states, gathered; only the main process writes)."""
        states = {"noise": self.noise_gen.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state()
        if self.world > 1:
            from accelerate.utils import gather_object

            all_states = gather_object([states])
        else:
            all_states = [states]
        if not self.main:
            self.accelerator.wait_for_everyone()
            return None
        extra = {f"rng.{k}.{r}": v for r, s in enumerate(all_states) for k, v in s.items()}
        opt_tensors, opt_meta = optimizer_state_to_flat(self.optimizer.state_dict())
        state = {
            "world_size": self.world,
            "optimizer": opt_meta,
            "data_iter": self.data_iter.state_dict(),
            "profile": self.profile.state_dict(),
            "log": self.log,
            "interval": self.interval.to_dict(),
        }
        if self.sampler is not None:
            s_tensors, s_rest = _split_state(self.sampler.state_dict(), "sampler.")
            extra.update(s_tensors)
            state["sampler"] = s_rest
        path = save_checkpoint(
            self.out / "checkpoints",
            self.step,
            model=self.raw.state_dict(),
            ema=None if self.ema is None else self.ema.state_dict(),
            optimizer=opt_tensors,
            extra=extra,
            state=nan_to_none(state),
            keep=self.opts.keep_checkpoints,
        )
        self.accelerator.wait_for_everyone()
        return path

    def one_step(self):
        """Draw a batch and its noise, take the training step, feed the profile / sampler / interval."""
        acc, world = self.accelerator, self.world
        x, y = next(self.data_iter)
        x = x.to(self.device, non_blocking=True)
        cond = {"labels": y.to(self.device)} if self.conditional else {}
        if self.spec is not None:  # spectral: each example's λ under its own schedule, (λ_min, λ_max) → extra
            lam_i, extra = self.spec.draw(x, generator=self.noise_gen)
            cond = {**cond, "logsnr": lam_i, "extra": extra}
        self.train_step.set_lr(self.step)
        with acc.autocast():
            res = self.objective(self.model, x, generator=self.noise_gen, **cond)
        loss = res.loss.float().mean()
        out = self.train_step(self.step, loss, res.loss, res.logsnr)
        self.step = out.step
        lam_d, mse_d = res.logsnr.detach(), res.eps_mse.detach()
        if world > 1:
            lam_d, mse_d = acc.gather(lam_d), acc.gather(mse_d)
        if self.main:
            self.profile.add(lam_d, mse_d)
        if self.sampler is not None:
            self.sampler.update(lam_d, mse_d)
        loss_g = acc.reduce(loss.detach().reshape(1), "mean") if world > 1 else loss.detach()
        self.interval.add(float(loss_g), out.grad_norm)
        self.imgs_interval += self.cfg.data.batch_size
        return res

    def write_log(self, *, regular: bool, final: bool) -> dict[str, Any]:
        """Close (``regular``) or write without closing (the final partial interval) the log interval."""
        dt = time.perf_counter() - self.t_interval
        rec = {
            "step": self.step,
            "loss": self.interval.mean_loss(),
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_second": self.imgs_interval / dt if dt > 0 else float("nan"),
        }
        if self.interval.grad_n:
            rec["grad_norm"] = self.interval.grad_norm / self.interval.grad_n
        if regular:
            # a closed interval: part of the state, so a resumed run logs exactly the same
            self.total_time += dt
            self.total_imgs += self.imgs_interval
            self.log.append(rec)
            self.interval = LogInterval()
            if self.main:
                self.profile.close(self.step)
                _write_log(self.out, self.log)
                ckpt_due = bool(self.opts.ckpt_every and self.step % self.opts.ckpt_every == 0)
                self.profile.save(self.out, plot=final or ckpt_due)
            self.t_interval, self.imgs_interval = time.perf_counter(), 0
        elif self.main:
            # the last, partial interval of this invocation: written, but left open in the
            # checkpoint so that resuming continues the interval instead of splitting it
            self.total_time += dt
            self.total_imgs += self.imgs_interval
            _write_log(self.out, [*self.log, rec])
            self.profile.save(self.out, pending=self.profile.snapshot(self.step))
        return rec

    def run(self) -> TrainResult:
        """The loop: steps until ``steps`` or Ctrl-C, logging, sampling and checkpointing on schedule."""
        opts, main = self.opts, self.main
        bar = None
        if self.progress and main:
            from tqdm.auto import tqdm

            bar = tqdm(total=opts.steps, initial=self.step, desc="train", dynamic_ncols=True, smoothing=0.1)
        last_ckpt, final_rec, status = None, None, "completed"
        self.t_interval, self.imgs_interval = time.perf_counter(), 0
        self.total_time, self.total_imgs = 0.0, 0
        self.model.train()
        with _SigintFlag() as sigint:
            while self.step < opts.steps:
                res = self.one_step()
                if self.callback is not None:
                    self.callback(self.step, res)
                if bar is not None:
                    bar.update(1)
                stop = self._stop_requested(sigint.hit)
                regular = self.step % opts.log_every == 0
                final = self.step == opts.steps or stop
                if regular or final:
                    final_rec = self.write_log(regular=regular, final=final)
                    if main and bar is not None:
                        bar.set_postfix(
                            loss=f"{final_rec['loss']:.4f}", img_s=f"{final_rec['images_per_second']:.0f}"
                        )
                if opts.sample_every and self.step % opts.sample_every == 0 and main:
                    grid_path = self.out / "samples" / f"step_{self.step:08d}.png"
                    sample_grid(
                        self.ema if self.ema is not None else self.raw,
                        self.nc,
                        self.meta,
                        grid_path,
                        spectral=self.spec,
                    )
                if (opts.ckpt_every and self.step % opts.ckpt_every == 0) or final:
                    last_ckpt = self.checkpoint()
                if stop:
                    status = "interrupted"
                    break
        if bar is not None:
            bar.close()
        return self._result(last_ckpt, final_rec, status)

    def _stop_requested(self, hit: bool) -> bool:
        """Ctrl-C on any process stops every process."""
        if self.world > 1:
            flag = torch.tensor([float(hit)], device=self.device)
            return bool(self.accelerator.reduce(flag, "max").item())
        return hit

    def _result(self, last_ckpt: Path | None, final_rec, status: str) -> TrainResult:
        if last_ckpt is None and self.main:
            last_ckpt = latest_checkpoint(self.out / "checkpoints")
        self.accelerator.end_training()
        ips = self.total_imgs / self.total_time if self.total_time > 0 else float("nan")
        return TrainResult(
            out_dir=self.out,
            step=self.step,
            status=status,
            log=self.log,
            checkpoint=last_ckpt,
            images_per_second=ips,
            main_process=self.main,
            final_record=final_rec if final_rec is not None else (self.log[-1] if self.log else None),
        )


@torch.enable_grad()
def train(
    config: TrainConfig | Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    steps: int | None = None,
    progress: bool = True,
    sampler: AdaptiveSampler | None = None,
    callback: Callable[[int, Any], None] | None = None,
    model=None,
    force: bool = False,
) -> TrainResult:
    """Train a model as configured, writing the run into ``out_dir`` (see the module docstring).

    Args:
        config: a ``TrainConfig`` or its dict form (the TOML's tables).
        out_dir: the run folder (created). With ``resume=True`` the newest checkpoint there is
            restored and the stored configuration is used (``config`` may then be None; its
            [train] steps is still taken from ``steps`` when given).
        steps: override ``[train] steps`` (the total number of optimizer steps).
        progress: show a tqdm progress bar (main process only).
        sampler: an adaptive noise-level sampler (``noiselevels.training.adaptive.AdaptiveSampler``)
            instead of [adaptive].
        callback: called as ``callback(step, objective_output)`` after every step (tests, probes).
        model: a ready ``torch.nn.Module`` to train instead of building [model] (its config is
            recorded only if it has ``.config.to_dict()``).
        force: train into a folder that holds another run whose checkpoints cannot be loaded
            (its checkpoints are removed); without it that is a ``ValueError``.

    Returns a ``TrainResult``. Raises ``NonFiniteLossError`` on a NaN/inf loss.
    """
    out = Path(out_dir)
    cfg = _resolve_config(config, out, resume=resume, steps=steps, force=force)
    trainer = _Trainer(cfg, out, sampler=sampler, model=model, callback=callback, progress=progress)
    if resume:
        trainer.restore()
    trainer.write_run_files()
    return trainer.run()
