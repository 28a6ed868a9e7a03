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
from ..data.vocab import UNK
from ..generate import GenerationConfig, generate
from ..generate.search import check_output_memory
from ..models.decoding import IncrementalDecoder
from ..task import Task
from ..train.config import Experiment
from ..train.seq2seq_metrics import detokenize
from .store import build_run_data, data_file_changes, load_run
from .use import OLD_RUN, autocast, check_belongs, run_device, run_precision, stored_vocabularies

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
    notify: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
    precision: str = "fp32"  # or "bf16": autocast around the model's forward passes

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
        if not tokens:
            raise ConfigError(f"{where}: an empty source; give text to translate")
        vocab = self.info["src_vocab"]
        # A special token typed as text ("<eos>") is no word either: it must not act as one.
        unknown = list(dict.fromkeys(t for t in tokens if t not in vocab or t in vocab.specials))
        if unknown:  # said once per input, naming them
            shown = ", ".join(map(repr, unknown[:8])) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
            if UNK not in vocab:
                raise ConfigError(f"{where}: {shown} not in the model's source vocabulary (it has no {UNK})")
            self.notify(f"{where}: not in the model's source vocabulary, read as {UNK}: {shown}")
        ids = [vocab.unk_id if t in unknown else vocab.stoi[t] for t in tokens] + [vocab.eos_id]
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
        if vocab.eos_id in ids:
            ids = ids[: ids.index(vocab.eos_id)]
        # No special token is ever written as text: a <unk> the model wrote is left out (generate_texts says so).
        tokens = [vocab.itos[i] for i in ids if vocab.itos[i] not in vocab.specials]
        return detokenize(tokens, self.info.get("token_separator", ""))

    def unknown_written(self, ids: list[int]) -> int:
        """How many <unk> a seq2seq output holds before its <eos> (each left out of the text)."""
        vocab = self.info.get("tgt_vocab")
        if self.task != Task.SEQ2SEQ or vocab is None or UNK not in vocab:
            return 0
        if vocab.eos_id in ids:
            ids = ids[: ids.index(vocab.eos_id)]
        return ids.count(vocab.unk_id)

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
    device: str | None = None,
    precision: str = "fp32",
) -> GenerationRun:
    """The run's model (on ``device``, default its train.device, computing in ``precision``: fp32, bf16, or
    auto: bf16 where the device computes it natively) and its stored vocabularies, or a ConfigError
    for a run that cannot generate. Its data is not read, except for a run saved before the vocabularies
    were stored with it (then rebuilt from the data, with a warning through ``notify``)."""
    exp, model, ckpt = load_run(run_dir, checkpoint, data_location, action="generate from")
    task = Task(ckpt.get("task", Task.CLASSIFICATION))
    if task not in GENERATIVE or not isinstance(model, IncrementalDecoder):
        raise ConfigError(
            f"{run_dir} is a {task} run (model {exp.model.name}): it cannot generate; seqlab generate decodes {KINDS}"
        )
    check_belongs(run_dir, checkpoint, ckpt, notify)
    exp = Experiment(exp.model, resolve_locations(exp.data), exp.train)
    info = stored_vocabularies(ckpt)
    if info is not None and data_location:
        given = ", ".join(f"--data.{k}" for k in data_location)
        notify(f"{given} not read: {run_dir} decodes with the vocabulary stored with it, not its data's")
    if info is None:
        notify(OLD_RUN.format(run_dir=run_dir))
        splits = build_run_data(exp.data, Path(run_dir))
        changes = data_file_changes(ckpt.get("data_files"), splits.info.get("files", {}))
        if changes:  # a vocabulary rebuilt from other data would map ids to other tokens
            raise ConfigError(
                f"{'; '.join(changes)}; {run_dir} stores no vocabulary, so it decodes only with the data it was "
                f"trained on: point --data.path (or --data.root) at that data"
            )
        info = splits.info
    on = run_device(exp.train.device, device)
    precision = run_precision(precision, on, notify)
    return GenerationRun(Path(run_dir), exp, model.to(on).eval(), task, info, on, notify, precision)


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
    on_encoded: Callable[[], None] | None = None,
) -> list[list[Generated]]:
    """Every input's ``cfg.num_return_sequences`` outputs, in input order.

    ``names[i]`` says where input i came from in messages (default: "input i + 1"). ``stream``,
    for a single language-model prompt decoded greedily or by sampling, gets each token's text as
    it is generated. ``on_encoded()`` is called once every input has been read and checked, before
    decoding (e.g. to echo the prompt only once it is known to be valid).
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
    rows = min(len(ids), batch_size) * max(cfg.num_beams, cfg.num_return_sequences)
    check_output_memory(cfg.max_new_tokens, rows)  # before anything is allocated or echoed
    if on_encoded is not None:
        on_encoded()
    results: list[list[Generated] | None] = [None] * len(texts)
    unknown = 0
    for batch in _batches(ids, batch_size, same_length=run.task == Task.LANGUAGE_MODEL):
        rows = [ids[i] for i in batch]
        streamer = None
        if stream is not None and len(texts) == 1 and cfg.num_beams == 1 and cfg.num_return_sequences == 1:
            streamer = lambda _, tokens: stream(run.decode(tokens.tolist()))  # noqa: E731
        x = _pad(rows, run.device)  # (B, L)
        inputs = {"prompt": x} if run.task == Task.LANGUAGE_MODEL else {"source": x}
        with autocast(run.precision, run.device):
            out = generate(run.model, config=cfg, decode=run.decode, streamer=streamer, **inputs)
        n = cfg.num_return_sequences
        seqs, lengths = out.sequences.tolist(), out.lengths.tolist()
        unknown += sum(run.unknown_written(seqs[m][: lengths[m]]) for m in range(len(seqs)))
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
    if unknown:
        run.notify(f"the model wrote {UNK} (a word outside its vocabulary) {unknown} time(s): left out of the text")
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
