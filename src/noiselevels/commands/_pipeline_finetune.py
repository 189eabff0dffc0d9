"""``noiselevels finetune --base PIPELINE --images DIR ...``: the diffusers-pipeline branch of ``finetune``.

LoRA on the pipeline's UNet / transformer trained on a captioned image folder
(``noiselevels.runs.finetune_latent.finetune_latent``); prints what was read, encoded and trained, and where
the adapter is and how to load it. Options that only make sense for the MNIST bases (``--class``,
``--label``, ``--num-images``, ``--target``, ``--prior-weight``, ``--evaluate``) are refused in one line.
"""

from __future__ import annotations

from pathlib import Path

_BASE_ONLY = (("class_label", "--class"), ("label", "--label"), ("num_images", "--num-images"),
              ("target", "--target (use --targets NAMES)"))  # fmt: skip


def _check(args) -> None:
    for attr, flag in _BASE_ONLY:
        if getattr(args, attr) is not None:
            raise ValueError(f"{flag} is for the MNIST bases; {args.base} is a diffusers pipeline")
    if args.prior_weight:
        raise ValueError(f"--prior-weight is for the MNIST bases; {args.base} is a diffusers pipeline")
    if args.evaluate:
        raise ValueError("--evaluate is for the MNIST bases; evaluate a pipeline's adapter with "
                         "`noiselevels evaluate PIPELINE --adapter DIR --images DIR`")  # fmt: skip


def _or(value, default):
    return default if value is None else value


def _summary(res, out: Path) -> list[str]:
    info = res.info
    st = info["cache"]
    buckets = " ".join(f"{k}:{v}" for k, v in info["buckets"].items())
    seq = sorted(set(info["image_seq_len"].values()))
    lines = [
        f"data: {info['num_images']} images ({info['upscaled_images']} up-scaled) in {len(info['buckets'])} "
        f"buckets {buckets} (step {info['bucket_step']} px, image_seq_len {seq[0]}..{seq[-1]}); cache: "
        f"{st['encoded_images']} latents + {st['encoded_prompts']} prompts encoded, "
        f"{st['read_images']} + {st['read_prompts']} read",
        f"noise: {info['timestep_type']} with the {info['family']} model's "
        f"{next(iter(res.noise.values())).process} process and "
        f"{next(iter(res.noise.values())).parameterization} parameterisation",
        f"trained {info['steps']} steps in {res.train_seconds:.1f} s, final loss {info['final_loss']:.4f}; "
        f"LoRA rank {info['rank']} alpha {info['alpha']:g} on {', '.join(info['targets'])}",
    ]
    if info["targets_note"]:
        lines.append(f"targets: {info['targets_note']}")
    if info["mixed_precision"] != "no" and not info["mixed_precision_applied"]:
        lines.append(f"mixed precision {info['mixed_precision']}: accepted, not applied on a CPU")
    adir = out / "adapter"
    if info["lora_format"] == "diffusers":
        lines.append(f"adapter: {adir / 'pytorch_lora_weights.safetensors'} (diffusers: "
                     f"pipe.load_lora_weights({str(adir)!r}))")  # fmt: skip
    else:
        lines.append(f"adapter: {adir / 'lora_kohya.safetensors'} (kohya / ComfyUI keys)")
    return lines


def run_pipeline(args, noise) -> int:
    """Fine-tune a LoRA of the pipeline ``args.base`` on ``args.images``; ``noise`` is the timestep type
    or ``[noise]`` table of ``commands.finetune._noise_arg``."""
    import torch

    from noiselevels.runs.finetune_latent import finetune_latent

    _check(args)
    if args.images is None:
        raise ValueError("a diffusers pipeline is fine-tuned on --images DIR (with same-name .txt captions)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    mp = _or(args.mixed_precision, "no")
    dtype = torch.float32
    if torch.device(device).type == "cuda" and mp != "no":
        dtype = torch.bfloat16 if mp == "bf16" else torch.float16
    targets = None
    if args.targets is not None:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        if not targets:
            raise ValueError(f"--targets must name at least one module; got {args.targets!r}")
    print(f"fine-tuning {args.base} on {args.images} ({device})")
    res = finetune_latent(
        args.base, args.images, timestep_type=noise, out_dir=args.out, resolution=args.resolution,
        trigger=args.trigger, caption_dropout=_or(args.caption_dropout, 0.0), rank=_or(args.rank, 16),
        alpha=args.alpha, targets=targets, lora_format=_or(args.lora_format, "diffusers"),
        lr=_or(args.lr, 1e-4), steps=_or(args.steps, 500), batch_size=_or(args.batch_size, 1), seed=args.seed,
        adaptive={"kind": args.adaptive} if args.adaptive else None, ema=args.ema,
        gradient_checkpointing=bool(args.gradient_checkpointing), mixed_precision=mp,
        cache_dir=args.cache_dir, dtype=dtype, device=device,
    )  # fmt: skip
    for line in _summary(res, Path(args.out)):
        print(line)
    return 0
