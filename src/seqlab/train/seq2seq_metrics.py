"""How well a seq2seq model translates a split: greedy decoding (``seqlab.generate``, as ``seqlab generate``
decodes), exact match, token accuracy, BLEU, chrF.

- exact match: the fraction of sentences whose whole output equals the reference.
- token accuracy: over every reference position, <eos> included, the fraction where the output has
  the same token at the same position (an output that stops early or runs on loses the rest).
- BLEU and chrF: sacreBLEU's corpus scores on the detokenised text, with the signature that says
  how they were computed (tokeniser, smoothing, version), so that scores can be compared. Word
  level data is scored with sacreBLEU's default tokeniser "13a", character-level data with "char".

References are the data's own tokens before the vocabulary (a reference word the model cannot
know is a miss, never a free ``<unk>``). ``predictions.tsv`` holds source, reference and
hypothesis per sentence, tab-separated, with a header; tabs, newlines and backslashes inside a
text are written ``\\t``, ``\\n``, ``\\\\``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..config import ConfigError
from ..generate import GenerationConfig, generate
from ..utils import atomic_write, available_memory, format_bytes, is_out_of_memory

EOS = "<eos>"
HEADER = ("source", "reference", "hypothesis")

# Detokenising word-level text: no space before closing punctuation, none around joiners.
_NO_SPACE_BEFORE = set(".,!?;:)]}%…") | {"'", "’", "-"}
_NO_SPACE_AFTER = set("([{¿¡") | {"'", "’", "-"}


def detokenize(tokens: Sequence[str], sep: str) -> str:
    """Tokens as text: joined by ``sep`` (characters: ""), word tokens re-attached to their punctuation."""
    if sep != " ":
        return sep.join(tokens)
    out: list[str] = []
    for i, tok in enumerate(tokens):
        if i and tok not in _NO_SPACE_BEFORE and tokens[i - 1] not in _NO_SPACE_AFTER:
            out.append(" ")
        out.append(tok)
    return "".join(out)


def exact_match(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> float:
    """The fraction of hypotheses (token lists) equal to their reference."""
    _check_pairs(hyps, refs)
    return sum(list(h) == list(r) for h, r in zip(hyps, refs)) / len(refs)


def token_accuracy(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> float:
    """Σ_i #{t < |r_i| : h_i[t] = r_i[t]} / Σ_i |r_i|, over sequences as written, <eos> included where produced."""
    _check_pairs(hyps, refs)
    correct = sum(sum(t < len(h) and h[t] == tok for t, tok in enumerate(r)) for h, r in zip(hyps, refs))
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("token accuracy of empty references is undefined")
    return correct / total


def _check_pairs(hyps, refs) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    if not refs:
        raise ValueError("no sentences to score")


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str], *, tokenize: str = "13a") -> tuple[float, str]:
    """sacreBLEU's corpus BLEU (0..100) of detokenised texts against one reference each, and its signature."""
    from sacrebleu.metrics import BLEU

    _check_pairs(hyps, refs)
    bleu = BLEU(tokenize=tokenize)
    return bleu.corpus_score(list(hyps), [list(refs)]).score, str(bleu.get_signature())


def corpus_chrf(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, str]:
    """sacreBLEU's corpus chrF2 (0..100, character 6-grams, β = 2) and its signature."""
    from sacrebleu.metrics import CHRF

    _check_pairs(hyps, refs)
    chrf = CHRF()
    return chrf.corpus_score(list(hyps), [list(refs)]).score, str(chrf.get_signature())


def score(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]], sep: str) -> dict:
    """Every metric of token lists (without <eos>; ``hyps`` ended by the model, or cut at the length limit).

    Returns exact_match, token_accuracy, bleu, chrf (fractions as fractions, BLEU and chrF 0..100)
    and the two sacreBLEU signatures.
    """
    hyp_text = [detokenize(h, sep) for h in hyps]
    ref_text = [detokenize(r, sep) for r in refs]
    bleu, bleu_sig = corpus_bleu(hyp_text, ref_text, tokenize="char" if sep == "" else "13a")
    chrf, chrf_sig = corpus_chrf(hyp_text, ref_text)
    return {
        "exact_match": exact_match(hyps, refs),
        "token_accuracy": token_accuracy([[*h, EOS] for h in hyps], [[*r, EOS] for r in refs]),
        "bleu": bleu,
        "chrf": chrf,
        "bleu_signature": bleu_sig,
        "chrf_signature": chrf_sig,
    }


# -- predictions.tsv ---------------------------------------------------------------------------


def escape(text: str) -> str:
    """One field of a line of an output file: tab, newline, carriage return, backslash written \\t, \\n, \\r, \\\\."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def unescape(text: str) -> str:
    """The inverse of :func:`escape`."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(text[i + 1], text[i : i + 2]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def write_predictions(path: str | Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    """(source, reference, hypothesis) texts -> a TSV file with a header, written atomically."""
    lines = ["\t".join(HEADER)] + ["\t".join(escape(v) for v in row) for row in rows]
    text = "\n".join(lines) + "\n"
    return atomic_write(Path(path), lambda fh: fh.write(text.encode("utf-8")))  # UTF-8 whatever the locale


def read_predictions(path: str | Path) -> list[tuple[str, str, str]]:
    """The rows of a ``predictions.tsv`` as written by :func:`write_predictions`."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise ValueError(f"{path}: not a predictions file (expected the header {chr(9).join(HEADER)!r})")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{lineno}: expected 3 tab-separated fields, got {len(fields)}")
        rows.append(tuple(unescape(f) for f in fields))
    return rows


# -- decoding a split --------------------------------------------------------------------------


def decode_limit(model: torch.nn.Module, dataset) -> int:
    """The most tokens decoded for a split: its longest target + <eos>, or fewer if the model writes fewer
    (a seq2seq Transformer's max_tgt_len - 1)."""
    limit = dataset.y.shape[1] - 1  # the split's longest target + <eos>
    model_limit = getattr(model.config, "max_tgt_len", 0) - 1
    return min(limit, model_limit) if model_limit > 0 else limit


# Sentences x beams decoded together: 256 sentences at beam 5, one sentence at a time from beam 1,280 up.
# Memory grows with this product, so a wide beam decodes fewer sentences at once instead of more rows.
ROWS_PER_CHUNK = 1280


def beam_memory_estimate(beam: int, vocab_size: int, max_new_tokens: int) -> int:
    """A lower bound on the bytes one sentence's beam search holds at once: about three (beam, V) float
    tensors of scores per step (logits, candidates, their top-k) and the (beam, t) tokens, context and
    log-probabilities kept per beam; the model's own state comes on top."""
    return beam * (3 * vocab_size * 4 + 3 * max_new_tokens * 8)


def decode_split(
    model: torch.nn.Module,
    dataset,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    beam: int = 1,
    length_penalty: float = GenerationConfig.length_penalty,
) -> list[list[int]]:
    """Greedy (or, with ``beam`` > 1, beam-search) outputs of every source of a Seq2SeqDataset: ids per
    sentence, cut before <eos>. Beam search ranks log P / ((5 + |Y|) / 6) ** length_penalty.

    Beam search decodes ``ROWS_PER_CHUNK // beam`` sentences at a time (at least one), so its memory
    stays near beam 5's whatever the width. A width whose single sentence cannot fit in the memory
    left is refused before decoding (ConfigError); an allocation that fails anyway is one too.
    """
    if beam < 1:
        raise ConfigError(f"--beam must be >= 1, got {beam}")
    eos = model.decoding_special_ids()["eos"]
    limit = decode_limit(model, dataset)
    if beam > 1:
        batch_size = max(1, min(batch_size, ROWS_PER_CHUNK // beam))
        need, room = beam_memory_estimate(beam, model.vocab_size, limit), available_memory()
        if room is not None and need > room:
            raise ConfigError(
                f"--beam {beam} needs at least {format_bytes(need)} for one sentence ({beam} beams x "
                f"{model.vocab_size} tokens), more than the {format_bytes(room)} this process can allocate; "
                f"use a smaller --beam"
            )
    out = []
    for start in range(0, len(dataset), batch_size):
        x = dataset.x[start : start + batch_size].to(device)  # (B, S)
        try:
            # seqlab.generate, the one decoder: greedy (beam 1) as seqlab generate --temperature 0 decodes it
            decoded = generate(model, source=x, max_new_tokens=limit, num_beams=beam, length_penalty=length_penalty)
        except (MemoryError, RuntimeError) as err:
            if not is_out_of_memory(err):
                raise
            raise ConfigError(
                f"out of memory decoding {len(x)} sentence(s) with --beam {beam} "
                f"({len(x) * beam:,} rows of {model.vocab_size} tokens): use a smaller --beam"
            ) from None
        ids = decoded.sequences.tolist()  # (B, <= limit)
        out.extend(row[: row.index(eos)] if eos in row else row for row in ids)
    return out


def _tokens(vocab, ids: list[int]) -> list[str]:
    """The tokens of one padded id row: up to <eos>, without <bos> and <pad>."""
    out = []
    for i in ids:
        if i == vocab.eos_id:
            break
        if i not in (vocab.bos_id, vocab.pad_id):
            out.append(vocab.itos[i])
    return out


def seq2seq_scores(
    model: torch.nn.Module,
    dataset,
    info: dict,
    *,
    device: torch.device | str = "cpu",
    predictions: str | Path | None = None,
    beam: int = 1,
    length_penalty: float = GenerationConfig.length_penalty,
) -> dict:
    """Decode ``dataset`` greedily (or by beam search, ``beam`` > 1) and score it (see :func:`score`);
    write ``predictions`` if given."""
    src_vocab, tgt_vocab, sep = info["src_vocab"], info["tgt_vocab"], info.get("token_separator", "")
    outputs = decode_split(model.to(device), dataset, device=device, beam=beam, length_penalty=length_penalty)
    hyps = [[tgt_vocab.itos[i] for i in ids] for ids in outputs]
    if getattr(dataset, "pairs", None) is not None:
        sources, refs = [list(s) for s, _ in dataset.pairs], [list(t) for _, t in dataset.pairs]
    else:  # a dataset without its token lists: the ids, read back through the vocabularies
        sources = [_tokens(src_vocab, row) for row in dataset.x.tolist()]
        refs = [_tokens(tgt_vocab, row) for row in dataset.y.tolist()]
    scores = score(hyps, refs, sep)
    if predictions is not None:
        write_predictions(
            predictions,
            [(detokenize(s, sep), detokenize(r, sep), detokenize(h, sep)) for s, r, h in zip(sources, refs, hyps)],
        )
    return scores
