"""The ONNX export: each model as a graph with dynamic batch (and sequence) axes, through ``torch.onnx.export``.

What is exported, per model (inputs -> outputs):

    rnn_classifier, rnn_lm, rnn_forecaster   x (B, T, C) or ids (B, T) -> the model's output
    mlp_ar, transformer_forecaster            x (B, tau, C) -> x_hat (B, D)          tau fixed by the config
    vit                                       images (B, [C,] H, W) -> logits (B, K)
    gpt                                       ids (B, T), T <= block_size -> logits (B, T, V)
    seq2seq_transformer                       encoder.onnx: ids (B, S), lengths (B,) -> memory (B, S, d)
                                              decoder.onnx: memory, lengths, prefix (B, T) -> logits (B, T, V)

A recurrent layer is exported through torch's own kernel (ONNX's LSTM and GRU operators) whatever
its ``impl``: the reference loop, traced, would be unrolled over the example's time steps and take
that length only. That is also why a vanilla RNN, a LayerNormLSTM and seq2seq_rnn (a decoder loop
with input feeding) are refused. After the export every axis meant to be dynamic is checked to
be one in the graph: one fixed by tracing is refused too, never written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..config import ConfigError
from ..nn.masks import key_padding_mask
from ..nn.recurrent import _RecurrentBase
from ..torch_internals import forget_rnn_dispatch
from .common import CONFIG_FILE, VOCAB_FILE, ExportedRun, config_json, vocab_json, write_json

OPSET = 18
RECURRENT_CELLS = ("lstm", "gru")  # the cells ONNX has operators for, reached through torch's kernels
REFUSED = {
    "seq2seq_rnn": "its decoder is a Python loop over target steps (input feeding), which ONNX export unrolls "
    "to one fixed length; export a seq2seq_transformer run, or use --format safetensors",
}


@dataclass
class Graph:
    """One ONNX file: a module, example inputs, names, and the axes of each input that stay dynamic."""

    file: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]  # name -> example
    dynamic: dict[str, dict[int, str]]  # input name -> {axis: axis name}
    outputs: dict[str, dict[int, str]]  # output name -> {axis: axis name}, as the model's contract has them
    limits: dict[str, int]  # axis name -> largest size the model reads (a context length)


class _Output(nn.Module):
    """model(x) -> its first output (logits or the prediction), without the loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


class _Encoder(nn.Module):
    """A seq2seq Transformer's encoder: ids (B, S), lengths (B,) -> memory (B, S, d_model)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, source: torch.Tensor, source_lengths: torch.Tensor) -> torch.Tensor:
        return self.model.encode(source, source_lengths)[0]


class _DecoderPrefix(nn.Module):
    """A seq2seq Transformer's decoder fed a target prefix: memory, lengths, prefix (B, T) -> logits (B, T, V)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, memory: torch.Tensor, source_lengths: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        src_mask = key_padding_mask(source_lengths, memory.shape[1])  # (B, 1, 1, S)
        return self.model.decode_prefix(memory, src_mask, prefix)[0]


def _kernel_path(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose recurrent layers run torch's kernel (impl "fused"): same weights, same function."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, _RecurrentBase):
            module.impl = "fused"
    return model


def onnx_graphs(model: nn.Module) -> list[Graph]:
    """The graphs that export ``model`` (eval mode); ConfigError with the reason for one that cannot be."""
    c = model.config
    if c.name in REFUSED:
        raise ConfigError(f"{c.name} has no ONNX export: {REFUSED[c.name]}")
    B, T = 2, 3  # example sizes: neither 0 nor 1, which tracing would take as constants
    if hasattr(c, "cell"):
        if c.cell not in RECURRENT_CELLS:
            raise ConfigError(
                f"model.cell = {c.cell!r} has no ONNX export: ONNX has LSTM and GRU operators, and tracing "
                f"seqlab's own {c.cell} loop would fix the sequence length; export with --format safetensors"
            )
        model = _kernel_path(model)
    g = torch.Generator().manual_seed(0)
    if c.name in ("rnn_classifier", "rnn_forecaster"):
        x = torch.randn(B, T, c.input_size, generator=g)
        per_step = getattr(c, "per_step", False)  # a sequence labeller: one output per time step
        out = {"output": {0: "batch", 1: "time"} if per_step else {0: "batch"}}
        return [Graph("model.onnx", _Output(model), {"x": x}, {"x": {0: "batch", 1: "time"}}, out, {})]
    if c.name in ("mlp_ar", "transformer_forecaster"):
        x = torch.randn(B, c.tau, c.input_size, generator=g)
        return [Graph("model.onnx", _Output(model), {"x": x}, {"x": {0: "batch"}}, {"output": {0: "batch"}}, {})]
    if c.name == "vit":
        x = torch.randn(B, *c.input_shape, generator=g)
        return [
            Graph("model.onnx", _Output(model), {"images": x}, {"images": {0: "batch"}}, {"logits": {0: "batch"}}, {})
        ]
    if c.name in ("gpt", "rnn_lm"):
        limits = {"time": c.block_size} if c.name == "gpt" else {}
        ids = torch.randint(0, c.vocab_size, (B, min(T, limits.get("time", T))), generator=g)
        axes = {0: "batch", 1: "time"}
        return [Graph("model.onnx", _Output(model), {"ids": ids}, {"ids": axes}, {"logits": axes}, limits)]
    if c.name == "seq2seq_transformer":
        src = torch.randint(3, c.src_vocab_size, (B, T + 1), generator=g)
        lengths = torch.tensor([T + 1, T])
        prefix = torch.randint(3, c.tgt_vocab_size, (B, T), generator=g)
        memory = torch.randn(B, T + 1, c.d_model, generator=g)
        axes = {"source_lengths": {0: "batch"}}
        return [
            Graph(
                "encoder.onnx",
                _Encoder(model),
                {"source": src, "source_lengths": lengths},
                {"source": {0: "batch", 1: "source_len"}, **axes},
                {"memory": {0: "batch", 1: "source_len"}},
                {"source_len": c.max_src_len},
            ),
            Graph(
                "decoder.onnx",
                _DecoderPrefix(model),
                {"memory": memory, "source_lengths": lengths, "prefix": prefix},
                {"memory": {0: "batch", 1: "source_len"}, **axes, "prefix": {0: "batch", 1: "target_len"}},
                {"logits": {0: "batch", 1: "target_len"}},
                {"source_len": c.max_src_len, "target_len": c.max_tgt_len - 1},
            ),
        ]
    raise ConfigError(f"model {c.name!r} has no ONNX export; use --format safetensors")


def _dims(graph: Graph) -> tuple:
    """torch.export's dynamic_shapes for the graph: one Dim per axis name, shared between inputs."""
    dims = {}
    for axes in graph.dynamic.values():
        for name in axes.values():
            if name not in dims:
                limit = {"max": graph.limits[name]} if name in graph.limits else {}
                dims[name] = torch.export.Dim(name, min=1, **limit)
    return tuple({axis: dims[name] for axis, name in graph.dynamic.get(k, {}).items()} or None for k in graph.inputs)


@contextlib.contextmanager
def _quiet():
    """torch.onnx.export's progress lines, warnings and log records are not the user's business when it works."""
    loggers = [logging.getLogger(name) for name in ("torch", "torch.onnx", "torch.export", "onnxscript")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def export_graph(graph: Graph, path: Path) -> None:
    """Write ``graph`` to ``path``; ConfigError if torch cannot export it or an axis meant to be dynamic was fixed."""
    import onnx

    forget_rnn_dispatch()  # an earlier export in this process must not decide how this one traces an LSTM
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                graph.module.eval(),
                tuple(graph.inputs.values()),
                dynamo=True,
                dynamic_shapes=_dims(graph),
                input_names=list(graph.inputs),
                output_names=list(graph.outputs),
                opset_version=OPSET,
            )
            program.save(str(path))
    except Exception as err:  # noqa: BLE001 -- torch raises many types; the user gets one line, not a trace dump
        raise ConfigError(f"torch.onnx.export failed for {graph.file}: {_first_line(err)}") from None
    proto = onnx.load(str(path), load_external_data=False)
    for value in proto.graph.input:
        shape = value.type.tensor_type.shape.dim
        for axis, name in graph.dynamic.get(value.name, {}).items():
            if shape[axis].HasField("dim_value"):
                raise ConfigError(
                    f"{graph.file}: tracing fixed input {value.name!r} axis {axis} ({name}) at "
                    f"{shape[axis].dim_value}; this model has no ONNX export with that axis dynamic"
                )
    # The outputs' axes as the model's contract has them. The exporter's shape annotations may keep the
    # example's length after an LSTM (the values are right), which onnxruntime then warns about at every
    # other length: the intermediate annotations are dropped (they are optional; onnxruntime infers its own).
    del proto.graph.value_info[:]
    for value in proto.graph.output:
        shape = value.type.tensor_type.shape.dim
        for axis, name in graph.outputs[value.name].items():
            shape[axis].dim_param = name  # replaces a dim_value: one of the two is set
    onnx.save(proto, str(path))


def _first_line(err: BaseException) -> str:
    """The first line of the innermost cause (torch's own message says only which export step failed), no colours."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
    return next((line for line in lines if line), type(err).__name__)[:300]


def write_onnx(run: ExportedRun, out: Path) -> None:
    """The model's ONNX graph(s), config.json and vocab.json into ``out``."""
    graphs = onnx_graphs(run.model)  # a refusal first: it needs neither the packages nor the data
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"--format onnx needs the onnx and onnxscript packages ({err}): pip install 'seqlab[export]'"
        ) from None
    files = {}
    for graph in graphs:
        export_graph(graph, out / graph.file)
        shapes = ", ".join(
            f"{name} ({', '.join(graph.dynamic.get(name, {}).get(a, str(n)) for a, n in enumerate(t.shape))})"
            for name, t in graph.inputs.items()
        )
        files[graph.file] = f"inputs {shapes} -> {', '.join(graph.outputs)}"
    if run.vocabularies:
        write_json(out / VOCAB_FILE, vocab_json(run))
        files[VOCAB_FILE] = "token <-> id"
    write_json(out / CONFIG_FILE, {**config_json(run, "onnx", files), "opset": OPSET})
