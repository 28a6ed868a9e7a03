"""Generate from a run, ``seqlab generate``'s work: a run's model and vocabulary, text in, generated text out.

A language-model run continues prompts; a seq2seq run translates sources. Inputs are decoded in
batches (a language model's prompts grouped by length, since every row of a prompt batch has the
same length; sources sorted by length and padded), and results come back in input order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ConfigError
from ..data import resolve_locations
from ..data.pairs import PairsConfig, clean, tokenize
from ..generate import GenerationConfig, generate
from ..models.decoding import IncrementalDecoder
from ..task import Task
from ..train.config import Experiment
from ..train.distributed import resolve_device
from ..train.seq2seq_metrics import detokenize
from .store import build_run_data, data_file_changes, load_run

GENERATIVE = {Task.LANGUAGE_MODEL: "prompt", Task.SEQ2SEQ: "source"}  # task -> what it reads
KINDS = "language models (gpt, rnn_lm; --prompt) and seq2seq models (seq2seq_rnn, seq2seq_transformer; --source)"


@dataclass
class GenerationRun:
    """A run ready to generate: its experiment, model (eval mode, on ``device``), task and vocabularies."""

    run_dir: Path
    exp: Experiment
    model: torch.nn.Module
    task: Task  # LANGUAGE_MODEL or SEQ2SEQ
    info: dict
    device: torch.device

    @property
    def reads(self) -> str:
        return GENERATIVE[self.task]

    def encode(self, text: str, where: str) -> list[int]:
        """Input text -> ids: a prompt's characters, or a source's tokens (as the data tokenised them) + <eos>."""
        if self.task == Task.LANGUAGE_MODEL:
            if not text:
                raise ConfigError(f"{where}: a prompt needs at least one character (the model has no start token)")
            vocab = self.info["vocab"]
            missing = sorted({c for c in text if c not in vocab})
            if missing:
                raise ConfigError(
                    f"{where}: {', '.join(map(repr, missing[:5]))} not in the model's vocabulary "
                    f"({len(vocab)} characters of its training text)"
                )
            return vocab.encode(list(text))
        cfg = self.exp.data
        if isinstance(cfg, PairsConfig):  # a sentence-pair file: cleaned and tokenised as in training
            tokens = tokenize(clean(text, cfg.lowercase, cfg.normalize), cfg.tokenize)
        else:
            tokens = list(text) if self.info.get("token_separator", "") == "" else text.split()
        ids = self.info["src_vocab"].encode(tokens, eos=True)
        limit = getattr(self.model.config, "max_src_len", 0)
        if limit and len(ids) > limit:
            raise ConfigError(
                f"{where}: {len(ids)} tokens with <eos>, but the model reads at most model.max_src_len = {limit}"
            )
        return ids

    def decode(self, ids: list[int]) -> str:
        """Generated ids -> text (up to <eos>; <pad> and <bos> dropped)."""
        if self.task == Task.LANGUAGE_MODEL:
            return self.info["vocab"].decode(ids)
        vocab = self.info["tgt_vocab"]
        tokens = [vocab.itos[i] for i in ids if i not in (vocab.pad_id, vocab.bos_id)]
        if vocab.itos[vocab.eos_id] in tokens:
            tokens = tokens[: tokens.index(vocab.itos[vocab.eos_id])]
        return detokenize(tokens, self.info.get("token_separator", ""))

    def max_new_tokens_limit(self) -> int | None:
        """The most tokens the model can write (a seq2seq Transformer's max_tgt_len - 1), or None."""
        limit = getattr(self.model.config, "max_tgt_len", 0)
        return limit - 1 if limit else None

    def default_max_new_tokens(self) -> int:
        """A language model: 200 characters; seq2seq: its limit, else twice the data's longest target."""
        if self.task == Task.LANGUAGE_MODEL:
            return 200
        return self.max_new_tokens_limit() or 2 * max(self.info.get("max_tgt_len", 50) - 1, 1)


def load_generation_run(
    run_dir: str | Path,
    checkpoint: str = "last.pt",
    data_location: dict | None = None,
    notify: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> GenerationRun:
    """The run's model and vocabularies (rebuilt from its data), or a ConfigError for a run that cannot generate."""
    exp, model, ckpt = load_run(run_dir, checkpoint, data_location, action="generate from")
    task = Task(ckpt.get("task", Task.CLASSIFICATION))
    if task not in GENERATIVE or not isinstance(model, IncrementalDecoder):
        raise ConfigError(
            f"{run_dir} is a {task} run (model {exp.model.name}): it cannot generate; seqlab generate decodes {KINDS}"
        )
    exp = Experiment(exp.model, resolve_locations(exp.data), exp.train)
    splits = build_run_data(exp.data, Path(run_dir))  # the vocabulary is the data's
    for line in data_file_changes(ckpt.get("data_files"), splits.info.get("files", {})):
        notify(line)
    device = resolve_device(exp.train.device)
    return GenerationRun(Path(run_dir), exp, model.to(device).eval(), task, splits.info, device)


@dataclass
class Generated:
    """One generated sequence of one input."""

    text: str
    log_prob: float  # log P of the generated tokens under the model
    score: float  # what ranked it (beam search: log P / lp), else log_prob
    tokens: int
    finished: bool  # ended by <eos> or a stop string


def generate_texts(
    run: GenerationRun,
    texts: list[str],
    cfg: GenerationConfig,
    *,
    batch_size: int = 32,
    names: list[str] | None = None,
    stream: Callable[[str], None] | None = None,
) -> list[list[Generated]]:
    """Every input's ``cfg.num_return_sequences`` outputs, in input order.

    ``names[i]`` says where input i came from in messages (default: "input i + 1"). ``stream``,
    for a single language-model prompt decoded greedily or by sampling, gets each token's text as
    it is generated.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    limit = run.max_new_tokens_limit()
    if limit is not None and cfg.max_new_tokens > limit:
        raise ConfigError(
            f"--max-new-tokens {cfg.max_new_tokens} is more than this model writes: "
            f"model.max_tgt_len = {limit + 1} counts <bos> too, so at most {limit}"
        )
    names = names or [f"input {i + 1}" for i in range(len(texts))]
    ids = [run.encode(text, name) for text, name in zip(texts, names)]
    results: list[list[Generated] | None] = [None] * len(texts)
    for batch in _batches(ids, batch_size, same_length=run.task == Task.LANGUAGE_MODEL):
        rows = [ids[i] for i in batch]
        streamer = None
        if stream is not None and len(texts) == 1 and cfg.num_beams == 1 and cfg.num_return_sequences == 1:
            streamer = lambda _, tokens: stream(run.decode(tokens.tolist()))  # noqa: E731
        x = _pad(rows, run.device)  # (B, L)
        inputs = {"prompt": x} if run.task == Task.LANGUAGE_MODEL else {"source": x}
        out = generate(run.model, config=cfg, decode=run.decode, streamer=streamer, **inputs)
        n = cfg.num_return_sequences
        seqs, lengths = out.sequences.tolist(), out.lengths.tolist()
        for j, i in enumerate(batch):
            results[i] = [
                Generated(
                    run.decode(seqs[m][: lengths[m]]),
                    float(out.log_probs[m]),
                    float(out.scores[m]),
                    lengths[m],
                    bool(out.finished[m]),
                )
                for m in range(j * n, (j + 1) * n)
            ]
    return results


def _batches(ids: list[list[int]], batch_size: int, same_length: bool) -> list[list[int]]:
    """Input indices in batches: sorted by length (so padding is short), one length per batch if ``same_length``."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and (not same_length or len(ids[batches[-1][0]]) == len(ids[i])):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _pad(rows: list[list[int]], device) -> torch.Tensor:
    """Id lists -> (B, L_max) right-padded with 0 (<pad>; a prompt batch has no padding)."""
    out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out.to(device)
