"""Denoising networks conditioned on the noise level λ = log(α²/σ²).

Every model here has the same call: ``model(z, logsnr, labels=None, extra=None)`` → a tensor shaped like
``z``, the parameterisation's target (ε, x₀, v, flow velocity or EDM's F; the model does not know which).

* ``z``: (B, C, H, W) images (:class:`UNet`, :class:`DiffusersUNet`) or (B, D) vectors (:class:`MLP`).
* ``logsnr``: (B,) noise levels; ±inf is allowed and gives finite outputs.
* ``labels``: (B,) int64 class labels or None. With ``num_classes = K`` the label embedding has K + 1
  rows; row K is the *null* label used for classifier-free guidance. ``labels=None``, a label −1 or a
  label K all mean "unconditional". In training mode each label is replaced by the null label with
  probability ``label_dropout`` (classifier-free guidance training, Ho & Salimans 2022), drawn from the
  global torch RNG.
* ``extra``: (B, extra_dim) additional scalar conditioning (e.g. the spectral issue's (λ_min, λ_max)),
  embedded exactly like λ, so infinite values are fine too.

Noise-level embedding. λ is first squashed to a bounded ``c_noise = (2/π)·atan(λ/8)`` ∈ [−1, 1]
(finite at ±inf, nearly linear over the |λ| ≲ 8 where most training happens) and then expanded into
Fourier features sin(π·f_k·c), cos(π·f_k·c) with log-spaced frequencies f_k ∈ [1/2, 64] plus c itself
(a deterministic relative of the random Fourier features of Tancik et al. 2020 / Song et al. 2021,
fixed so that checkpoints need no buffers); an MLP maps them to the embedding added in every block.

:class:`UNet` is a hand-written U-Net sized for CPU training: three resolutions (channels 16/32/64 by
default, 0.56M parameters; a batch of 64 at 28×28 takes ≈ 170–190 ms forward + backward on 2 CPU
cores), one residual block per level, GroupNorm + SiLU, embedding added as a
per-channel scale and shift (FiLM), no attention. Inputs whose side is not a multiple of
2^(levels − 1) (4 by default) are padded (replicate) and the output cropped back, so 8×8, 28×28,
32×32 or odd sizes all work.

:class:`DiffusersUNet` wraps diffusers' ``UNet2DModel`` or ``UNet2DConditionModel`` built from a config
dict into the same call. Its integer-style timestep input is the continuous ``1000·t`` with
t = sigmoid(−λ/2) (the flow-matching time of λ; 0 at λ = +inf, 1000 at λ = −inf), so any process works.
It is for the project's own small UNets trained from scratch with that convention. A *pretrained*
network has its own timestep convention (SD's UNet: DDPM timesteps of its β table; SD3: 1000·σ; Flux:
σ), which this map would mis-condition: pretrained diffusers pipelines go through
``noiselevels.runs.families`` (``load_pipeline``) instead.

``build_model(config_dict)`` rebuilds any of these from ``model.config.to_dict()``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "MLP",
    "DiffusersUNet",
    "DiffusersUNetConfig",
    "MLPConfig",
    "NoiseLevelEmbedding",
    "UNet",
    "UNetConfig",
    "build_model",
    "c_noise",
    "count_parameters",
]


def c_noise(logsnr: Tensor, scale: float = 8.0) -> Tensor:
    """Bounded noise-level input (2/π)·atan(λ/scale) ∈ [−1, 1]; ±inf → ±1, NaN stays NaN."""
    return torch.atan(logsnr / scale) * (2.0 / math.pi)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; got {value!r}")
    return value


def _check_prob(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------
class _Config:
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        d = dict(d)
        kind = d.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"config kind {kind!r} does not match {cls.__name__} (kind {cls.kind!r})")
        valid = [f.name for f in dataclasses.fields(cls)]
        bad = [k for k in d if k not in valid]
        if bad:
            raise ValueError(
                f"unknown model config key(s) {', '.join(map(repr, bad))} for {cls.kind!r}; "
                f"valid keys: {', '.join(valid)}"
            )
        tuples = {f.name for f in dataclasses.fields(cls) if "tuple" in str(f.type)}
        return cls(**{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in d.items()})


def _check_conditioning(num_classes: Any, label_dropout: Any, extra_dim: Any) -> None:
    if num_classes is not None:
        _check_int("num_classes", num_classes, 1)
    _check_prob("label_dropout", label_dropout)
    _check_int("extra_dim", extra_dim, 0)


@dataclasses.dataclass(frozen=True)
class UNetConfig(_Config):
    """Configuration of :class:`UNet`.

    channels: channels per resolution (each next level halves H and W); blocks: residual blocks per
    level, the same number on the way down and on the way up (one skip per level: the output of a
    level's last down block is concatenated to the input of the first up block of that level);
    emb_dim: noise-level embedding width; fourier_features: number of frequencies (2 features each);
    groups: GroupNorm groups.
    """

    kind: ClassVar[str] = "unet"
    in_channels: int = 1
    out_channels: int | None = None
    channels: tuple[int, ...] = (16, 32, 64)
    blocks: int = 1
    emb_dim: int = 128
    fourier_features: int = 16
    groups: int = 8
    dropout: float = 0.0
    num_classes: int | None = None
    label_dropout: float = 0.1
    extra_dim: int = 0

    def __post_init__(self):
        _check_int("in_channels", self.in_channels, 1)
        if self.out_channels is not None:
            _check_int("out_channels", self.out_channels, 1)
        if not isinstance(self.channels, tuple) or not 1 <= len(self.channels) <= 5:
            raise ValueError(f"channels must be a tuple of 1 to 5 integers; got {self.channels!r}")
        for c in self.channels:
            _check_int("each of channels", c, 1)
            if c % self.groups:
                raise ValueError(
                    f"every entry of channels must be a multiple of groups={self.groups}; got {c}"
                )
        _check_int("blocks", self.blocks, 1)
        _check_int("emb_dim", self.emb_dim, 4)
        _check_int("fourier_features", self.fourier_features, 1)
        _check_int("groups", self.groups, 1)
        _check_prob("dropout", self.dropout)
        _check_conditioning(self.num_classes, self.label_dropout, self.extra_dim)


@dataclasses.dataclass(frozen=True)
class MLPConfig(_Config):
    """Configuration of :class:`MLP` (for (B, dim) toy data)."""

    kind: ClassVar[str] = "mlp"
    dim: int = 2
    hidden: int = 256
    depth: int = 3
    emb_dim: int = 64
    fourier_features: int = 16
    num_classes: int | None = None
    label_dropout: float = 0.1
    extra_dim: int = 0

    def __post_init__(self):
        _check_int("dim", self.dim, 1)
        _check_int("hidden", self.hidden, 1)
        _check_int("depth", self.depth, 1)
        _check_int("emb_dim", self.emb_dim, 4)
        _check_int("fourier_features", self.fourier_features, 1)
        _check_conditioning(self.num_classes, self.label_dropout, self.extra_dim)


@dataclasses.dataclass(frozen=True)
class DiffusersUNetConfig(_Config):
    """Configuration of :class:`DiffusersUNet`.

    model: ``"UNet2DModel"`` or ``"UNet2DConditionModel"``; unet: the keyword arguments of that class
    (``sample_size``, ``in_channels``, ``block_out_channels``, ...). With ``num_classes`` set, a
    UNet2DModel gets ``num_class_embeds = num_classes + 1`` (the last is the null label) and a
    UNet2DConditionModel gets a label embedding of width ``cross_attention_dim`` used as a one-token
    ``encoder_hidden_states``. diffusers' own class embeddings (``num_class_embeds``,
    ``class_embed_type`` in ``unet``) are rejected: ``num_classes`` is the one way to condition on labels.
    """

    kind: ClassVar[str] = "diffusers_unet"
    model: str = "UNet2DModel"
    unet: dict = dataclasses.field(default_factory=dict)
    num_classes: int | None = None
    label_dropout: float = 0.1

    def __post_init__(self):
        if self.model not in ("UNet2DModel", "UNet2DConditionModel"):
            raise ValueError(f"model must be 'UNet2DModel' or 'UNet2DConditionModel'; got {self.model!r}")
        if not isinstance(self.unet, dict):
            raise ValueError(f"unet must be a dict of {self.model} arguments; got {self.unet!r}")
        own = [k for k in ("num_class_embeds", "class_embed_type") if self.unet.get(k) is not None]
        if own:
            raise ValueError(
                f"unet.{own[0]} is not supported: set num_classes instead (the wrapper adds the label "
                "embedding, with a null-label row, that sampling, guidance and fine-tuning use)"
            )
        _check_conditioning(self.num_classes, self.label_dropout, 0)

    def __hash__(self):  # the dict field is unhashable; hash its canonical JSON (consistent with ==)
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=str))


# ----------------------------------------------------------------------------------------------
# conditioning
# ----------------------------------------------------------------------------------------------
class NoiseLevelEmbedding(nn.Module):
    """λ (B,), optional labels (B,) and extra (B, extra_dim) → embedding (B, emb_dim).

    Features per scalar: c = (2/π)·atan(λ/8), sin(π f_k c), cos(π f_k c) with f_k log-spaced in
    [1/2, 64] (k = 1..fourier_features); then Linear → SiLU → Linear. Labels add a learned embedding
    (row ``num_classes`` = null label).
    """

    def __init__(
        self,
        emb_dim: int,
        fourier_features: int = 16,
        num_classes: int | None = None,
        label_dropout: float = 0.0,
        extra_dim: int = 0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.label_dropout = label_dropout
        self.extra_dim = extra_dim
        freqs = torch.logspace(math.log10(0.5), math.log10(64.0), fourier_features) * math.pi
        self.register_buffer("freqs", freqs, persistent=False)
        n_in = (1 + extra_dim) * (2 * fourier_features + 1)
        self.mlp = nn.Sequential(nn.Linear(n_in, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes is not None else None

    def features(self, values: Tensor) -> Tensor:
        """(B, k) scalars → (B, k·(2F + 1)) features."""
        c = c_noise(values.float())
        arg = c[..., None] * self.freqs
        return torch.cat([c[..., None], arg.sin(), arg.cos()], dim=-1).flatten(1)

    def null_labels(self, labels: Tensor | None, batch: int, device) -> Tensor:
        """Labels with None / −1 mapped to the null label, and classifier-free dropout in training."""
        k = self.num_classes
        if labels is None:
            return torch.full((batch,), k, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, device=device).long()
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape ({batch},); got {tuple(labels.shape)}")
        if bool(((labels < -1) | (labels > k)).any()):
            raise ValueError(
                f"labels must be in 0..{k - 1} (or −1 / {k} for the null label); got {labels.tolist()}"
            )
        labels = torch.where(labels < 0, torch.full_like(labels, k), labels)
        if self.training and self.label_dropout > 0:
            drop = torch.rand(batch, device=device) < self.label_dropout
            labels = torch.where(drop, torch.full_like(labels, k), labels)
        return labels

    def forward(self, logsnr: Tensor, labels: Tensor | None = None, extra: Tensor | None = None) -> Tensor:
        b = logsnr.shape[0]
        vals = logsnr.reshape(b, 1)
        if self.extra_dim:
            if extra is None or extra.shape != (b, self.extra_dim):
                got = None if extra is None else tuple(extra.shape)
                raise ValueError(f"extra must have shape ({b}, {self.extra_dim}); got {got}")
            vals = torch.cat([vals.to(extra.dtype), extra], dim=1)
        elif extra is not None:
            raise ValueError("extra conditioning was passed but the model has extra_dim = 0")
        emb = self.mlp(self.features(vals))
        if self.label_emb is not None:
            emb = emb + self.label_emb(self.null_labels(labels, b, emb.device))
        elif labels is not None:
            raise ValueError("labels were passed but the model has no classes (num_classes = None)")
        return emb


def _check_inputs(z: Tensor, logsnr: Tensor, ndim: int) -> Tensor:
    if z.ndim != ndim:
        raise ValueError(f"z must have {ndim} dimensions; got shape {tuple(z.shape)}")
    logsnr = torch.as_tensor(logsnr, device=z.device)
    if logsnr.ndim == 0:
        logsnr = logsnr.expand(z.shape[0])
    if logsnr.shape != (z.shape[0],):
        raise ValueError(f"logsnr must have shape ({z.shape[0]},); got {tuple(logsnr.shape)}")
    return logsnr


# ----------------------------------------------------------------------------------------------
# UNet
# ----------------------------------------------------------------------------------------------
class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(self.drop(h))
        return self.skip(x) + h


class UNet(nn.Module):
    """Small CPU-friendly U-Net; ``model(z, logsnr, labels=None, extra=None)`` → (B, C_out, H, W).

    Layout for channels (c₀, c₁, c₂): conv3×3 → [ResBlock ×blocks, save skip, stride-2 conv] per level
    → middle ResBlock ×2 → per level, from the bottom: [nearest ×2 upsample + conv3×3, concat skip,
    ResBlock ×blocks] → GroupNorm, SiLU, conv3×3 (zero-initialised, so an untrained model outputs 0).
    """

    def __init__(self, config: UNetConfig | None = None, **kw: Any):
        super().__init__()
        if config is None:
            config = UNetConfig(**kw)
        elif kw:
            raise ValueError("pass either a UNetConfig or keyword arguments, not both")
        self.config = config
        cfg = config
        ch = cfg.channels
        self.factor = 2 ** (len(ch) - 1)
        self.embed = NoiseLevelEmbedding(
            cfg.emb_dim, cfg.fourier_features, cfg.num_classes, cfg.label_dropout, cfg.extra_dim
        )
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)

        def block(a, b):
            return _ResBlock(a, b, cfg.emb_dim, cfg.groups, cfg.dropout)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = ch[0]
        for i, co in enumerate(ch):
            self.down.append(nn.ModuleList([block(c if j == 0 else co, co) for j in range(cfg.blocks)]))
            c = co
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(c, ch[i + 1], 3, stride=2, padding=1))
                c = ch[i + 1]
        self.mid = nn.ModuleList([block(c, c), block(c, c)])
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in reversed(range(len(ch))):
            if i < len(ch) - 1:
                self.upsample.append(nn.Conv2d(c, ch[i], 3, padding=1))
                c = ch[i]
            self.up.append(
                nn.ModuleList([block(c + ch[i] if j == 0 else ch[i], ch[i]) for j in range(cfg.blocks)])
            )
            c = ch[i]
        self.norm_out = nn.GroupNorm(cfg.groups, c)
        self.conv_out = nn.Conv2d(c, cfg.out_channels or cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(
        self, z: Tensor, logsnr: Tensor, labels: Tensor | None = None, extra: Tensor | None = None
    ) -> Tensor:
        logsnr = _check_inputs(z, logsnr, 4)
        if z.shape[1] != self.config.in_channels:
            raise ValueError(f"z must have {self.config.in_channels} channels; got shape {tuple(z.shape)}")
        h_in, w_in = z.shape[-2:]
        ph, pw = (-h_in) % self.factor, (-w_in) % self.factor
        x = F.pad(z, (0, pw, 0, ph), mode="replicate") if ph or pw else z
        emb = F.silu(self.embed(logsnr, labels, extra))
        h = self.conv_in(x)
        skips = []
        for i, blocks in enumerate(self.down):
            for b in blocks:
                h = b(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        for b in self.mid:
            h = b(h, emb)
        for i, blocks in enumerate(self.up):
            if i > 0:
                h = self.upsample[i - 1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = torch.cat([h, skips.pop()], dim=1)
            for b in blocks:
                h = b(h, emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[..., :h_in, :w_in] if ph or pw else out


# ----------------------------------------------------------------------------------------------
# MLP
# ----------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """Residual MLP denoiser for (B, dim) data; ``model(z, logsnr, labels=None, extra=None)`` → (B, dim).

    z → Linear(hidden); ``depth`` residual blocks [LayerNorm, + Linear(emb), SiLU, Linear]; LayerNorm,
    SiLU, Linear(dim) (zero-initialised).
    """

    def __init__(self, config: MLPConfig | None = None, **kw: Any):
        super().__init__()
        if config is None:
            config = MLPConfig(**kw)
        elif kw:
            raise ValueError("pass either an MLPConfig or keyword arguments, not both")
        self.config = cfg = config
        self.embed = NoiseLevelEmbedding(
            cfg.emb_dim, cfg.fourier_features, cfg.num_classes, cfg.label_dropout, cfg.extra_dim
        )
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.norms = nn.ModuleList([nn.LayerNorm(cfg.hidden) for _ in range(cfg.depth)])
        self.embs = nn.ModuleList([nn.Linear(cfg.emb_dim, cfg.hidden) for _ in range(cfg.depth)])
        self.lin1 = nn.ModuleList([nn.Linear(cfg.hidden, cfg.hidden) for _ in range(cfg.depth)])
        self.lin2 = nn.ModuleList([nn.Linear(cfg.hidden, cfg.hidden) for _ in range(cfg.depth)])
        self.norm_out = nn.LayerNorm(cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, z: Tensor, logsnr: Tensor, labels: Tensor | None = None, extra: Tensor | None = None
    ) -> Tensor:
        logsnr = _check_inputs(z, logsnr, 2)
        if z.shape[1] != self.config.dim:
            raise ValueError(f"z must have shape (B, {self.config.dim}); got {tuple(z.shape)}")
        emb = F.silu(self.embed(logsnr, labels, extra))
        h = self.inp(z)
        for norm, e, l1, l2 in zip(self.norms, self.embs, self.lin1, self.lin2):
            h = h + l2(F.silu(l1(norm(h)) + e(emb)))
        return self.out(F.silu(self.norm_out(h)))


# ----------------------------------------------------------------------------------------------
# diffusers adapter
# ----------------------------------------------------------------------------------------------
class DiffusersUNet(nn.Module):
    """diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` behind ``model(z, logsnr, labels=None)``.

    timestep = 1000·sigmoid(−λ/2) (continuous; the flow time of λ, finite at λ = ±inf) — for networks
    trained from scratch here; pretrained pipelines use ``noiselevels.runs.families``. Labels as in
    the module docstring (null label = ``num_classes``). Spatial sizes that the diffusers network cannot
    halve often enough are padded (replicate) and the output cropped. diffusers is imported lazily.
    """

    def __init__(self, config: DiffusersUNetConfig | None = None, **kw: Any):
        super().__init__()
        if config is None:
            config = DiffusersUNetConfig(**kw)
        elif kw:
            raise ValueError("pass either a DiffusersUNetConfig or keyword arguments, not both")
        self.config = cfg = config
        import diffusers

        unet_kw = dict(cfg.unet)
        self.label_emb = None
        if cfg.model == "UNet2DModel":
            if cfg.num_classes is not None:
                unet_kw["num_class_embeds"] = cfg.num_classes + 1
            try:
                self.unet = diffusers.UNet2DModel(**unet_kw)
            except TypeError as e:
                raise ValueError(f"bad UNet2DModel config: {e}") from e
        else:
            try:
                self.unet = diffusers.UNet2DConditionModel(**unet_kw)
            except TypeError as e:
                raise ValueError(f"bad UNet2DConditionModel config: {e}") from e
            dim = self.unet.config.cross_attention_dim
            if isinstance(dim, (list, tuple)):
                dim = dim[0]
            self.context_dim = int(dim)
            if cfg.num_classes is not None:
                self.label_emb = nn.Embedding(cfg.num_classes + 1, self.context_dim)
            else:
                self.null_context = nn.Parameter(torch.zeros(1, 1, self.context_dim))
        self.factor = 2 ** (len(self.unet.config.block_out_channels) - 1)

    def _labels(self, labels: Tensor | None, b: int, device) -> Tensor | None:
        k = self.config.num_classes
        if k is None:
            if labels is not None:
                raise ValueError("labels were passed but the model has no classes (num_classes = None)")
            return None
        if labels is None:
            return torch.full((b,), k, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, device=device).long()
        if labels.shape != (b,) or bool(((labels < -1) | (labels > k)).any()):
            raise ValueError(f"labels must have shape ({b},) with values in 0..{k - 1} (−1 / {k}: null)")
        labels = torch.where(labels < 0, torch.full_like(labels, k), labels)
        if self.training and self.config.label_dropout > 0:
            drop = torch.rand(b, device=device) < self.config.label_dropout
            labels = torch.where(drop, torch.full_like(labels, k), labels)
        return labels

    def forward(
        self, z: Tensor, logsnr: Tensor, labels: Tensor | None = None, extra: Tensor | None = None
    ) -> Tensor:
        if extra is not None:
            raise ValueError("DiffusersUNet takes no extra conditioning")
        logsnr = _check_inputs(z, logsnr, 4)
        b = z.shape[0]
        timestep = 1000.0 * torch.sigmoid(-0.5 * logsnr.to(torch.float32))
        h_in, w_in = z.shape[-2:]
        ph, pw = (-h_in) % self.factor, (-w_in) % self.factor
        x = F.pad(z, (0, pw, 0, ph), mode="replicate") if ph or pw else z
        labels = self._labels(labels, b, z.device)
        if self.config.model == "UNet2DModel":
            out = self.unet(x, timestep, class_labels=labels).sample
        else:
            if self.label_emb is not None:
                ctx = self.label_emb(labels)[:, None, :]
            else:
                ctx = self.null_context.expand(b, 1, self.context_dim)
            out = self.unet(x, timestep, encoder_hidden_states=ctx).sample
        return out[..., :h_in, :w_in] if ph or pw else out


# ----------------------------------------------------------------------------------------------
# build
# ----------------------------------------------------------------------------------------------
_KINDS: dict[str, tuple[type, type]] = {
    "unet": (UNetConfig, UNet),
    "mlp": (MLPConfig, MLP),
    "diffusers_unet": (DiffusersUNetConfig, DiffusersUNet),
}


def build_model(config: dict[str, Any] | _Config) -> nn.Module:
    """Build a model from ``model.config.to_dict()`` (a dict with a ``kind``: unet, mlp, diffusers_unet)
    or from a config object."""
    if isinstance(config, _Config):
        config = config.to_dict()
    if not isinstance(config, dict):
        raise ValueError(f"model config must be a dict with a 'kind' key; got {config!r}")
    kind = config.get("kind", "unet")
    if kind not in _KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds: {', '.join(sorted(_KINDS))}")
    cfg_cls, model_cls = _KINDS[kind]
    return model_cls(cfg_cls.from_dict(config))
