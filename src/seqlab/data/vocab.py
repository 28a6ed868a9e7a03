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
