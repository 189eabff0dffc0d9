"""LoRA fine-tuning of a diffusers pipeline's denoiser on a captioned image folder, at any timestep type.

What a fine-tuner does with kohya / ai-toolkit / OneTrainer / SimpleTuner — 20–30 captioned images of a
new concept, a LoRA on the UNet or transformer — with the noise levels of any of the project's timestep
types, presets, custom ``[noise]`` tables or adaptive samplers.

**Data** (``noiselevels.runs.captions``, ``noiselevels.runs.latent_cache``): the folder's images and
same-name ``.txt`` captions (``trigger`` by ai-toolkit's rule), aspect-ratio buckets around ``resolution``
(default the family's native size) with a size step of VAE factor × the denoiser's latent multiple
(:func:`latent_multiple`), VAE latents and text embeddings computed once into the cache (a second run
with the same images and model encodes nothing). Each step draws one bucket with probability ∝ its
image count and ``batch_size`` of its images uniformly with replacement (kohya's batches are also
single-bucket); ``caption_dropout`` replaces a caption by ``""`` (its embedding is cached too).

**Noise levels** exactly as ``noiselevels.runs.finetune`` does for MNIST: ``resolve_noise`` keeps the
timestep type's density p(λ) and ε-unit weighting w(λ) with the family's process and parameterisation
(``latent_model.noise``: DDPM ε / v for SD, flow velocity for SD3 / Flux), and
``noiselevels.training.objective.Objective`` draws λ, noises the latents and weights the loss; the model is
``latent_model`` itself (``forward(z, λ, **cond)`` in the family's own timestep convention). A preset
with an ``image_seq_len`` parameter (Flux / SD3 dynamic shift: ``ai-toolkit:flux_shift``,
``kohya:flux_shift``, ``onetrainer:dynamic``, ``simpletuner:*`` with ``flow_schedule_auto_shift``) is built
per bucket with that bucket's ``latent_model.image_seq_len(h, w)`` — the tools compute μ from the batch's
token count in the same way — unless the table fixes ``preset_params.image_seq_len``; ``ai-toolkit:shift``
only when the pipeline's scheduler shifts dynamically (:func:`bucket_noise`). The OneTrainer and
SimpleTuner presets use it only with their own flags on (``dynamic_timestep_shifting``,
``flow_schedule_auto_shift``).

**Training step**: ``noiselevels.runs.loop.TrainStep`` (linear warm-up, finite-loss check, gradient norm
clipped at 1, AdamW on the adapter only, optional ``EMA`` of the adapter weights, which are then the ones
saved). ``gradient_checkpointing`` calls the network's ``enable_gradient_checkpointing``;
``mixed_precision`` ``bf16`` / ``fp16`` runs the forward pass under ``torch.autocast`` on CUDA (fp16 with a
gradient scaler); on a CPU both are accepted and recorded but not applied (``finetune.json`` says so).

**Outputs** in ``out_dir``: ``adapter/`` (``noiselevels.runs.families.lora.save_lora``:
``pytorch_lora_weights.safetensors`` for diffusers' ``load_lora_weights``, or ``lora_kohya.safetensors``;
``lora.json``), ``finetune.json`` (base, family, data, buckets, noise, hyper-parameters, cache counts,
times), ``log.jsonl``, ``loss_profile.json``, and while training ``checkpoint/`` (a
``noiselevels.runs.checkpoint`` folder: adapter, optimizer, EMA, generator, loss profile, log, step and the
configuration; written atomically every ``checkpoint_every`` steps): a run started again with the same
``out_dir`` and configuration (``resume=True``) continues from it and ends with the same adapter as an
uninterrupted run; another configuration is refused. The checkpoint is removed at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from noiselevels.noise import NoiseConfig
from noiselevels.presets import PRESETS, qualified_name
from noiselevels.runs.captions import bucket_step, cover_crop, drop_captions, read_caption_folder
from noiselevels.runs.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    optimizer_state_from_flat,
    optimizer_state_to_flat,
    save_checkpoint,
    write_json_atomic,
)
from noiselevels.runs.config import build_adaptive
from noiselevels.runs.families import load_pipeline, resolve_pipeline
from noiselevels.runs.families.lora import LORA_FORMATS, add_lora, check_format, save_lora
from noiselevels.runs.finetune import resolve_noise
from noiselevels.runs.latent_cache import (
    LatentCache,
    LatentData,
    default_cache_dir,
    model_identity,
    prepare_latent_data,
)
from noiselevels.runs.loop import EMA, LogInterval, TrainStep, log_due, record_levels
from noiselevels.runs.profile import LossProfile, nan_to_none, profile_range

__all__ = ["LatentFinetuneResult", "bucket_noise", "finetune_latent", "latent_multiple"]

MIXED_PRECISION = ("no", "bf16", "fp16")
_FLUX_KOHYA_TARGETS_NOTE = "attention projections only (the layers diffusers' kohya reader maps for Flux)"


def latent_multiple(latent_model) -> int:
    """What the denoiser needs the latent's height and width to be a multiple of: 2^(down-sampling
    stages) for a UNet, the patch size for SD3, 2 for Flux (its 2×2 packing)."""
    cfg = latent_model.network.config
    if latent_model.family in ("sd", "sdxl"):
        return 2 ** (len(cfg.down_block_types) - 1)
    if latent_model.family == "flux":
        return 2 * int(cfg.get("patch_size", 1))
    return int(cfg.get("patch_size", 1))


def bucket_noise(timestep_type: Any, base_noise: NoiseConfig, image_seq_len: int, *,
                 dynamic_shifting: bool = False) -> NoiseConfig:  # fmt: skip
    """The noise configuration of one bucket: ``resolve_noise(timestep_type, base_noise)``, with the
    bucket's ``image_seq_len`` passed to a preset that takes one (module docstring). ``ai-toolkit:shift``
    gets it only with ``dynamic_shifting`` (the pipeline scheduler's ``use_dynamic_shifting``, Flux's):
    ai-toolkit's ``shift`` grid is shifted dynamically exactly when its scheduler is
    (``toolkit/samplers/custom_flowmatch_sampler.py`` 134–161), by the static ``shift`` otherwise."""
    name, params = None, {}
    if isinstance(timestep_type, str):
        name = qualified_name(timestep_type)
    elif isinstance(timestep_type, Mapping) and isinstance(timestep_type.get("preset"), str):
        name, params = timestep_type["preset"], dict(timestep_type.get("preset_params", {}))
    info = PRESETS.get(name) if name else None
    if name == "ai-toolkit:shift" and not dynamic_shifting:
        info = None
    if info is None or "image_seq_len" not in info.params or "image_seq_len" in params:
        return resolve_noise(timestep_type, base_noise)
    table = dict(timestep_type) if isinstance(timestep_type, Mapping) else {"preset": name}
    table["preset_params"] = {**params, "image_seq_len": int(image_seq_len)}
    return resolve_noise(table, base_noise)


@dataclasses.dataclass
class LatentFinetuneResult:
    """What :func:`finetune_latent` returns: the latent model with the trained adapter (eval mode), the
    encoded data, the noise configuration per bucket, the run folder, the log and the training time."""

    model: nn.Module
    data: LatentData
    noise: dict[tuple[int, int], NoiseConfig]
    out_dir: Path | None
    log: list[dict[str, Any]]
    train_seconds: float
    info: dict[str, Any]


def _check(steps, batch_size, warmup, seed, lr, caption_dropout, mixed_precision, lora_format, ema) -> None:
    for name, v, lo in (("steps", steps, 1), ("batch_size", batch_size, 1), ("warmup", warmup, 0),
                        ("seed", seed, 0)):  # fmt: skip
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}; got {v!r}")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr <= 1):
        raise ValueError(f"lr must be a number in (0, 1]; got {lr!r}")
    if not (isinstance(caption_dropout, (int, float)) and 0 <= caption_dropout <= 1):
        raise ValueError(f"caption dropout must be a probability in [0, 1]; got {caption_dropout!r}")
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(
            f"mixed precision must be one of {', '.join(MIXED_PRECISION)}; got {mixed_precision!r}"
        )
    if lora_format not in LORA_FORMATS:
        raise ValueError(f"LoRA format must be one of {', '.join(LORA_FORMATS)}; got {lora_format!r}")
    if ema is not None and not (isinstance(ema, float) and 0 < ema < 1):
        raise ValueError(f"ema must be a decay in (0, 1) or None; got {ema!r}")


def _load(base: Any, dtype, device):
    """(latent model, its pipeline folder or None)."""
    if isinstance(base, nn.Module) and hasattr(base, "encode_images"):
        name = getattr(getattr(base, "pipe", None), "name_or_path", None)
        return base, (Path(name) if name and Path(name).is_dir() else None)
    folder = resolve_pipeline(base)
    return load_pipeline(folder, dtype=dtype, device=device), folder


def _default_targets(lm, targets, lora_format) -> tuple[list[str], str | None]:
    if targets is not None:
        return list(targets), None
    tg = list(lm.default_lora_targets)
    if lora_format == "kohya" and lm.family == "flux":
        return [t for t in tg if t.startswith("attn.")], _FLUX_KOHYA_TARGETS_NOTE
    return tg, None


def _sdxl_time_ids(data: LatentData, i: int) -> Tensor:
    """SDXL's micro-conditioning for image i: (original h, w, crop top, left, target h, w), as diffusers'
    train_text_to_image_lora_sdxl.py ``compute_time_ids`` builds it."""
    (w, h), (bw, bh) = data.items[i].size, data.buckets[i]
    _, _, left, top = cover_crop((w, h), (bw, bh))
    return torch.tensor([h, w, top, left, bh, bw], dtype=torch.float32)


@dataclasses.dataclass
class _Sampler:
    """Batches: a bucket ∝ its size, then ``batch_size`` of its images; captions with dropout."""

    data: LatentData
    batch_size: int
    caption_dropout: float
    generator: torch.Generator
    time_ids: bool

    def __post_init__(self):
        self.groups = list(self.data.by_bucket().items())
        self.weights = torch.tensor([len(ix) for _, ix in self.groups], dtype=torch.float64)

    def draw(self, device, dtype) -> tuple[tuple[int, int], Tensor, dict[str, Tensor]]:
        g = self.generator
        bucket, ix = self.groups[int(torch.multinomial(self.weights, 1, generator=g))]
        pick = [ix[int(j)] for j in torch.randint(0, len(ix), (self.batch_size,), generator=g)]
        x0 = torch.stack([self.data.latents[i] for i in pick]).to(device=device, dtype=dtype)
        caps = drop_captions([self.data.items[i].caption for i in pick], self.caption_dropout, g)
        text = self.data.text_batch(caps, device)
        cond = {k: v.to(dtype) if v.is_floating_point() else v for k, v in text.items()}
        if self.time_ids:
            cond["time_ids"] = torch.stack([_sdxl_time_ids(self.data, i) for i in pick]).to(device, dtype)
        return bucket, x0, cond


class _ScaledOptimizer:
    """fp16 training: the optimizer behind a gradient scaler, with TrainStep's optimizer interface."""

    def __init__(self, opt, scaler):
        self.opt, self.scaler, self.param_groups = opt, scaler, opt.param_groups

    def step(self):
        self.scaler.step(self.opt)
        self.scaler.update()

    def zero_grad(self, set_to_none=True):
        self.opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return self.opt.state_dict()

    def load_state_dict(self, sd):
        self.opt.load_state_dict(sd)


def _precision(mixed_precision: str, device: torch.device, opt, params):
    """(autocast context factory, optimizer for TrainStep, backward, clip function, applied?)."""
    if mixed_precision == "no" or device.type != "cuda":
        return contextlib.nullcontext, opt, None, None, False
    dt = torch.bfloat16 if mixed_precision == "bf16" else torch.float16
    ctx = lambda: torch.autocast("cuda", dtype=dt)  # noqa: E731
    if mixed_precision == "bf16":
        return ctx, opt, None, None, True
    scaler = torch.amp.GradScaler("cuda")

    def clip(ps, max_norm):
        scaler.unscale_(opt)
        return torch.nn.utils.clip_grad_norm_(ps, max_norm)

    return ctx, _ScaledOptimizer(opt, scaler), lambda loss: scaler.scale(loss).backward(), clip, True


# ----------------------------------------------------------------------------------------------
# checkpoints (resume)
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _State:
    """Everything a resumed run needs besides the data and the model."""

    params: list[nn.Parameter]
    opt: Any
    ema_params: list[Tensor] | None
    generator: torch.Generator
    profile: LossProfile
    sampler: Any
    log: list[dict[str, Any]]
    interval: LogInterval
    step: int = 0
    config: dict[str, Any] = dataclasses.field(default_factory=dict)  # what a resumed run must match

    def save(self, root: Path) -> None:
        opt_t, opt_meta = optimizer_state_to_flat(self.opt.state_dict())
        extra = {"generator": self.generator.get_state()}
        state = {"optimizer": opt_meta, "profile": self.profile.state_dict(), "log": self.log,
                 "interval": self.interval.to_dict(), "config": self.config}  # fmt: skip
        if self.sampler is not None:
            s = self.sampler.state_dict()
            extra.update({f"sampler.{k}": v.detach().cpu() for k, v in s.items() if isinstance(v, Tensor)})
            state["sampler"] = {k: v for k, v in s.items() if not isinstance(v, Tensor)}
        ema = None if self.ema_params is None else {str(i): p for i, p in enumerate(self.ema_params)}
        model = {str(i): p.detach() for i, p in enumerate(self.params)}
        save_checkpoint(root, self.step, model=model, ema=ema, optimizer=opt_t, extra=extra,
                        state=nan_to_none(state), keep=1)  # fmt: skip

    def use_ema(self) -> None:
        """Put the EMA weights (if any) into the adapter: they are the ones saved."""
        if self.ema_params is not None:
            with torch.no_grad():
                for p, e in zip(self.params, self.ema_params):
                    p.copy_(e)

    def load(self, root: Path) -> bool:
        path = latest_checkpoint(root)
        if path is None:
            return False
        ck = load_checkpoint(path)
        old = ck.state.get("config", {})
        diff = sorted(k for k in set(old) | set(self.config) if old.get(k) != self.config.get(k))
        if diff:
            k = diff[0]
            raise ValueError(
                f"{root} was written by another configuration ({k} {old.get(k)!r}, now "
                f"{self.config.get(k)!r}): remove it, or use another --out"
            )
        with torch.no_grad():
            for i, p in enumerate(self.params):
                p.copy_(ck.model[str(i)])
            for i, p in enumerate(self.ema_params or []):
                p.copy_(ck.ema[str(i)])
        self.opt.load_state_dict(optimizer_state_from_flat(ck.optimizer, ck.state["optimizer"]))
        self.generator.set_state(ck.extra["generator"])
        self.profile.load_state_dict(ck.state["profile"])
        if self.sampler is not None:
            s = {k[len("sampler."):]: v for k, v in ck.extra.items() if k.startswith("sampler.")}
            self.sampler.load_state_dict({**ck.state.get("sampler", {}), **s})
        self.log, self.interval = list(ck.state["log"]), LogInterval.from_dict(ck.state["interval"])
        self.step = ck.step
        return True


# ----------------------------------------------------------------------------------------------
# the fine-tune
# ----------------------------------------------------------------------------------------------
def _json(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples → lists, NaN → None, other objects → str)."""
    return json.loads(json.dumps(nan_to_none(obj), default=str))


def _prepare(lm, folder, items, *, resolution, cache_dir, identity) -> tuple[LatentData, int, int]:
    """Bucket and encode (through the cache) the captioned images: (data, resolution, step)."""
    res = int(lm.native_resolution if resolution is None else resolution)
    step = bucket_step(int(lm.vae_scale_factor), latent_multiple(lm))
    if identity is None:
        if folder is None:
            raise ValueError("the latent cache needs the pipeline's folder or identity=; pass base as a path")
        identity = model_identity(folder, lm.family)
    cache = LatentCache(default_cache_dir() if cache_dir is None else cache_dir, identity)
    with _float32_vae(lm):
        data = prepare_latent_data(lm, items, resolution=res, step=step, cache=cache, dtype=torch.float32,
                                   device=lm.device, text_dtype=lm.dtype)  # fmt: skip
    return data, res, step


@contextlib.contextmanager
def _float32_vae(lm):
    """The VAE in float32 while the data is encoded (once: the latents are cached), whatever the model's
    dtype: SD-family VAEs overflow to NaN in float16 (why diffusers' SDXL scripts keep it in float32)."""
    vae = getattr(getattr(lm, "pipe", None), "vae", None)
    old = getattr(vae, "dtype", torch.float32)
    if vae is None or old == torch.float32:
        yield
        return
    vae.to(torch.float32)
    try:
        yield
    finally:
        vae.to(old)


def _adapt(lm, targets, lora_format, *, rank, alpha, seed, gradient_checkpointing):
    """Inject the LoRA (targets: given, or the family's default for the format), check the format can
    hold it, keep the adapter in float32; (params, targets, note on the targets)."""
    tg, tg_note = _default_targets(lm, targets, lora_format)
    torch.manual_seed(seed)
    params = add_lora(lm, rank=rank, alpha=alpha, targets=tg, strict=targets is not None)
    check_format(lm, lora_format)
    with torch.no_grad():  # float32 adapters over a bf16/fp16 base (diffusers' cast_training_params)
        for p in params:
            p.data = p.data.float()
    if gradient_checkpointing:
        lm.network.enable_gradient_checkpointing()
    return params, tg, tg_note


def _objectives(lm, data: LatentData, timestep_type, adaptive):
    """Per bucket: its noise configuration and objective (one adaptive sampler shared by all)."""
    dyn = bool(lm.pipe.scheduler.config.get("use_dynamic_shifting", False))
    noise = {b: bucket_noise(timestep_type, lm.noise, lm.image_seq_len(b[1], b[0]), dynamic_shifting=dyn)
             for b in data.by_bucket()}  # fmt: skip
    objectives = {b: nc.objective() for b, nc in noise.items()}
    sampler = None
    if adaptive:
        first = next(iter(objectives.values()))
        sampler = build_adaptive(dict(adaptive), first)
        objectives = {b: dataclasses.replace(o, sampler=sampler) for b, o in objectives.items()}
    return noise, objectives, sampler


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar
        return None
    return tqdm(total=total, initial=initial, desc="fine-tune", unit="step", disable=not sys.stderr.isatty())


def _train(lm, st: _State, sampler_b: _Sampler, objectives, step_fn, *, steps, log_every, autocast,
           ckpt_root, checkpoint_every, progress) -> None:  # fmt: skip
    """The loop from ``st.step`` to ``steps``; a checkpoint every ``checkpoint_every`` steps."""
    bar = _progress(steps, st.step, progress)
    t0 = time.perf_counter() - (st.log[-1]["seconds"] if st.log else 0.0)
    lm.network.train()
    while st.step < steps:
        bucket, x0, cond = sampler_b.draw(lm.device, lm.dtype)
        with autocast():
            res = objectives[bucket](lm, x0, generator=st.generator, **cond)
        loss = res.loss.float().mean()
        st.step = step_fn(st.step, loss, res.loss, res.logsnr).step
        record_levels(st.profile, st.sampler, res.logsnr, res.eps_mse)
        st.interval.add(float(loss.detach()))
        if log_due(st.step, log_every, steps):
            rec = {"step": st.step, "loss": st.interval.mean_loss(), "seconds": time.perf_counter() - t0}
            st.log.append(rec)
            st.interval = LogInterval()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if ckpt_root is not None and checkpoint_every and st.step % checkpoint_every == 0 and st.step < steps:
            st.save(ckpt_root)
    if bar is not None:
        bar.close()
    lm.network.eval()


def _setup(params, device, *, lr, warmup, ema, seed, mixed_precision, sampler, profile):
    """The optimizer, EMA and training step, and the run's state: (step_fn, state, autocast, applied?)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    autocast, opt_s, backward, clip, mp_applied = _precision(mixed_precision, device, opt, params)
    ema_params = None
    ema_obj = None
    if ema is not None:
        ema_params = [nn.Parameter(p.detach().clone(), requires_grad=False) for p in params]
        ema_obj = EMA(nn.ParameterList(ema_params), nn.ParameterList(params), ema)
    note = lambda: f"fine-tune stopped; lower lr (now {lr})"  # noqa: E731
    step_fn = TrainStep(opt_s, params, lr=lr, warmup=warmup, grad_clip=1.0, ema=ema_obj, backward=backward,
                        clip_grad_norm=clip, note=note)  # fmt: skip
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    st = _State(params, opt_s, ema_params, gen, profile, sampler, [], LogInterval())
    return step_fn, st, autocast, mp_applied


def finetune_latent(
    base: Any,
    images: str | os.PathLike,
    *,
    timestep_type: Any = "sigmoid",
    out_dir: str | os.PathLike | None = None,
    resolution: int | None = None,
    trigger: str | None = None,
    caption_dropout: float = 0.0,
    rank: int = 16,
    alpha: float | None = None,
    targets: Sequence[str] | None = None,
    lora_format: str = "diffusers",
    lr: float = 1e-4,
    steps: int = 500,
    batch_size: int = 1,
    warmup: int = 0,
    seed: int = 0,
    adaptive: Mapping[str, Any] | None = None,
    ema: float | None = None,
    gradient_checkpointing: bool = False,
    mixed_precision: str = "no",
    cache_dir: str | os.PathLike | None = None,
    identity: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: Any = "cpu",
    resume: bool = True,
    checkpoint_every: int = 100,
    log_every: int = 25,
    profile_bins: int = 40,
    progress: bool = True,
    extra_info: Mapping[str, Any] | None = None,
) -> LatentFinetuneResult:
    """Train a LoRA on ``base``'s denoiser (a pipeline folder, a cached hub id, or a loaded
    ``LatentModel``, which is then modified in place) on the captioned folder ``images`` (module
    docstring). Deterministic given ``seed`` on a CPU."""
    _check(steps, batch_size, warmup, seed, lr, caption_dropout, mixed_precision, lora_format, ema)
    items = read_caption_folder(images, trigger=trigger)
    lm, folder = _load(base, dtype, device)
    resolve_noise(timestep_type, lm.noise)  # bad input fails before any encoding or training
    params, tg, tg_note = _adapt(lm, targets, lora_format, rank=rank, alpha=alpha, seed=seed,
                                 gradient_checkpointing=gradient_checkpointing)  # fmt: skip
    data, res, bstep = _prepare(lm, folder, items, resolution=resolution, cache_dir=cache_dir,
                                identity=identity)  # fmt: skip
    noise, objectives, ad_sampler = _objectives(lm, data, timestep_type, adaptive)
    first = next(iter(noise.values()))
    profile = LossProfile(*profile_range(first.density), profile_bins)
    step_fn, st, autocast, mp_applied = _setup(params, lm.device, lr=lr, warmup=warmup, ema=ema, seed=seed,
                                              mixed_precision=mixed_precision, sampler=ad_sampler,
                                              profile=profile)  # fmt: skip
    out = None if out_dir is None else Path(os.path.expanduser(str(out_dir)))
    ckpt_root = None if out is None else out / "checkpoint"
    st.config = _json({"base": str(folder if folder is not None else base), "images": str(images),
                       "trigger": trigger, "timestep_type": timestep_type, "resolution": resolution,
                       "rank": rank, "alpha": alpha, "targets": tg, "lr": lr, "batch_size": batch_size,
                       "warmup": warmup, "seed": seed, "ema": ema, "caption_dropout": caption_dropout,
                       "adaptive": adaptive})  # fmt: skip
    resumed = bool(ckpt_root is not None and resume and st.load(ckpt_root))
    batches = _Sampler(data, batch_size, float(caption_dropout), st.generator, "time_ids" in lm.cond_keys)
    t0 = time.perf_counter()
    _train(lm, st, batches, objectives, step_fn, steps=steps, log_every=log_every, autocast=autocast,
           ckpt_root=ckpt_root, checkpoint_every=checkpoint_every, progress=progress)  # fmt: skip
    st.use_ema()
    lm.requires_grad_(False)
    info = _info(lm, folder, base, images, data, noise, tg, tg_note, st, dict(
        timestep_type=timestep_type if isinstance(timestep_type, str) else dict(timestep_type),
        trigger=trigger, caption_dropout=caption_dropout, resolution=res, bucket_step=bstep, rank=rank,
        alpha=float(rank if alpha is None else alpha), lora_format=lora_format, lr=lr, steps=steps,
        batch_size=batch_size, warmup=warmup, seed=seed, adaptive=dict(adaptive) if adaptive else None,
        ema=ema, gradient_checkpointing=gradient_checkpointing, mixed_precision=mixed_precision,
        mixed_precision_applied=mp_applied, resumed=resumed, train_seconds=time.perf_counter() - t0,
    ), extra_info)  # fmt: skip
    result = LatentFinetuneResult(lm, data, noise, out, st.log, info["train_seconds"], info)
    if out is not None:
        _save(result, st, out)
    return result


def _info(lm, folder, base, images, data: LatentData, noise, tg, tg_note, st: _State, hp: dict[str, Any],
          extra_info) -> dict[str, Any]:  # fmt: skip
    """finetune.json: the base, the data and its buckets, the noise per bucket, the hyper-parameters."""
    return {
        "base": str(folder if folder is not None else base), "family": lm.family, "images": str(images),
        "num_images": len(data.items), "upscaled_images": data.upscaled,
        "buckets": {f"{w}x{h}": len(ix) for (w, h), ix in data.by_bucket().items()},
        "image_seq_len": {f"{w}x{h}": lm.image_seq_len(h, w) for (w, h) in noise},
        "noise": {f"{w}x{h}": nc.to_dict() for (w, h), nc in noise.items()},
        "targets": tg, "targets_note": tg_note, "cache": data.stats,
        "final_loss": st.log[-1]["loss"] if st.log else None, **hp, **dict(extra_info or {}),
    }  # fmt: skip


def _save(res: LatentFinetuneResult, st: _State, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    info = res.info
    save_lora(res.model, out / "adapter", info["lora_format"],
              info={"base": info["base"], "timestep_type": info["timestep_type"]})  # fmt: skip
    tmp = out / ".log.jsonl.tmp"
    tmp.write_text("".join(json.dumps(nan_to_none(r)) + "\n" for r in res.log))
    os.replace(tmp, out / "log.jsonl")
    st.profile.save(out, plot=False, pending=st.profile.snapshot(st.step))
    write_json_atomic(out / "finetune.json", nan_to_none(info))
    shutil.rmtree(out / "checkpoint", ignore_errors=True)

