"""Seq2seq tasks: vocabulary, copy/reverse/sort, dates, and sentence-pair files the tests write."""

import datetime as dt
import re
import unicodedata
import warnings

import pytest
import torch

from seqlab.config import ConfigError, from_dict
from seqlab.data import (
    DATASETS,
    CopyConfig,
    DataError,
    DataWarning,
    DatesConfig,
    PairsConfig,
    ReverseConfig,
    SortConfig,
    Vocabulary,
    read_pairs,
    tokenize,
)
from seqlab.data.pairs import build_pairs
from seqlab.data.seq2seq import DATE_FORMATS, DATE_MAX, DATE_MIN, build_dates, build_symbol_task


def test_vocabulary_specials_encode_decode():
    v = Vocabulary.build([["b", "a", "b"], ["c", "b"]])
    assert v.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "b", "a", "c"]  # most frequent first
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert v.encode(["a", "z"], bos=True, eos=True) == [1, 5, 3, 2]
    assert v.decode([1, 5, 6, 2, 4, 0]) == "ac"  # stops at <eos>
    assert v.decode([5, 3, 6], sep=" ") == "a <unk> c"
    assert v.decode([1, 5, 2], strip=False, sep="|") == "<bos>|a|<eos>"
    assert len(Vocabulary.build([["a", "b", "a"]], min_freq=2)) == 5
    plain = Vocabulary("xy", specials=())
    with pytest.raises(KeyError, match="token 'z' is not in the vocabulary and it has no <unk>"):
        plain.encode("xz")


@pytest.mark.parametrize("cfg_cls, fn", [(CopyConfig, list), (ReverseConfig, lambda s: s[::-1]), (SortConfig, sorted)])
def test_symbol_tasks_targets_and_layout(cfg_cls, fn):
    cfg = cfg_cls(num_symbols=6, min_len=2, max_len=7, num_train=300, num_val=20, num_test=20, seed=1)
    splits = build_symbol_task(cfg)
    ds, v = splits.train, splits.info["src_vocab"]
    assert ds.x.shape == (300, 8) and ds.y.shape == (300, 9)
    assert torch.equal(ds.x_lengths, (ds.x != 0).sum(-1)) and torch.equal(ds.y_lengths, (ds.y != 0).sum(-1))
    assert int(ds.x_lengths.min()) == 3 and int(ds.x_lengths.max()) == 8  # 2..7 symbols + <eos>
    assert torch.equal(ds.y[:, 0], torch.ones(300, dtype=torch.int64))  # <bos>
    for i in range(300):
        src, tgt = v.decode(ds.x[i]), v.decode(ds.y[i])
        assert set(src) <= set("abcdef") and tgt == "".join(fn(list(src)))
        assert int(ds.x[i, ds.x_lengths[i] - 1]) == v.eos_id and int(ds.y[i, ds.y_lengths[i] - 1]) == v.eos_id
    assert splits.info["src_vocab_size"] == 10
    again = build_symbol_task(cfg)
    assert torch.equal(again.test.x, splits.test.x)
    assert not torch.equal(
        build_symbol_task(
            cfg_cls(num_symbols=6, min_len=2, max_len=7, num_train=300, num_val=20, num_test=20, seed=2)
        ).test.x,
        splits.test.x,
    )


def test_symbol_config_validation_goes_through_from_dict():
    with pytest.raises(
        ConfigError, match=r"\[data\] data.min_len and data.max_len must satisfy 1 <= min_len <= max_len, got 5 and 3"
    ):
        from_dict(DATASETS["reverse"].config, {"min_len": 5, "max_len": 3}, "data")
    assert from_dict(DATASETS["sort"].config, {}, "data").name == "sort"


def test_date_formats_render_the_issue_examples():
    d = dt.date(2026, 11, 21)
    rendered = {f(d) for f in DATE_FORMATS}
    assert {"21 November 2026", "11/21/26", "Sat, Nov 21 2026"} <= rendered
    assert len(rendered) == len(DATE_FORMATS) == 20


def test_no_written_date_stands_for_two_dates():
    seen = {}
    day = DATE_MIN
    while day <= DATE_MAX:
        for f in DATE_FORMATS:
            assert seen.setdefault(f(day), day) == day, f"{f(day)!r} is both {seen[f(day)]} and {day}"
        day += dt.timedelta(days=1)


def test_dates_targets_are_the_iso_dates_of_their_sources():
    splits = build_dates(DatesConfig(num_train=400, num_val=50, num_test=50, seed=3))
    src_v, tgt_v = splits.info["src_vocab"], splits.info["tgt_vocab"]
    assert tgt_v.itos[4:] == list("0123456789-")
    ds = splits.train
    assert int((ds.x == src_v.unk_id).sum()) == 0
    for i in range(len(ds)):
        src, tgt = src_v.decode(ds.x[i]), tgt_v.decode(ds.y[i])
        day = dt.date.fromisoformat(tgt)
        assert DATE_MIN <= day <= DATE_MAX and src in {f(day) for f in DATE_FORMATS}
    assert ds.y.shape == (400, 12)  # <bos> + 10 characters + <eos>
    assert torch.equal(build_dates(DatesConfig(num_train=400, num_val=50, num_test=50, seed=3)).train.x, ds.x)


# --- sentence-pair files ---------------------------------------------------------------------------

PAIRS = [
    "Go.\tVa !",
    "Hi.\tSalut !\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123",  # a third column is attribution
    "I'm cold.\tJ'ai froid.",
    "",
    "no tab on this line",
    "Café au lait.\tCafe\u0301 au lait.",  # decomposed é in the target
    "Привет!\tこんにちは。",
    "\tmissing source",
    "This sentence is rather longer than the others are.\tCette phrase est plutôt plus longue que les autres.",
    "Stop!\tArrête-toi !",
]


def write(tmp_path, lines, name="pairs.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_pairs_counts_and_warns_about_skipped_lines(tmp_path):
    path = write(tmp_path, PAIRS)
    with pytest.warns(DataWarning) as record:
        report = read_pairs(path)
    assert report.num_lines == 10 and len(report.pairs) == 7
    assert report.skipped == {"blank": 1, "fewer than 2 fields": 1, "empty source or target": 1}
    assert str(record[0].message) == (
        f"{path}: skipped 1 of 10 lines: fewer than 2 fields; {path}: skipped 1 of 10 lines: empty source or target"
    )
    assert report.pairs[1] == ("Hi.", "Salut !")
    assert read_pairs(write(tmp_path, PAIRS[:3], "ok.txt"), swap=True).pairs[0] == ("Va !", "Go.")


def test_on_bad_line_error_names_file_and_line(tmp_path):
    path = write(tmp_path, PAIRS)
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{path}:5: expected source<TAB>target[<TAB>attribution], "
            f"found 1 field (fewer than 2 fields): 'no tab on this line'"
        ),
    ):
        read_pairs(path, on_bad_line="error")


def test_non_utf8_and_empty_files_are_errors(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Go.\tVa !\nHello.\tBonjour, ça va ?\n".encode("latin-1"))
    with pytest.raises(DataError, match=re.escape(f"{path}:2: not valid UTF-8 (byte 0xe7 at column 17)")):
        read_pairs(path)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match=re.escape(f"{empty}: the sentence-pair file is empty")):
        read_pairs(empty)
    with pytest.raises(DataError, match="sentence-pair file not found: "):
        read_pairs(tmp_path / "nope.txt")


def test_tokenize_word_and_char():
    assert tokenize("i'm cold.", "word") == ["i", "'", "m", "cold", "."]
    assert tokenize("привет, мир!", "word") == ["привет", ",", "мир", "!"]
    assert tokenize("va !", "char") == ["v", "a", " ", "!"]


def build(tmp_path, lines=PAIRS, **kw):
    path = write(tmp_path, lines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return build_pairs(PairsConfig(path=str(path), **kw))


def test_pairs_length_filter_is_counted_and_reported(tmp_path):
    splits = build(tmp_path, max_len=6, val_fraction=0.0, test_fraction=0.0)
    info = splits.info
    reason = "source or target longer than max_len=6 tokens"
    assert info["skipped"][reason] == 1 and info["num_pairs"] == 6 and len(splits.train) == 6
    assert f"{tmp_path / 'pairs.txt'}: skipped 1 of 10 lines: {reason}" in info["messages"]
    assert f"{tmp_path / 'pairs.txt'}: skipped 1 of 10 lines: fewer than 2 fields" in info["messages"]
    assert int(splits.train.x_lengths.max()) <= 7 and int(splits.train.y_lengths.max()) <= 8


def test_pairs_lowercase_normalisation_and_tokenisation(tmp_path):
    nfc = build(tmp_path, max_len=0, val_fraction=0.0, test_fraction=0.0, tokenize="char")
    v = nfc.info["tgt_vocab"]
    targets = {v.decode(y) for y in nfc.train.y}
    assert "café au lait." in targets and "こんにちは。" in targets and "va !" in targets
    raw = build(
        tmp_path, max_len=0, val_fraction=0.0, test_fraction=0.0, tokenize="char", normalize="none", lowercase=False
    )
    raw_targets = {raw.info["tgt_vocab"].decode(y) for y in raw.train.y}
    assert unicodedata.normalize("NFD", "Café au lait.") in raw_targets and "Va !" in raw_targets
    words = build(tmp_path, max_len=0, val_fraction=0.0, test_fraction=0.0)
    src_v = words.info["src_vocab"]
    sources = {src_v.decode(x, " ") for x in words.train.x}
    assert "i ' m cold ." in sources and "привет !" in sources
    assert words.info["token_separator"] == " "


def test_pairs_split_is_deterministic_and_vocab_comes_from_train(tmp_path):
    lines = [f"s{i} w{i % 7}\tt{i} u{i % 5}" for i in range(200)]
    a = build(tmp_path, lines, val_fraction=0.1, test_fraction=0.2, seed=4)
    b = build(tmp_path, lines, val_fraction=0.1, test_fraction=0.2, seed=4)
    c = build(tmp_path, lines, val_fraction=0.1, test_fraction=0.2, seed=5)
    assert (len(a.train), len(a.val), len(a.test)) == (140, 20, 40)
    assert torch.equal(a.test.x, b.test.x) and not torch.equal(a.test.x, c.test.x)
    src_v = a.info["src_vocab"]
    # every s<i> is seen once, so the test split's are unknown to a vocabulary built on train
    assert int((a.test.x[:, 0] == src_v.unk_id).sum()) == 40 and int((a.train.x == src_v.unk_id).sum()) == 0
    assert len(src_v) == 4 + 140 + 7
    assert len({src_v.decode(x, " ") for x in a.train.x}) == 140  # each line once
    small = build(tmp_path, lines, max_pairs=50, val_fraction=0.2, test_fraction=0.2)
    assert (len(small.train), len(small.val), len(small.test)) == (30, 10, 10)
    assert "kept 50 of 200 pairs (data.max_pairs)" in small.info["messages"]


def test_pairs_with_nothing_left_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no pairs left after filtering"):
        build(tmp_path, ["a b c d\te f g h"], max_len=2)
