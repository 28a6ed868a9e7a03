"""Character-level LM: windows, splits, and the truncated-BPTT stream layout."""

import re

import pytest
import torch

from seqlab.data import CharLMConfig, DataError, StreamChunks, batchify
from seqlab.data.text import build_char_lm, load_sample_text

TEXT = "".join(f"line {i}: the quick brown fox — ünïcödé {i * i}\n" for i in range(60))


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_windows_are_next_character_pairs_within_their_part(text_file):
    cfg = CharLMConfig(path=str(text_file), seq_len=16, val_fraction=0.1, test_fraction=0.1, seed=0)
    splits = build_char_lm(cfg)
    v, info = splits.info["vocab"], splits.info
    assert info["vocab_size"] == len(set(TEXT)) == len(v)
    n = len(TEXT)
    n_val = n_test = round(0.1 * n)
    assert info["num_chars"] == {"train": n - n_val - n_test, "val": n_val, "test": n_test}
    parts = (TEXT[: n - n_val - n_test], TEXT[n - n_val - n_test : n - n_test], TEXT[n - n_test :])
    for ds, part in zip((splits.train, splits.val, splits.test), parts):
        assert ds.x.shape[1:] == (16,) and ds.x.dtype == torch.int64
        assert v.decode(ds.ids) == part
        for x, y in zip(ds.x, ds.y):
            xs, ys = v.decode(x), v.decode(y)
            assert xs[1:] == ys[:-1] and xs + ys[-1] in part
    assert len(splits.train) == (len(parts[0]) - 1) // 16
    # val and test: consecutive, non-overlapping windows
    assert v.decode(splits.val.x.reshape(-1)) == parts[1][: 16 * len(splits.val)]
    assert len(splits.val) == (len(parts[1]) - 1) // 16


def test_random_windows_are_deterministic_under_a_seed(text_file):
    a = build_char_lm(CharLMConfig(path=str(text_file), seq_len=8, num_windows=100, seed=1))
    b = build_char_lm(CharLMConfig(path=str(text_file), seq_len=8, num_windows=100, seed=1))
    c = build_char_lm(CharLMConfig(path=str(text_file), seq_len=8, num_windows=100, seed=2))
    assert len(a.train) == 100 and torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, c.train.x)


def test_batchify_cuts_equal_consecutive_streams():
    ids = torch.arange(103)
    s = batchify(ids, 4)
    assert s.shape == (4, 25) and torch.equal(s[2], torch.arange(50, 75))


def test_tbptt_chunks_continue_each_stream():
    ids = torch.arange(1000)
    B, bptt = 4, 7
    chunks = StreamChunks(batchify(ids, B), bptt)
    L = 250
    assert len(chunks) == -(-(L - 1) // bptt)  # ceil: 36 chunks, the last one shorter
    xs, ys = zip(*(chunks[i] for i in range(len(chunks))))
    assert xs[0].shape == (B, bptt) and xs[-1].shape == (B, (L - 1) % bptt)
    for i in range(len(chunks) - 1):
        # chunk i + 1 of stream b starts right where chunk i of stream b ended
        assert torch.equal(xs[i + 1][:, 0], xs[i][:, -1] + 1) and torch.equal(xs[i + 1][:, 0], ys[i][:, -1])
    for b in range(B):
        stream = torch.cat([x[b] for x in xs])
        assert torch.equal(stream, ids[b * L : (b + 1) * L - 1])
        assert torch.equal(torch.cat([y[b] for y in ys]), ids[b * L + 1 : (b + 1) * L])
    with pytest.raises(IndexError):
        chunks[len(chunks)]


def test_split_streams_cover_the_part(text_file):
    splits = build_char_lm(CharLMConfig(path=str(text_file), seq_len=8))
    chunks = splits.train.streams(3, 10)
    L = len(splits.train.ids) // 3
    row = torch.cat([chunks[i][0][1] for i in range(len(chunks))])
    assert torch.equal(row, splits.train.ids[L : 2 * L - 1])


def test_embedded_sample_is_the_default():
    text = load_sample_text()
    assert text.startswith("First Citizen:") and len(text) == 40105
    splits = build_char_lm(CharLMConfig(seq_len=32))
    assert (
        splits.info["vocab_size"] == len(set(text))
        and len(splits.train) == (splits.info["num_chars"]["train"] - 1) // 32
    )


def test_bad_text_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nstill fine\nbroken \xff here\n")
    with pytest.raises(DataError, match=re.escape(f"{bad}:3: not valid UTF-8 (byte 0xff at column 8)")):
        build_char_lm(CharLMConfig(path=str(bad)))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(f"{empty}: the text file is empty")):
        build_char_lm(CharLMConfig(path=str(empty)))
    short = tmp_path / "short.txt"
    short.write_text("abcdefghijklmnopqrstuvwxyz" * 2)
    with pytest.raises(
        DataError, match=re.escape(f"{short}: the train part has 42 characters, expected at least seq_len + 1 = 65")
    ):
        build_char_lm(CharLMConfig(path=str(short), seq_len=64, val_fraction=0.1, test_fraction=0.1))
