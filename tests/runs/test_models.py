"""Models: shapes for all sizes, λ = ±inf finite, labels / classifier-free dropout, extra conditioning,
config round trips, the diffusers adapter."""

from __future__ import annotations

import math

import pytest
import torch

from noiselevels.runs.models import (
    MLP,
    DiffusersUNet,
    DiffusersUNetConfig,
    MLPConfig,
    NoiseLevelEmbedding,
    UNet,
    UNetConfig,
    build_model,
    c_noise,
    count_parameters,
)

INF = math.inf


def _randomise(model):
    """Untrained models output exactly 0 (zero-initialised last layer); perturb every parameter."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def test_c_noise_bounded_and_monotone():
    lam = torch.tensor([-INF, -100.0, -8.0, 0.0, 8.0, 100.0, INF], dtype=torch.float64)
    c = c_noise(lam)
    torch.testing.assert_close(
        c[[0, 2, 3, 4, 6]], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
    )
    assert (c.diff() > 0).all()


def test_default_unet_size():
    n = count_parameters(UNet())
    assert 0.5e6 <= n <= 1.0e6


@pytest.mark.parametrize("size, channels", [(8, 1), (28, 1), (32, 3), (7, 1), (13, 3), (1, 1), (30, 1)])
def test_unet_shapes_and_infinite_levels(size, channels):
    model = _randomise(UNet(in_channels=channels, channels=(16, 32), num_classes=3, extra_dim=2)).eval()
    z = torch.randn(4, channels, size, size)
    lam = torch.tensor([INF, -INF, 0.0, 5.0])
    extra = torch.tensor([[INF, -INF], [0.0, 1.0], [-3.0, 3.0], [-INF, INF]])
    out = model(z, lam, torch.tensor([0, -1, 3, 2]), extra=extra)
    assert out.shape == z.shape
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_unet_up_path_mirrors_the_down_path():
    """As UNetConfig documents: ``blocks`` residual blocks per level both ways, one skip per level,
    concatenated into the first up block of the level."""
    m = UNet(channels=(8, 16, 32), blocks=2, emb_dim=16, fourier_features=4)
    assert [len(b) for b in m.down] == [2, 2, 2] and [len(b) for b in m.up] == [2, 2, 2]
    for level, c in zip(m.up, (32, 16, 8)):  # from the bottom up
        assert level[0].conv1.in_channels == 2 * c and level[1].conv1.in_channels == c


def test_unet_non_square_and_out_channels():
    model = _randomise(UNet(in_channels=1, out_channels=2, channels=(8, 16, 16)))
    out = model(torch.randn(2, 1, 9, 14), torch.zeros(2))
    assert out.shape == (2, 2, 9, 14)


def test_untrained_output_is_zero():
    model = UNet(channels=(8, 16))
    torch.testing.assert_close(model(torch.randn(2, 1, 8, 8), torch.zeros(2)), torch.zeros(2, 1, 8, 8))


def test_labels_change_output_and_null_label():
    model = _randomise(UNet(channels=(8, 16), num_classes=10, label_dropout=0.5)).eval()
    z = torch.randn(3, 1, 8, 8).repeat(2, 1, 1, 1)
    lam = torch.zeros(6)
    out = model(z, lam, torch.tensor([0, 1, 2, 10, -1, 10]))
    assert not torch.allclose(out[0], out[1])
    # −1, num_classes and labels=None are all the null label
    torch.testing.assert_close(out[3:5], model(z[3:5], lam[3:5]))
    torch.testing.assert_close(out[4:5], model(z[4:5], lam[4:5], torch.tensor([10])))


def test_classifier_free_dropout_rate():
    emb = NoiseLevelEmbedding(16, 4, num_classes=5, label_dropout=0.3)
    labels = torch.zeros(20000, dtype=torch.long)
    torch.manual_seed(0)
    emb.train()
    dropped = (emb.null_labels(labels, 20000, "cpu") == 5).float().mean().item()
    assert abs(dropped - 0.3) < 0.015
    emb.eval()
    torch.testing.assert_close(emb.null_labels(labels, 20000, "cpu"), labels)


def test_extra_and_label_errors():
    model = UNet(channels=(8, 16), extra_dim=2)
    with pytest.raises(ValueError, match="extra must have shape"):
        model(torch.randn(2, 1, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="no classes"):
        model(torch.randn(2, 1, 8, 8), torch.zeros(2), torch.zeros(2, dtype=torch.long), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="logsnr must have shape"):
        model(torch.randn(2, 1, 8, 8), torch.zeros(3), extra=torch.zeros(2, 2))
    labelled = UNet(channels=(8, 16), num_classes=3)
    with pytest.raises(ValueError, match="labels must be in"):
        labelled(torch.randn(2, 1, 8, 8), torch.zeros(2), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="channels"):
        labelled(torch.randn(2, 3, 8, 8), torch.zeros(2))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"channels": (12, 16)}, "multiple of groups"),
        ({"channels": []}, "tuple"),
        ({"label_dropout": 1.0}, "label_dropout"),
        ({"num_classes": 0}, "num_classes"),
        ({"blocks": 0}, "blocks"),
    ],
)
def test_unet_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**kw)


def test_mlp():
    model = _randomise(MLP(MLPConfig(dim=2, hidden=32, depth=2, num_classes=8, extra_dim=1))).eval()
    out = model(torch.randn(5, 2), torch.tensor([INF, -INF, 0, 1, 2]), torch.arange(5), torch.zeros(5, 1))
    assert out.shape == (5, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(5, 3), torch.zeros(5), extra=torch.zeros(5, 1))


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(channels=(8, 16), num_classes=4, extra_dim=1),
        MLPConfig(hidden=16, depth=1),
    ],
)
def test_build_model_round_trip(config):
    d = config.to_dict()
    assert d["kind"] in ("unet", "mlp")
    model = build_model(d)
    assert model.config == config
    torch.manual_seed(0)
    a = build_model(d)
    torch.manual_seed(0)
    b = build_model(config)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        torch.testing.assert_close(va, vb)
    import json

    assert build_model(json.loads(json.dumps(d))).config == config


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model({"kind": "resnet"})
    with pytest.raises(ValueError, match="unknown model config key"):
        build_model({"kind": "unet", "chanels": [8, 16]})


# ----------------------------------------------------------------------------------------------
# diffusers adapter (tiny configs, offline)
# ----------------------------------------------------------------------------------------------
TINY_UNET2D = {
    "sample_size": 8,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": (8, 16),
    "down_block_types": ("DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D"),
    "layers_per_block": 1,
    "norm_num_groups": 4,
}


def test_diffusers_unet2d_adapter():
    model = DiffusersUNet(DiffusersUNetConfig(unet=TINY_UNET2D, num_classes=3)).eval()
    z = torch.randn(4, 1, 7, 7)
    out = model(z, torch.tensor([INF, -INF, 0.0, 2.0]), torch.tensor([0, 1, -1, 2]))
    assert out.shape == z.shape and torch.isfinite(out).all()
    # the timestep input is 1000·sigmoid(−λ/2): check against the wrapped model directly
    lam = torch.tensor([1.5, -2.0])
    x = torch.randn(2, 1, 8, 8)
    ref = model.unet(x, 1000 * torch.sigmoid(-lam / 2), class_labels=torch.tensor([3, 3])).sample
    torch.testing.assert_close(model(x, lam), ref)
    rebuilt = build_model(model.config.to_dict())
    assert isinstance(rebuilt, DiffusersUNet)


TINY_UNET2D_CONDITION = {
    **TINY_UNET2D,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 8,
    "attention_head_dim": 4,
}


def test_diffusers_condition_adapter():
    cfg = TINY_UNET2D_CONDITION
    model = DiffusersUNet(DiffusersUNetConfig(model="UNet2DConditionModel", unet=cfg, num_classes=2))
    out = model(torch.randn(2, 1, 8, 8), torch.tensor([0.0, -INF]), torch.tensor([0, 1]))
    assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()


def test_diffusers_bad_config():
    with pytest.raises(ValueError, match="UNet2DModel"):
        DiffusersUNet(DiffusersUNetConfig(unet={"no_such_argument": 1}))
    with pytest.raises(ValueError, match="model must be"):
        DiffusersUNetConfig(model="Transformer2DModel")
    # diffusers' own class embeddings would bypass the null label and the fine-tuning trigger row
    for key, value in (("num_class_embeds", 4), ("class_embed_type", "timestep")):
        with pytest.raises(ValueError, match=f"unet.{key} is not supported: set num_classes instead"):
            DiffusersUNetConfig(unet={**TINY_UNET2D, key: value})
