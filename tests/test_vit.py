"""The Vision Transformer: patches, config, the model contract, and a tiny end-to-end fit."""

import dataclasses
import json
import math

import pytest
import torch

from seqlab.cli import main
from seqlab.config import ConfigError, from_dict, load_toml, to_dict
from seqlab.models import MODELS, build_model
from seqlab.models.vit import ViT, ViTConfig

from tolerance import ALLCLOSE_RTOL, assert_close

SMALL = dict(image_size=8, patch_size=2, num_classes=10, d_model=16, depth=2, num_heads=2, d_ff=32)


def test_patchify_matches_the_einops_pattern():
    # 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)', written as loops
    model = ViT(
        image_size=(4, 6), patch_size=(2, 3), num_classes=3, d_model=8, depth=1, num_heads=2, d_ff=8, channels=2
    )
    x = torch.arange(2 * 2 * 4 * 6, dtype=torch.float32).reshape(2, 2, 4, 6)
    patches = model.patchify(x)
    assert patches.shape == (2, 4, 12)  # (4/2) * (6/3) patches of 2*3*2 values
    for b in range(2):
        for h in range(2):
            for w in range(2):
                expected = [
                    x[b, c, h * 2 + p1, w * 3 + p2].item() for p1 in range(2) for p2 in range(3) for c in range(2)
                ]
                assert patches[b, h * 2 + w].tolist() == expected


def test_forward_contract_and_input_layouts():
    torch.manual_seed(0)
    model = ViT(ViTConfig(**SMALL)).eval()
    x = torch.rand(5, 8, 8)
    y = torch.tensor([0, 1, 2, 3, 4])
    logits, loss = model(x, y)
    assert logits.shape == (5, 10)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    logits4, none = model(x.unsqueeze(1))
    assert none is None and torch.equal(logits, logits4)
    with pytest.raises(ValueError, match=r"expected images \(B, 1, 8, 8\) or \(B, 8, 8\), got \(5, 64, 1\)"):
        model(x.reshape(5, 64, 1))


def test_class_token_and_mean_pooling_differ_and_weights_are_exposed():
    torch.manual_seed(0)
    cls_model = ViT(**SMALL).eval()
    mean_model = ViT(**{**SMALL, "pool": "mean"}).eval()
    mean_model.load_state_dict(cls_model.state_dict())
    x = torch.rand(3, 8, 8)
    assert (cls_model(x)[0] - mean_model(x)[0]).abs().max() > 1e-4
    weights = cls_model.attention_weights(x)
    assert len(weights) == 2 and weights[0].shape == (3, 2, 17, 17)  # 16 patches + class token
    assert_close(weights[1].sum(-1), torch.ones(3, 2, 17), "weight sums", atol=1e-5, rtol=ALLCLOSE_RTOL)


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match=r"image_size \(8, 8\) must be divisible by model.patch_size \(3, 3\)"):
        ViTConfig(**{**SMALL, "patch_size": 3})
    with pytest.raises(ValueError, match=r"d_model \(16\) must be divisible by model.num_heads \(3\)"):
        ViTConfig(**{**SMALL, "num_heads": 3})
    with pytest.raises(ValueError, match="pool must be 'cls' or 'mean'"):
        ViTConfig(**{**SMALL, "pool": "max"})
    with pytest.raises(TypeError, match="not both"):
        ViT(ViTConfig(**SMALL), depth=3)
    cfg = from_dict(ViTConfig, {**SMALL, "image_size": [8, 8]}, "model")
    assert cfg.image_size == (8, 8)
    rebuilt = ViTConfig(**to_dict(cfg))  # what a checkpoint stores: lists for tuples
    assert rebuilt == cfg and dataclasses.is_dataclass(rebuilt)
    with pytest.raises(ConfigError, match="missing key 'model.depth'"):
        from_dict(ViTConfig, {k: v for k, v in SMALL.items() if k != "depth"}, "model")


def test_registered_and_the_preset_config_builds(configs_dir):
    assert MODELS["vit"] == (ViTConfig, ViT)
    raw = load_toml(configs_dir / "digits_vit.toml")
    cfg = from_dict(ViTConfig, raw["model"], "model")
    model = build_model(cfg)
    assert isinstance(model, ViT) and model.config.num_classes == 10
    assert model(torch.rand(2, 8, 8))[0].shape == (2, 10)


def test_tiny_vit_fits_a_small_batch():
    torch.manual_seed(0)
    model = ViT(**SMALL)
    x = torch.rand(20, 8, 8)
    y = torch.arange(20) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    logits, final = model(x, y)
    assert final.item() < 0.1
    assert (logits.argmax(-1) == y).float().mean().item() == 1.0


def test_config_input_shape_and_the_settings_that_read_a_shape():
    cfg = ViTConfig(**SMALL)
    assert cfg.input_shape == (8, 8) and cfg.settings_for_input((8, 8)) == {}
    rgb = ViTConfig(**{**SMALL, "image_size": (8, 4), "channels": 3})
    assert rgb.input_shape == (3, 8, 4)
    assert rgb.settings_for_input((8, 8)) == {"image_size": 8, "channels": 1}
    assert cfg.settings_for_input((3, 16, 4)) == {"image_size": [16, 4], "channels": 3}
    assert cfg.settings_for_input((64,)) == {}


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "--model.image_size=16",
            "model 'vit' reads examples of shape (16, 16) (model.image_size = 16) but data "
            "'digits' gives (8, 8); set --model.image_size=8",
        ),
        (
            "--model.channels=3",
            "model 'vit' reads examples of shape (3, 8, 8) (model.channels = 3) but data "
            "'digits' gives (8, 8); set --model.channels=1",
        ),
        (
            "--data.view=pixels",
            "model 'vit' reads examples of shape (8, 8) (model.image_size = 8) but data "
            "'digits' gives (64, 1); set --model.image_size=[64,1]",
        ),
    ],
)
def test_cli_refuses_an_image_shape_the_data_does_not_give(override, message, configs_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", str(configs_dir / "digits_vit.toml"), override, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # refused before a run directory was made


def test_attention_weights_are_computed_in_eval_mode_and_the_mode_is_restored():
    torch.manual_seed(0)
    model = ViT(**{**SMALL, "dropout": 0.5})
    x = torch.rand(2, 8, 8)
    expected = model.eval().attention_weights(x)
    model.train()
    again = model.attention_weights(x)  # dropout would zero and rescale weights in train mode
    assert model.training and all(m.training for m in model.modules())
    for w, e in zip(again, expected):
        assert torch.equal(w, e)
        assert_close(w.sum(-1), torch.ones(2, 2, 17), "weight sums", atol=1e-5, rtol=ALLCLOSE_RTOL)
    model.eval()
    model.attention_weights(x)
    assert not any(m.training for m in model.modules())


def test_digits_vit_preset_trains_end_to_end_through_the_cli(configs_dir, tmp_path, capsys):
    argv = [
        "train",
        str(configs_dir / "digits_vit.toml"),
        "--train.max_steps=2",
        "--train.tensorboard=false",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert main(argv) == 0
    run = next(tmp_path.iterdir())
    assert run.name.startswith("digits-vit-")
    summary = json.loads((run / "summary.json").read_text())
    cfg = from_dict(ViTConfig, load_toml(configs_dir / "digits_vit.toml")["model"], "model")
    assert summary["steps"] == 2 and summary["task"] == "classification" and summary["model"] == "vit"
    assert summary["params"] == sum(p.numel() for p in ViT(cfg).parameters())
    assert 0.0 <= summary["test/accuracy"] <= 1.0 and summary["test/loss"] > 0
    # Two steps leave the 10-class ViT near chance: the loss near ln 10.
    assert abs(summary["test/loss"] - math.log(10)) < 0.5
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test/loss"] == pytest.approx(summary["test/loss"], abs=1e-5)
    assert again["test/accuracy"] == pytest.approx(summary["test/accuracy"], abs=1e-6)  # eval prints 6 decimals
