"""A vocabulary: tokens <-> integer ids, with the special tokens that sequence models need."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


class Vocabulary:
    """``itos[i]`` is token ``i``; with the default specials ``<pad>=0, <bos>=1, <eos>=2, <unk>=3``.

    Tokens are strings (characters or words). Tokens not in the vocabulary encode to ``<unk>``
    when the vocabulary has one, and are an error otherwise (a character-level LM vocabulary
    is built from the whole text, so nothing is unknown).
    """

    def __init__(self, tokens: Iterable[str], specials: Sequence[str] = SPECIALS):
        self.itos: list[str] = list(specials)
        seen = set(self.itos)
        for tok in tokens:
            if tok not in seen:
                seen.add(tok)
                self.itos.append(tok)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        self.specials = tuple(specials)

    @classmethod
    def build(
        cls, sequences: Iterable[Sequence[str]], min_freq: int = 1, specials: Sequence[str] = SPECIALS
    ) -> Vocabulary:
        """Tokens seen at least ``min_freq`` times, most frequent first (ties in order of first appearance)."""
        counts: Counter[str] = Counter()
        for seq in sequences:
            counts.update(seq)
        # Counter.most_common keeps insertion order among equal counts, so this is deterministic.
        return cls((tok for tok, n in counts.most_common() if n >= min_freq), specials)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens: {self.itos[:8]}{' ...' if len(self) > 8 else ''})"

    def to_dict(self) -> dict:
        """``{"tokens": itos, "specials": [...]}``: plain lists of strings, for a checkpoint read with weights_only."""
        return {"tokens": list(self.itos), "specials": list(self.specials)}

    @classmethod
    def from_dict(cls, record: dict) -> Vocabulary:
        """The vocabulary ``to_dict`` wrote, id for id; a record that is not one is a ValueError saying why."""
        tokens, specials = record.get("tokens"), record.get("specials", [])
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in [*tokens, *specials]):
            raise ValueError("a stored vocabulary needs 'tokens' and 'specials' as lists of strings")
        if tokens[: len(specials)] != list(specials) or len(set(tokens)) != len(tokens):
            raise ValueError("a stored vocabulary must start with its specials and hold each token once")
        return cls(tokens[len(specials) :], specials)

    def _id(self, name: str) -> int:
        if name not in self.stoi:
            raise KeyError(f"this vocabulary has no {name} token")
        return self.stoi[name]

    @property
    def pad_id(self) -> int:
        return self._id(PAD)

    @property
    def bos_id(self) -> int:
        return self._id(BOS)

    @property
    def eos_id(self) -> int:
        return self._id(EOS)

    @property
    def unk_id(self) -> int:
        return self._id(UNK)

    def encode(self, tokens: Sequence[str], bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``tokens``, optionally framed by ``<bos>`` and ``<eos>``."""
        unk = self.stoi.get(UNK)
        if unk is None:
            missing = [t for t in tokens if t not in self.stoi]
            if missing:
                raise KeyError(f"token {missing[0]!r} is not in the vocabulary and it has no {UNK}")
            ids = [self.stoi[t] for t in tokens]
        else:
            ids = [self.stoi.get(t, unk) for t in tokens]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int] | torch.Tensor, sep: str = "", strip: bool = True) -> str:
        """Tokens of ``ids`` joined by ``sep``; with ``strip``, stop at ``<eos>`` and drop ``<pad>``/``<bos>``."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            tok = self.itos[i]
            if strip and tok == EOS:
                break
            if strip and tok in (PAD, BOS):
                continue
            out.append(tok)
        return sep.join(out)


# What decoding reads from a run's data, kept with the run (checkpoint key "vocabularies") so that a run
# decodes without its data and never through another text's vocabulary.
VOCAB_KEYS = ("vocab", "src_vocab", "tgt_vocab")
DECODING_KEYS = ("token_separator", "max_tgt_len", "max_src_len", "vocab_size", "src_vocab_size", "tgt_vocab_size")


def vocabularies_record(info: dict) -> dict | None:
    """The data ``info``'s vocabularies and what decoding needs besides (the separator of tokens in text: ""
    for characters, " " for words; the longest target), as plain lists, strings and ints; None where the
    data has no vocabulary (digits, series). The tokenisation rule of a sentence-pair file (lowercase,
    normalize, tokenize) is its data config, which the checkpoint holds too."""
    record = {k: info[k].to_dict() for k in VOCAB_KEYS if isinstance(info.get(k), Vocabulary)}
    if not record:
        return None
    record.update({k: info[k] for k in DECODING_KEYS if isinstance(info.get(k), (int, str))})
    return {"format": 1, **record}


def vocabularies_from_record(record: dict) -> dict:
    """The info keys ``vocabularies_record`` kept, vocabularies rebuilt: ``{"vocab": Vocabulary, ...}``."""
    if not isinstance(record, dict) or record.get("format") != 1:
        raise ValueError("the stored vocabularies are not in a format this seqlab reads (format 1)")
    out = {k: v for k, v in record.items() if k in DECODING_KEYS}
    out.update({k: Vocabulary.from_dict(record[k]) for k in VOCAB_KEYS if k in record})
    return out


def vocabulary_difference(stored: dict, data: dict) -> str | None:
    """None if ``data``'s vocabularies (a data info) equal the ``stored`` ones, else what differs, in words:
    ``"vocab: 65 tokens, the data gives 61; id 12 is 'K', the data's 'L'"``."""
    for key in VOCAB_KEYS:
        then, now = stored.get(key), data.get(key)
        if then is None or then == now:
            continue
        if now is None:
            return f"{key}: the data gives none"
        i = next((i for i, (a, b) in enumerate(zip(then.itos, now.itos)) if a != b), min(len(then), len(now)))
        first = (
            f"id {i} is {then.itos[i]!r}, the data's {now.itos[i]!r}"
            if i < min(len(then), len(now))
            else f"the first {i} ids agree"
        )
        return f"{key}: {len(then)} tokens, the data gives {len(now)}; {first}"
    return None
