"""seqlab export: safetensors round trips, ONNX checked with onnxruntime, Hugging Face GPT-2 both ways, refusals.

Runs are made here from tiny randomly initialised models (a checkpoint as the trainer writes it),
so no test trains. The ONNX and Hugging Face tests skip, saying why, where their optional packages
are missing; `make test` installs them (the dev extra).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.config import ConfigError, to_dict
from seqlab.data.seq2seq import ReverseConfig
from seqlab.data.text import CharLMConfig
from seqlab.export import export_run, load_vocabularies
from seqlab.export.common import _export_files
from seqlab.generate import generate
from seqlab.models import (
    GPT,
    ClassifierConfig,
    GPTConfig,
    LanguageModelConfig,
    RecurrentForecasterConfig,
    Seq2SeqRNNConfig,
    Seq2SeqTransformerConfig,
    ViTConfig,
    build_model,
)
from seqlab.train.checkpoint import save_checkpoint
from seqlab.train.config import TrainConfig

CHARS = 58  # the embedded Shakespeare sample's characters: the char_lm vocabulary, built without a file
DIGITS = {"name": "digits"}  # a classification run needs no data to export
SUNSPOTS = {"name": "sunspots"}  # embedded: read for the series' normalization


def make_run(root: Path, model: torch.nn.Module, data: dict, task: str, name: str = "run") -> Path:
    """A run directory holding checkpoints/last.pt as the trainer writes it (model, configs, step, task)."""
    run = root / name
    save_checkpoint(
        run / "checkpoints" / "last.pt",
        {
            "model": model.state_dict(),
            "model_config": to_dict(model.config),
            "data_config": data,
            "train_config": to_dict(TrainConfig()),
            "step": 7,
            "task": task,
        },
    )
    return run


def tiny_gpt(seed: int = 0, **settings) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=CHARS, block_size=16, d_model=16, num_heads=2, num_layers=2, dropout=0.0)
    model = GPT(GPTConfig(**{**cfg, **settings})).eval()
    with torch.no_grad():  # weights far from GPT-2's init, so that greedy decoding does not repeat one token
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.5)
    return model


def gpt_run(root: Path, name: str = "gpt", **settings) -> tuple[Path, GPT]:
    model = tiny_gpt(**settings)
    return make_run(root, model, to_dict(CharLMConfig(seq_len=8)), "language_model", name), model


def tiny(config) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(config).eval()


# -- safetensors ----------------------------------------------------------------------------------


def test_safetensors_round_trip_gives_equal_outputs_without_reading_a_pickle(tmp_path, monkeypatch):
    run, model = gpt_run(tmp_path)
    out, files = export_run(run, format="safetensors")
    assert out == run / "export" / "safetensors"
    assert sorted(p.name for p in out.iterdir()) == sorted(files) == ["config.json", "model.safetensors", "vocab.json"]
    assert _export_files(out) == set(files)
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"] == to_dict(model.config) and config["source"]["step"] == 7
    assert config["seqlab_version"] == seqlab.__version__

    def no_pickle(*args, **kwargs):
        raise AssertionError("load_pretrained read a pickle")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    loaded = seqlab.load_pretrained(out)
    assert loaded.head.weight is loaded.embed.weight  # tied again, as the model was
    x = torch.randint(0, CHARS, (3, 16))
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])
    vocab = load_vocabularies(out)["vocab"]
    assert len(vocab) == CHARS and vocab.decode(vocab.encode(list("ROMEO:\n"))) == "ROMEO:\n"


def test_safetensors_round_trip_of_a_recurrent_classifier(tmp_path):
    model = tiny(ClassifierConfig(cell="gru", input_size=4, hidden_size=8, num_layers=2, bidirectional=True))
    out, files = export_run(
        make_run(tmp_path, model, DIGITS, "classification"), format="safetensors", out=tmp_path / "st"
    )
    assert "vocab.json" not in files  # a classifier has no vocabulary
    x = torch.randn(5, 6, 4)
    with torch.no_grad():
        assert torch.equal(seqlab.load_pretrained(out)(x)[0], model(x)[0])


def test_load_pretrained_names_what_is_wrong_with_the_folder(tmp_path):
    model = tiny(ClassifierConfig(cell="gru", input_size=4, hidden_size=8))
    out, _ = export_run(make_run(tmp_path, model, DIGITS, "classification"), format="safetensors", out=tmp_path / "st")
    with pytest.raises(ConfigError, match=f"export folder not found: {tmp_path / 'nowhere'}$"):
        seqlab.load_pretrained(tmp_path / "nowhere")
    config = json.loads((out / "config.json").read_text())
    config["model_config"]["hidden_size"] = 16  # weights of width 8, a config of width 16
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as err:
        seqlab.load_pretrained(out)
    message = str(err.value)
    assert message.startswith(f"cannot load {out / 'model.safetensors'} into the model its config.json describes: ")
    assert "size mismatch" in message and message.endswith("; export the run again")  # the details, not only the header
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (hf / "seqlab.json").write_text("{}")
    with pytest.raises(ConfigError, match="is a Hugging Face export \\(--format hf\\): load it with transformers"):
        seqlab.load_pretrained(hf)


def test_a_series_export_records_the_normalization_the_model_reads(tmp_path):
    from seqlab.data import build_splits
    from seqlab.data.series import SunspotsConfig

    model = tiny(RecurrentForecasterConfig(cell="lstm", hidden_size=8))
    out, _ = export_run(make_run(tmp_path, model, SUNSPOTS, "regression"), format="safetensors")
    scaler = build_splits(SunspotsConfig()).info["scaler"]
    stored = json.loads((out / "config.json").read_text())["normalization"]
    assert stored == {"shift": scaler.shift, "scale": scaler.scale, "kind": "standard"} and scaler.scale > 1


# -- ONNX, checked with onnxruntime ------------------------------------------------------------------

SIZES = [(2, 3), (1, 5), (5, 9)]  # (batch, length): the export's example first, then lengths it never saw


@functools.cache
def ort_session(path: Path):
    ort = pytest.importorskip("onnxruntime", reason="the ONNX checks need onnxruntime (the dev extra)")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(path: Path, **inputs: torch.Tensor) -> np.ndarray:
    return ort_session(path).run(None, {k: v.numpy() for k, v in inputs.items()})[0]


def export_onnx(run: Path, out: Path) -> Path:
    pytest.importorskip("onnxscript", reason="ONNX export needs onnx and onnxscript (the export extra)")
    pytest.importorskip("onnxruntime", reason="the ONNX checks need onnxruntime (the dev extra)")
    out = export_run(run, format="onnx", out=out)[0]
    assert _export_files(out) == {p.name for p in out.iterdir()}  # --force may replace it
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, task, data, example",
    [
        # impl="reference" is exported through torch's kernel (ONNX's LSTM operator): same weights, same outputs
        (
            ClassifierConfig(cell="lstm", impl="reference", input_size=4, hidden_size=8, num_layers=2),
            "classification",
            DIGITS,
            lambda B, T: torch.randn(B, T, 4),
        ),
        (
            RecurrentForecasterConfig(cell="gru", hidden_size=8, num_components=2),
            "regression",
            SUNSPOTS,
            lambda B, T: torch.randn(B, T, 1),
        ),
        (
            ViTConfig(image_size=8, patch_size=4, num_classes=10, d_model=16, depth=1, num_heads=2, d_ff=32),
            "classification",
            DIGITS,
            lambda B, T: torch.randn(B, 8, 8),  # fixed image size: only the batch varies
        ),
        (
            LanguageModelConfig(vocab_size=CHARS, embedding_size=8, hidden_size=8, num_layers=1),
            "language_model",
            to_dict(CharLMConfig(seq_len=8)),
            lambda B, T: torch.randint(0, CHARS, (B, T)),
        ),
        (None, "language_model", None, lambda B, T: torch.randint(0, CHARS, (B, T))),
    ],
    ids=["lstm_classifier", "gru_forecaster", "vit", "lstm_lm", "gpt"],
)
def test_onnx_outputs_equal_seqlabs_at_three_sizes(tmp_path, capfd, config, task, data, example):
    if config is None:
        run, model = gpt_run(tmp_path)
    else:
        model = tiny(config)
        run = make_run(tmp_path, model, data, task)
    out = export_onnx(run, tmp_path / "onnx")
    assert {"model.onnx", "config.json"} <= {p.name for p in out.iterdir()}
    for B, T in SIZES:
        x = example(B, T)
        with torch.no_grad():
            expected = model(x)[0].numpy()
        name = {"vit": "images", "gpt": "ids", "rnn_lm": "ids"}.get(model.config.name, "x")
        got = run_onnx(out / "model.onnx", **{name: x})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # The graph's output shape has the dynamic axes too: onnxruntime warns (on stderr) when a shape it reads disagrees.
    assert "VerifyOutputSizes" not in capfd.readouterr().err


@pytest.mark.slow
def test_onnx_seq2seq_transformer_encoder_and_decoder_fed_a_prefix(tmp_path):
    config = Seq2SeqTransformerConfig(
        src_vocab_size=13, tgt_vocab_size=13, max_src_len=11, max_tgt_len=12, d_model=16, num_heads=2,
        num_encoder_layers=1, num_decoder_layers=1, d_ff=32, dropout=0.0,
    )  # fmt: skip
    model = tiny(config)
    data = to_dict(ReverseConfig(num_train=50, num_val=5, num_test=5))  # its vocabulary is what matters here
    out = export_onnx(make_run(tmp_path, model, data, "seq2seq"), tmp_path / "onnx")
    assert "src_vocab" in json.loads((out / "vocab.json").read_text())
    g = torch.Generator().manual_seed(1)
    for B, S, T in [(2, 4, 3), (1, 7, 2), (4, 11, 8)]:
        src = torch.randint(3, 13, (B, S), generator=g)
        lengths = torch.randint(1, S + 1, (B,), generator=g)
        lengths[0] = S
        src[torch.arange(S) >= lengths[:, None]] = 0  # right-padded with <pad>
        prefix = torch.randint(3, 13, (B, T), generator=g)
        prefix[:, 0] = 1  # <bos>
        with torch.no_grad():
            memory, src_mask, _ = model.encode(src, lengths)
            logits = model.decode_prefix(memory, src_mask, prefix)[0]
            # the decoder's logits are the model's teacher-forced ones
            y = torch.cat((prefix, torch.full((B, 1), 2)), dim=1)
            assert torch.allclose(model(src, y)[0], logits, atol=1e-6)
        got_memory = run_onnx(out / "encoder.onnx", source=src, source_lengths=lengths)
        np.testing.assert_allclose(got_memory, memory.numpy(), atol=1e-4, rtol=0)
        got = run_onnx(out / "decoder.onnx", memory=memory, source_lengths=lengths, prefix=prefix)
        np.testing.assert_allclose(got, logits.numpy(), atol=1e-4, rtol=0)


# -- refusals: one line, exit status 2, nothing written -----------------------------------------------


def one_line_error(capsys, argv: list[str]) -> str:
    status = main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("seqlab export: error: "), err
    return err


def test_refusals_are_one_line_errors_and_write_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.toml").write_text("")
    assert "no checkpoint yet" in one_line_error(capsys, ["export", str(empty), "--format", "safetensors"])

    corrupt, _ = gpt_run(tmp_path, name="corrupt")
    ckpt = corrupt / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # cut short, as by a full disk or an interrupted copy
    assert "is damaged and cannot be read" in one_line_error(capsys, ["export", str(corrupt), "--format", "onnx"])

    run, _ = gpt_run(tmp_path, positions="rotary")
    err = one_line_error(capsys, ["export", str(run), "--format", "tflite"])
    assert "unknown export format 'tflite'" in err and "safetensors, onnx, hf" in err
    pytest.importorskip("transformers", reason="the rotary refusal is --format hf's (the hf extra)")
    assert "no rotary positions" in one_line_error(capsys, ["export", str(run), "--format", "hf"])
    for folder in (empty, corrupt, run):  # no export folder, no temporary left behind
        assert not (folder / "export").exists()


@pytest.mark.parametrize(
    "config, reason",
    [
        (ClassifierConfig(cell="layernorm_lstm", input_size=4, hidden_size=8), "model.cell = 'layernorm_lstm'"),
        (ClassifierConfig(cell="rnn", input_size=4, hidden_size=8), "model.cell = 'rnn'"),
        (Seq2SeqRNNConfig(src_vocab_size=9, tgt_vocab_size=9, embedding_size=8, hidden_size=8), "seq2seq_rnn"),
    ],
    ids=["layernorm_lstm", "rnn", "seq2seq_rnn"],
)
def test_onnx_refuses_what_it_cannot_export_with_the_reason(tmp_path, capsys, config, reason):
    pytest.importorskip("onnxscript", reason="ONNX export needs onnx and onnxscript (the export extra)")
    data = to_dict(ReverseConfig()) if config.name == "seq2seq_rnn" else DIGITS
    run = make_run(tmp_path, tiny(config), data, "seq2seq" if config.name == "seq2seq_rnn" else "classification")
    assert reason in one_line_error(capsys, ["export", str(run), "--format", "onnx"])
    assert not (run / "export").exists() and not list(run.glob("export/.*"))


def test_a_non_empty_out_is_kept_unless_forced(tmp_path, capsys):
    model = tiny(ClassifierConfig(input_size=4, hidden_size=8))
    run = make_run(tmp_path, model, DIGITS, "classification")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    argv = ["export", str(run), "--format", "safetensors", "--out", str(out)]
    assert "--force" in one_line_error(capsys, argv)
    assert "holds mine.txt, which seqlab export did not write" in one_line_error(capsys, [*argv, "--force"])
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"
    (out / "mine.txt").unlink()
    assert main(argv) == 0  # an empty folder takes the export
    assert main([*argv, "--force"]) == 0  # and --force replaces that export
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_force_replaces_only_an_earlier_export(tmp_path, capsys):
    """--out given a run directory, a folder of runs or a run's checkpoints/ is refused even with
    --force, and nothing in it changes; an earlier export is replaced."""
    model = tiny(ClassifierConfig(input_size=4, hidden_size=8))
    runs = tmp_path / "runs"
    run = make_run(runs, model, DIGITS, "classification")
    (runs / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()}
    for out, named in ((run, "checkpoints"), (runs, "notes.txt"), (run / "checkpoints", "last.pt")):
        err = one_line_error(capsys, ["export", str(run), "--format", "safetensors", "--out", str(out), "--force"])
        assert f"--out {out} holds" in err and named in err and "seqlab export did not write" in err, err
    assert {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()} == before
    out = tmp_path / "out"
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 0
    first = (out / "config.json").read_text()
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "config.json").read_text() == first
    umask = os.umask(0)
    os.umask(umask)
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == dict.fromkeys(
        ["config.json", "model.safetensors"], 0o666 & ~umask
    )  # safetensors writes 0600; the export gives every file the usual permissions


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads fsync's file names from /proc/self/fd")
def test_exported_files_reach_the_disk_before_the_folder_is_renamed(tmp_path, monkeypatch):
    model = tiny(ClassifierConfig(input_size=4, hidden_size=8))
    run = make_run(tmp_path, model, DIGITS, "classification")
    out, synced, fsync = tmp_path / "out", [], os.fsync

    def record(fd):
        synced.append((Path(os.readlink(f"/proc/self/fd/{fd}")).name, out.exists()))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 0
    assert sorted(synced) == [("config.json", False), ("model.safetensors", False)]  # each, before `out` existed


def test_gpt_activation_is_checked_and_gelu_tanh_is_gpt2s_gelu_new():
    from seqlab.nn.transformer import ACTIVATIONS

    with pytest.raises(ValueError, match="model.activation must be one of gelu, gelu_tanh, got 'relu'"):
        GPTConfig(vocab_size=5, activation="relu")
    assert {layer.ff.activation for layer in tiny_gpt(activation="gelu_tanh").stack.layers} == {"gelu_tanh"}
    h = torch.randn(3, 16, dtype=torch.float64)
    gelu_new = 0.5 * h * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (h + 0.044715 * h**3)))  # Hugging Face's formula
    torch.testing.assert_close(ACTIVATIONS["gelu_tanh"](h), gelu_new, atol=1e-12, rtol=0)
    assert (ACTIVATIONS["gelu"](h) - gelu_new).abs().max() > 1e-5


# -- Hugging Face GPT-2, both ways ------------------------------------------------------------------


def hf_greedy(hf, prompt: torch.Tensor, n: int) -> torch.Tensor:
    out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[:, prompt.shape[1] :]


@pytest.mark.parametrize(
    "settings",
    [dict(activation="gelu_tanh"), dict(activation="gelu", bias=False, tie_weights=False)],
    ids=["gelu_tanh-tied", "gelu-no_bias-untied"],
)
def test_hf_export_loads_in_transformers_with_equal_logits_and_greedy_text(tmp_path, settings):
    transformers = pytest.importorskip("transformers", reason="--format hf needs transformers (the hf extra)")
    run, model = gpt_run(tmp_path, **settings)
    out, files = export_run(run, format="hf")
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "seqlab.json", "README.md"} <= set(
        files
    )
    assert _export_files(out) == set(files)  # the manifest lists every file: --force may replace the folder
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    x = torch.randint(0, CHARS, (3, 16))
    with torch.no_grad():
        assert (hf(x).logits - model(x)[0]).abs().max() <= 1e-5
    prompt = x[:, :4]
    ours = generate(model, prompt=prompt, max_new_tokens=12).sequences
    assert torch.equal(hf_greedy(hf, prompt, 12), ours)
    assert len(set(ours.flatten().tolist())) > 3  # a real continuation, not one token repeated
    # The tokenizer maps characters to the ids the model was trained with, and back.
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    vocab = load_vocabularies(out)["vocab"]
    text = "ROMEO:\nO, she doth teach!"
    assert tokenizer(text)["input_ids"] == vocab.encode(list(text))
    assert tokenizer.decode(vocab.encode(list(text))) == text


def tiny_gpt2(transformers, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=31, n_positions=24, n_embd=16, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None
    )
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # weights far from the init, so that greedy decoding does not repeat one token
        for name, p in hf.named_parameters():
            if ".ln_" not in name:
                p.normal_(0.0, 0.5)
    return hf


def test_gpt_from_hf_gives_equal_logits_and_the_same_greedy_continuation(tmp_path):
    transformers = pytest.importorskip("transformers", reason="GPT.from_hf's test needs transformers (the hf extra)")
    hf = tiny_gpt2(transformers)
    hf.save_pretrained(tmp_path / "gpt2")
    x = torch.randint(0, 31, (2, 24))
    with torch.no_grad():
        expected = hf(x).logits
    for source in (hf, tmp_path / "gpt2"):
        model = GPT.from_hf(source)
        assert model.config.activation == "gelu_tanh" and model.block_size == 24
        with torch.no_grad():
            assert (model(x)[0] - expected).abs().max() <= 1e-5
        prompt = x[:, :5]
        ours = generate(model, prompt=prompt, max_new_tokens=15).sequences
        assert torch.equal(ours, hf_greedy(hf, prompt, 15))
        assert len(set(ours.flatten().tolist())) > 3
    # Exact GELU instead of GPT-2's tanh approximation gives other logits: the setting is what makes them equal.
    exact = GPT(GPTConfig(**{**to_dict(model.config), "activation": "gelu"})).eval()
    exact.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (exact(x)[0] - expected).abs().max() > 1e-5


def test_gpt_from_hf_refuses_what_seqlabs_gpt_does_not_compute():
    transformers = pytest.importorskip("transformers", reason="GPT.from_hf's test needs transformers (the hf extra)")
    hf = tiny_gpt2(transformers)
    hf.config.activation_function = "relu"
    with pytest.raises(ValueError, match="activation_function = 'relu'"):
        GPT.from_hf(hf)


def test_export_run_refuses_an_unknown_format_before_reading_the_run(tmp_path):
    with pytest.raises(ConfigError, match="unknown export format"):
        export_run(tmp_path / "nowhere", format="pickle")


class _ReadsAValue(torch.nn.Module):
    def forward(self, x):  # branches on a tensor's value: no graph holds that
        return x if x.sum() > 0 else -x


class _FixesTheBatch(torch.nn.Module):
    def forward(self, x):  # traced with batch 2, the graph would take batch 2 only
        return x * 2 if x.shape[0] == 2 else x


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, reason",
    [
        (_ReadsAValue(), "torch.onnx.export failed for m.onnx: Could not guard on data-dependent expression"),
        (_FixesTheBatch(), "m.onnx: tracing fixed input 'x' axis 0 (batch) at 2"),
    ],
    ids=["data_dependent", "specialised"],
)
def test_a_graph_torch_cannot_export_is_refused_in_one_line_without_torchs_dump(tmp_path, capfd, module, reason):
    pytest.importorskip("onnxscript", reason="ONNX export needs onnx and onnxscript (the export extra)")
    from seqlab.export.onnx import Graph, export_graph

    graph = Graph("m.onnx", module, {"x": torch.randn(2, 3)}, {"x": {0: "batch"}}, ["y"], {})
    with pytest.raises(ConfigError) as refused:
        export_graph(graph, tmp_path / "m.onnx")
    assert str(refused.value).startswith(reason) and "\n" not in str(refused.value)
    assert capfd.readouterr() == ("", "")  # torch's graph dumps and warnings do not reach the terminal
