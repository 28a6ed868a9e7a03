"""What the seq2seq model families (``seq2seq_rnn``, ``seq2seq_transformer``) share.

Batches are the layout of ``seqlab.data.seq2seq`` (a contract, not an import: models do not
read data code):

- source ``x`` (B, S): source ids + <eos>, right-padded with <pad>;
- target ``y`` (B, U): <bos> + target ids + <eos>, right-padded;
- source lengths (B,) = (x != <pad>).sum(-1), so a trainer that slices only (x, y) loses nothing.

Training is teacher-forced: the decoder reads y[:, :-1] and predicts y[:, 1:]. Each batch is cut
to its own longest source and target first, so a batch never pays for the dataset's longest
sentence. The loss is the mean cross-entropy per real target token (<eos> included, <pad> not),
with label smoothing while training only (validation and test report the plain NLL).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import ConfigError, check_at_least, check_fraction
from ..nn.losses import token_cross_entropy
from ..task import Task

SPECIAL_IDS = ("pad_id", "bos_id", "eos_id")  # seqlab vocabularies: <pad>=0, <bos>=1, <eos>=2, <unk>=3
VOCAB_SIZES = ("src_vocab_size", "tgt_vocab_size")  # 0 in a config: take the data's


def check_seq2seq_config(cfg) -> None:
    """The checks every seq2seq config shares (``__post_init__``)."""
    check_at_least("model", cfg, *VOCAB_SIZES, minimum=0)
    check_at_least("model", cfg, *SPECIAL_IDS, minimum=0)
    check_fraction("model", cfg, "dropout", "label_smoothing")
    if len({cfg.pad_id, cfg.bos_id, cfg.eos_id}) != 3:
        raise ValueError(
            f"model.pad_id, model.bos_id and model.eos_id must differ, got {cfg.pad_id}, {cfg.bos_id}, {cfg.eos_id}"
        )


def check_seq2seq_data(cfg, info: dict) -> None:
    """A ConfigError naming both numbers when the data's vocabularies or special ids differ from the model's."""
    if info.get("task") != Task.SEQ2SEQ:
        raise ConfigError(
            f"model '{cfg.name}' translates sequences: it needs a seq2seq dataset (copy, reverse, "
            f"sort, dates, pairs), got task '{info.get('task')}'"
        )
    for key in (*VOCAB_SIZES, *SPECIAL_IDS):
        if key in info and getattr(cfg, key) != info[key]:
            raise ConfigError(
                f"model.{key} = {getattr(cfg, key)} but the data gives {info[key]}; "
                f"set --model.{key}={info[key]}" + (" (or 0 to take it from the data)" if key in VOCAB_SIZES else "")
            )


def check_built(cfg) -> None:
    """A model cannot be built with a vocabulary size of 0 (the trainer fills them in from the data)."""
    for key in VOCAB_SIZES:
        if getattr(cfg, key) < 1:
            raise ValueError(
                f"model.{key} is {getattr(cfg, key)}: set it, or train through seqlab, which takes it from the data"
            )


def lengths_of(x: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, S) ids right-padded with ``pad_id`` -> lengths (B,)."""
    return (x != pad_id).sum(-1)


def check_ids(name: str, ids: torch.Tensor, vocab_size: int) -> None:
    if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"expected {name} token ids of shape (B, L) and an integer dtype, got {tuple(ids.shape)} {ids.dtype}"
        )
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"{name} ids must be in 0..{vocab_size - 1} (the model's vocabulary), "
            f"got {int(ids.min())}..{int(ids.max())}"
        )


class Seq2SeqModel(nn.Module):
    """forward(x, y) -> (logits, loss), and the decoding contract's ids; subclasses encode and decode.

    A subclass implements ``_teacher_forced(x, lengths, y_in, need_weights) -> (logits (B, T, V),
    weights | None)`` and the incremental-decoding methods (``seqlab.models.decoding``).
    """

    def __init__(self, config):
        super().__init__()
        check_built(config)
        self.config = config
        self.vocab_size = config.tgt_vocab_size  # the decoding contract's output size

    def decoding_special_ids(self) -> dict:
        c = self.config
        return {"bos": c.bos_id, "eos": c.eos_id, "pad": c.pad_id}

    def loss_tokens(self, y: torch.Tensor) -> torch.Tensor:
        """How many target tokens forward's loss averages over: y (B, U) -> the non-pad ids of y[:, 1:].
        Evaluation weights each batch's loss by it, so the mean is per token, whatever the batching."""
        return (y[:, 1:] != self.config.pad_id).sum()

    def _source(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked source ids cut to the batch's longest (B, S_b), and lengths (B,)."""
        check_ids("source", x, self.config.src_vocab_size)
        lengths = lengths_of(x, self.config.pad_id) if lengths is None else lengths.to(x.device)
        if lengths.shape != (x.shape[0],):
            raise ValueError(f"source_lengths must be (B,) = ({x.shape[0]},), got {tuple(lengths.shape)}")
        if len(lengths) and int(lengths.min()) < 1:
            raise ValueError("every source needs at least one token (its <eos>); got an empty row")
        S = int(lengths.max()) if len(lengths) else 0
        return x[:, :S], lengths  # (B, S_b), (B,)

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        source_lengths: torch.Tensor | None = None,
        need_weights: bool = False,
    ):
        """x (B, S) source ids, y (B, U) <bos> + target + <eos> -> logits (B, U_b - 1, V), loss.

        U_b is the batch's longest target; logits[:, t] predicts y[:, t + 1] from y[:, :t + 1].
        The loss is None without y. With ``need_weights``, a third element: the attention
        weights (a dict, see the subclass), for plotting.
        """
        if y is None:
            raise ValueError(
                "a seq2seq forward needs the target y (B, U) for teacher forcing; "
                "decode without one through seqlab.generate.generate"
            )
        x, lengths = self._source(x, source_lengths)
        check_ids("target", y, self.config.tgt_vocab_size)
        U = int(lengths_of(y, self.config.pad_id).max()) if len(y) else y.shape[1]
        if U < 2:
            raise ValueError(f"targets need <bos> and <eos> at least (2 tokens), got length {U}")
        y = y[:, :U]  # (B, U_b)
        y_in, y_out = y[:, :-1], y[:, 1:]  # (B, U_b - 1) each: teacher forcing
        logits, weights = self._teacher_forced(x, lengths, y_in, need_weights)  # (B, U_b - 1, V)
        smoothing = self.config.label_smoothing if self.training else 0.0
        loss = token_cross_entropy(logits, y_out, ignore_index=self.config.pad_id, label_smoothing=smoothing)
        return (logits, loss, weights) if need_weights else (logits, loss)
