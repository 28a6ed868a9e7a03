"""Reliability of decoding and of using a trained run (issue 23): beam memory bounded by decoding in chunks,
searches that never return empty -inf hypotheses, runs that carry their vocabulary, plot/report on folders
that are not runs or hold a corrupt checkpoint."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab.config import ConfigError
from seqlab.generate import GenerationConfigError, generate

from tiny_runs import train_tiny

SRC = str(Path(seqlab.__file__).resolve().parents[1])  # the subprocesses import the seqlab under test
TEXT = "to be or not to be, that is the question.\n" * 40


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A char-level GPT on a repeated line and a seq2seq Transformer that reverses 1..5 symbols (~8 s)."""
    tmp = tmp_path_factory.mktemp("runs")
    text = tmp / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    torch.set_num_threads(1)
    gpt = train_tiny(
        tmp,
        {"name": "gpt", "block_size": 32, "d_model": 32, "num_heads": 2, "num_layers": 2, "dropout": 0.0},
        {"name": "char_lm", "path": str(text), "seq_len": 32, "num_windows": 1600, "val_fraction": 0.1},
        100,
    )
    s2s = train_tiny(
        tmp,
        {
            "name": "seq2seq_transformer",
            "d_model": 32,
            "num_heads": 2,
            "num_encoder_layers": 1,
            "num_decoder_layers": 1,
            "d_ff": 64,
            "dropout": 0.0,
        },
        {"name": "reverse", "num_symbols": 5, "min_len": 1, "max_len": 5, "num_train": 2000, "num_val": 20}
        | {"num_test": 20},
        300,
    )
    return {"gpt": gpt, "s2s": s2s, "text": text}


def _cli(capsys, *argv):
    from seqlab.cli import main

    capsys.readouterr()
    code = main([*map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- 1. beam search memory ----------------------------------------------------------------------------------


def test_eval_with_a_wide_beam_runs_under_a_memory_limit(runs):
    """eval --beam 3000 in a process allowed 300 MiB of address space above what torch's import takes: before,
    every sentence x 3000 beams were decoded together and the allocator failed; now one sentence at a time."""
    script = textwrap.dedent(
        """
        import resource, sys
        import torch
        from seqlab.cli import main
        used = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (used + 300 * 2**20, resource.RLIM_INFINITY))
        sys.exit(main(sys.argv[1:]))
        """
    )
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", script, "eval", str(runs["s2s"]), "--split", "val", "--beam", "3000"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in done.stderr and "alloc" not in done.stderr, done.stderr
    if done.returncode == 2:  # a refusal is allowed, in one line naming the flag
        assert done.stderr.count("\n") == 1 and "--beam" in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr
        metrics = json.loads(done.stdout)
        assert metrics["val/beam"] == 3000 and metrics["val/exact_match"] > 0.5


def test_a_wide_beam_decodes_few_sentences_at_a_time_with_the_same_outputs(runs, monkeypatch):
    from seqlab.data import build_splits
    from seqlab.runs import load_run
    from seqlab.train import seq2seq_metrics as sm

    exp, model, _ = load_run(runs["s2s"])
    val = build_splits(exp.data).val
    sizes = []
    real = sm.generate

    def counting(model, *, source, **kw):
        sizes.append(source.shape[0])
        return real(model, source=source, **kw)

    monkeypatch.setattr(sm, "generate", counting)
    chunked = sm.decode_split(model, val, beam=400)
    assert sizes and max(sizes) <= sm.ROWS_PER_CHUNK // 400 == 3  # sentences x beams <= 1,280
    whole = real(model, source=val.x, max_new_tokens=val.y.shape[1] - 1, num_beams=400, length_penalty=0.6)
    expect = [row[: row.index(2)] if 2 in row else row for row in whole.sequences.tolist()]
    assert chunked == expect


def test_a_beam_that_cannot_fit_is_refused_before_decoding_and_a_failed_allocation_is_one_line(runs, monkeypatch):
    from seqlab.data import build_splits
    from seqlab.runs import load_run
    from seqlab.train import seq2seq_metrics as sm

    exp, model, _ = load_run(runs["s2s"])
    val = build_splits(exp.data).val
    monkeypatch.setattr(sm, "available_memory", lambda: 1000)
    with pytest.raises(
        ConfigError,
        match=r"--beam 100 needs at least .* KiB for one sentence .* than the 1,000 bytes .*use a smaller --beam",
    ):
        sm.decode_split(model, val, beam=100)
    monkeypatch.setattr(sm, "available_memory", lambda: None)

    def fails(*args, **kw):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 1 bytes")

    monkeypatch.setattr(sm, "generate", fails)
    with pytest.raises(ConfigError, match=r"out of memory decoding 12 sentence\(s\) with --beam 100"):
        sm.decode_split(model, val, beam=100)


def test_a_memory_error_anywhere_is_one_line_not_a_traceback(monkeypatch, capsys):
    from seqlab import cli

    def exhausted(args, extra, argv):
        raise MemoryError

    monkeypatch.setattr(cli.COMMANDS["runs"], "run", exhausted)
    code, out, err = _cli(capsys, "runs")
    assert code == 1 and err == "seqlab runs: failed: out of memory; ask for less (a smaller batch or beam)\n"


class _EndsAt:
    """A decoder that writes token 3 until step ``n``, then <eos> (1): V = 5, <bos> = 0."""

    vocab_size = 5

    def __init__(self, n: int):
        self.n = n

    def decoding_special_ids(self):
        return {"bos": 0, "eos": 1, "pad": None}

    def begin_decoding(self, *, source=None, source_lengths=None, prompt=None, max_new_tokens):
        return torch.zeros(source.shape[0], dtype=torch.long), torch.zeros(source.shape[0], dtype=torch.long)

    def decode_step(self, state, tokens, *, need_weights=False):
        logits = torch.full((len(state), 5), -5.0)
        logits[:, 3] = 0.0
        logits[state + 1 >= self.n, 1] = 5.0
        return logits, state + 1, None

    def reorder_state(self, state, index):
        return state.index_select(0, index)


def test_max_new_tokens_beyond_memory_is_refused_and_nothing_is_allocated_for_it_up_front():
    src = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(GenerationConfigError, match=r"max_new_tokens is too large: .* TiB") as err:
        generate(_EndsAt(3), source=src, max_new_tokens=10**14)
    assert err.value.key == "max_new_tokens"
    out = generate(_EndsAt(700), source=src, max_new_tokens=10**6)  # 700 tokens: buffers grown past 256 and 512
    assert out.lengths.tolist() == [700, 700] and out.sequences.shape == (2, 700)
    assert out.sequences[:, :699].eq(3).all() and out.sequences[:, 699].eq(1).all()


# -- 2. beam search when the constraints rule out every token -------------------------------------------------


def test_beam_search_refuses_when_every_token_is_ruled_out_as_greedy_does():
    from seqlab.models import GPT, GPTConfig

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=11, block_size=40, d_model=16, num_heads=2, num_layers=1, dropout=0.0))
    prompt = torch.tensor([[1, 2]])
    for beams in (1, 3):  # 11 tokens, none repeated: step 10 has nothing left
        with pytest.raises(ValueError, match="every token is ruled out") as err:
            generate(gpt, prompt=prompt, max_new_tokens=20, num_beams=beams, no_repeat_ngram_size=1)
        assert "relax them" in str(err.value)
    # min_new_tokens past what no_repeat_ngram allows on a source: <eos> banned until then, 2 other tokens
    with pytest.raises(ValueError, match="at step 4 every token is ruled out for every beam of input 1"):
        generate(
            _EndsAt(2),
            source=torch.zeros(1, 3, dtype=torch.long),
            max_new_tokens=8,
            min_new_tokens=6,
            num_beams=2,
            no_repeat_ngram_size=1,
        )
    # Fewer distinct sequences than asked for (1 step: <eos> and 3 other tokens): said, not padded with -inf rows
    with pytest.raises(ValueError, match="found 4 sequences for input 1, fewer than num_return_sequences = 5"):
        generate(
            _EndsAt(2),
            source=torch.zeros(1, 3, dtype=torch.long),
            max_new_tokens=1,
            num_beams=5,
            num_return_sequences=5,
        )


def test_cli_beam_search_with_no_token_left_exits_1_and_writes_no_output(runs, capsys, tmp_path):
    code, out, err = _cli(
        capsys, "generate", runs["gpt"], "--prompt", "to", "--no-repeat-ngram", 1, "--beam", 3, "--max-new-tokens", 60
    )
    assert code == 1 and "every token is ruled out" in err and err.count("\n") == 1, err
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("to\nbe\n")
    dst = tmp_path / "out.txt"
    argv = ("--input", prompts, "--output", dst, "--no-repeat-ngram", 1, "--beam", 3, "--max-new-tokens", 60)
    code, out, err = _cli(capsys, "generate", runs["gpt"], *argv)
    assert code == 1 and "every token is ruled out" in err and not dst.exists()


# -- 3. the vocabulary travels with the run ------------------------------------------------------------------


def test_checkpoints_hold_the_vocabularies_pickle_free(runs):
    from seqlab.data import build_splits
    from seqlab.data.vocab import Vocabulary, vocabularies_from_record
    from seqlab.runs import load_run

    for name, keys in (("gpt", ["vocab"]), ("s2s", ["src_vocab", "tgt_vocab"])):
        for ckpt_name in ("last.pt", "best.pt"):
            ckpt = torch.load(runs[name] / "checkpoints" / ckpt_name, weights_only=True)
            stored = vocabularies_from_record(ckpt["vocabularies"])
            info = build_splits(load_run(runs[name])[0].data).info
            for key in keys:
                assert isinstance(stored[key], Vocabulary) and stored[key].itos == info[key].itos
    assert stored["token_separator"] == "" and stored["max_tgt_len"] == info["max_tgt_len"]


def test_a_stored_vocabulary_reads_back_id_for_id_and_a_bad_record_is_refused():
    from seqlab.data.vocab import Vocabulary, vocabulary_difference

    v = Vocabulary.build([["b", "a", "b"], ["c"]])
    back = Vocabulary.from_dict(v.to_dict())
    assert back.itos == v.itos and back.unk_id == 3 and back.encode(["a", "zz"]) == [5, 3]
    chars = Vocabulary(sorted(set("hello")), specials=())
    assert Vocabulary.from_dict(chars.to_dict()).itos == ["e", "h", "l", "o"]
    with pytest.raises(ValueError, match="lists of strings"):
        Vocabulary.from_dict({"tokens": [1, 2]})
    with pytest.raises(ValueError, match="start with its specials"):
        Vocabulary.from_dict({"tokens": ["a", "<pad>"], "specials": ["<pad>"]})
    other = Vocabulary(sorted(set("hellx")), specials=())
    assert vocabulary_difference({"vocab": chars}, {"vocab": chars}) is None
    assert vocabulary_difference({"vocab": chars}, {"vocab": other}) == (
        "vocab: 4 tokens, the data gives 4; id 3 is 'o', the data's 'x'"
    )


# -- 7. plot and report on what is not a run, or a corrupt checkpoint -------------------------------------------


@pytest.mark.parametrize("command", ["plot", "report"])
def test_plot_and_report_refuse_a_folder_that_is_not_a_run_and_write_nothing(tmp_path, capsys, command):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    code, out, err = _cli(capsys, command, folder)
    assert code == 2 and "is not a seqlab run directory" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("command", ["plot", "report"])
def test_plot_and_report_on_a_corrupt_checkpoint_fail_saying_so_once(runs, tmp_path, capsys, command):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["gpt"], run)
    data = (run / "checkpoints" / "last.pt").read_bytes()
    (run / "checkpoints" / "last.pt").write_bytes(data[:1000])
    code, out, err = _cli(capsys, command, run)
    assert code != 0 and err.count("is damaged and cannot be read") == 1 and "Traceback" not in err, err
    assert not (run / "report.html").exists()


# -- 10. make results ONLY=..., docs that agree ------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_make_results_takes_only_and_force_as_variables():
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), "results", "ONLY=adding,positions", "FORCE=1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith("docs/make_results.py --only adding,positions --force")
    plain = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), "results"], capture_output=True, text=True
    )
    assert plain.stdout.splitlines()[-1].rstrip().endswith("docs/make_results.py")


def test_fra_eng_training_times_agree_between_the_seq2seq_page_and_the_results_page():
    import re

    results = (ROOT / "docs" / "results.md").read_text()
    seq2seq = (ROOT / "docs" / "seq2seq.md").read_text()
    for preset in ("fra_eng_gru_attention", "fra_eng_transformer"):
        measured = re.search(rf"`configs/{preset}.toml`, [\d,]+ parameters, ([\d.]+) min of training", results)
        row = next(line for line in seq2seq.splitlines() if line.startswith(f"| `{preset}.toml`"))
        assert measured and f"{measured.group(1)} min" in row, (preset, row)


def test_the_readme_demo_block_shows_what_train_prints_now(tmp_path, capsys):
    """The README's demo output is a real run's: its summary line has the keys seqlab train prints today."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("make demo` trains") :].split("```")[1]
    shown = json.loads(next(line for line in block.splitlines() if line.startswith("{")))
    code, out, err = _cli(
        capsys, "train", ROOT / "configs" / "digits_lstm.toml", "--train.max_steps=2", "--out", tmp_path, "--quiet"
    )
    assert code == 0, err
    printed = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert list(shown) == list(printed)
    assert "next: seqlab eval runs/" in block and "run directory: runs/" in block


# -- 9. seqlab runs finds runs below its folder ---------------------------------------------------------------


def test_runs_finds_runs_at_any_depth_named_by_their_path(tmp_path, capsys):
    for where in ("top-1", "out/a-2", "compare-x/runs/lstm-seed0-3", "results/part/deep/b-4"):
        run = tmp_path / where
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.toml").write_text("")
        (run / "command.txt").write_text("seqlab train")
        summary = {"task": "classification", "model": "m", "params": 10, "steps": 5, "seconds": 1.0}
        (run / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.toml").write_text("")  # a config.toml alone is not a run
    code, out, err = _cli(capsys, "runs", tmp_path)
    assert code == 0 and err == ""
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == ["compare-x/runs/lstm-seed0-3", "out/a-2", "results/part/deep/b-4", "top-1"]


# -- 3. (load) a run decodes with its own vocabulary, without its data ---------------------------------------


def _copy_run(run: Path, where: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, where / run.name))


def _edit_checkpoints(run: Path, edit) -> None:
    for path in (run / "checkpoints").glob("*.pt"):
        ckpt = torch.load(path, weights_only=True)
        edit(ckpt)
        torch.save(ckpt, path)


def test_a_run_generates_without_its_data_and_never_through_another_vocabulary(tmp_path, capsys):
    text = tmp_path / "own.txt"
    text.write_text(TEXT, encoding="utf-8")
    run = train_tiny(
        tmp_path,
        {"name": "gpt", "block_size": 16, "d_model": 16, "num_heads": 2, "num_layers": 1, "dropout": 0.0},
        {"name": "char_lm", "path": str(text), "seq_len": 16, "num_windows": 200, "val_fraction": 0.1},
        20,
    )
    argv = ("generate", run, "--prompt", "to be", "--temperature", 0, "--max-new-tokens", 30)
    code, before, err = _cli(capsys, *argv)
    assert code == 0 and err == "", err
    text.rename(tmp_path / "moved.txt")  # the data is gone: the run still generates, the same text
    code, after, err = _cli(capsys, *argv)
    assert code == 0 and after == before and err == "", err
    other = tmp_path / "other.txt"
    other.write_text("ROMEO: who goes there? a friend.\n" * 40, encoding="utf-8")
    code, pointed, err = _cli(capsys, *argv, f"--data.path={other}")  # the data is not read at all
    assert code == 0 and pointed == before and "--data.path not read" in err
    code, out, err = _cli(capsys, "eval", run, "--split", "val", f"--data.path={other}")
    assert code == 2 and "another vocabulary than" in err and "id 2 is ',', the data's '.'" in err and out == "", err


def test_a_run_saved_without_its_vocabulary_falls_back_to_its_data_with_a_warning(runs, tmp_path, capsys):
    run = _copy_run(runs["gpt"], tmp_path)
    _edit_checkpoints(run, lambda ckpt: ckpt.pop("vocabularies"))
    code, out, err = _cli(capsys, "generate", run, "--prompt", "to", "--temperature", 0, "--max-new-tokens", 10)
    assert code == 0 and out.startswith("to be") and "holds no vocabulary" in err and err.count("\n") == 1, err
    changed = tmp_path / "changed.txt"
    changed.write_text(TEXT.replace("q", "Q"), encoding="utf-8")
    code, out, err = _cli(capsys, "generate", run, "--prompt", "to", f"--data.path={changed}")
    assert code == 2 and "stores no vocabulary" in err and out == "", err


def test_a_run_saved_without_its_vocabulary_exports_it_from_its_data_where_it_is_now(runs, tmp_path, capsys):
    code, _, err = _cli(capsys, "export", runs["gpt"], "--format", "safetensors", "--out", tmp_path / "stored")
    assert code == 0, err
    run = _copy_run(runs["gpt"], tmp_path)
    gone = tmp_path / "gone.txt"

    def saved_before_vocabularies(ckpt):
        ckpt.pop("vocabularies")
        ckpt["data_config"]["path"] = str(gone)  # and its data has moved since

    _edit_checkpoints(run, saved_before_vocabularies)
    code, out, err = _cli(capsys, "export", run, "--format", "safetensors", "--out", tmp_path / "a")
    assert code == 2 and "--data.path" in err and not (tmp_path / "a").exists(), err
    moved = tmp_path / "moved.txt"
    moved.write_text(TEXT, encoding="utf-8")
    code, out, err = _cli(
        capsys, "export", run, "--format", "safetensors", "--out", tmp_path / "a", f"--data.path={moved}"
    )
    assert code == 0, err
    exported = json.loads((tmp_path / "a" / "vocab.json").read_text())
    assert exported == json.loads((tmp_path / "stored" / "vocab.json").read_text())
    code, out, err = _cli(capsys, "export", run, "--format", "safetensors", "--out", tmp_path / "b", "--data.seq_len=4")
    assert code == 2 and "only the data's location can be given" in err and not (tmp_path / "b").exists(), err


# -- 4. sources the model does not know, empty sources, special tokens ------------------------------------------


def test_generate_names_unknown_source_tokens_once_per_input_and_refuses_an_empty_source(runs, capsys, tmp_path):
    code, out, err = _cli(capsys, "generate", runs["s2s"], "--source", "abzqz")
    assert code == 0 and "<unk>" not in out and out.strip() and set(out.strip()) <= set("abcde"), out
    assert err.count("\n") == 1 and "--source: not in the model's source vocabulary, read as <unk>: 'z', 'q'" in err
    lines = tmp_path / "in.txt"
    lines.write_text("abx\nab\nyb\n")
    dst = tmp_path / "out.txt"
    code, out, err = _cli(capsys, "generate", runs["s2s"], "--input", lines, "--output", dst)
    assert code == 0 and err.count("\n") == 2 and f"{lines}:1: " in err and f"{lines}:3: " in err, err
    code, out, err = _cli(capsys, "generate", runs["s2s"], "--source", "")
    assert code == 2 and "--source: an empty source" in err
    lines.write_text("ab\n\nba\n")
    code, out, err = _cli(capsys, "generate", runs["s2s"], "--input", lines, "--output", tmp_path / "none.txt")
    assert code == 2 and f"{lines}:2: an empty source" in err and not (tmp_path / "none.txt").exists()
    lines.write_text("")
    code, out, err = _cli(capsys, "generate", runs["s2s"], "--input", lines, "--output", tmp_path / "none.txt")
    assert code == 2 and "holds no lines: nothing to decode" in err and not (tmp_path / "none.txt").exists()


def test_no_special_token_is_ever_written_as_text(runs):
    from seqlab.runs import load_generation_run

    said = []
    run = load_generation_run(runs["s2s"], notify=said.append)
    vocab = run.info["tgt_vocab"]
    a = vocab.stoi["a"]
    written = [vocab.unk_id, a, vocab.bos_id, a, vocab.pad_id, vocab.eos_id, a]
    assert run.decode(written) == "aa" and run.unknown_written(written) == 1


# -- 5. generate: the prompt checked before it is echoed, a reader that goes away, bounds, warnings ----------


def test_generate_checks_the_prompt_before_echoing_it_and_bounds_its_numbers(runs, capsys):
    code, out, err = _cli(capsys, "generate", runs["gpt"], "--prompt", "Z@")
    assert code == 2 and out == "" and "not in the model's vocabulary" in err
    for seed in (-1, 2**64):
        code, out, err = _cli(capsys, "generate", runs["gpt"], "--prompt", "t", "--seed", seed)
        assert code == 2 and "--seed must be in 0..18446744073709551615" in err and out == "", err
    code, out, err = _cli(capsys, "generate", runs["gpt"], "--prompt", "t", "--max-new-tokens", 10**15)
    assert code == 2 and "--max-new-tokens is too large" in err and "can allocate" in err and out == "", err
    code, out, err = _cli(
        capsys, "generate", runs["s2s"], "--source", "abc", "--length-penalty", 1.0, "--early-stopping"
    )
    assert code == 0 and "--length-penalty applies to beam search only" in err
    assert "--early-stopping applies to beam search only" in err


def test_generate_help_says_a_language_model_samples_by_default():
    from seqlab.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["generate"]
    text = " ".join(sub.format_help().split())
    assert "samples at temperature 1.0" in text and "Hugging Face's generate is greedy by default" in text


def test_generate_into_a_pipe_that_closes_stops_at_once_with_status_0(runs):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "seqlab", "generate", str(runs["gpt"]), "--prompt", "to be"]
    proc = subprocess.Popen(
        [*argv, "--max-new-tokens", "1000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    head = proc.stdout.read(100)  # what `| head -c 100` reads, then it goes away
    proc.stdout.close()
    try:
        code = proc.wait(timeout=60)  # a million tokens would take many minutes
    finally:
        proc.kill()
    assert len(head) == 100 and head.startswith(b"to be")
    assert code == 0, proc.stderr.read().decode()


# -- 6. --device: a run trained on a GPU is usable without one -------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA that a laptop is")
def test_a_run_trained_on_cuda_is_used_on_the_cpu_with_device_cpu(runs, tmp_path, capsys):
    run = _copy_run(runs["s2s"], tmp_path)
    _edit_checkpoints(run, lambda ckpt: ckpt["train_config"].update(device="cuda"))
    code, out, err = _cli(capsys, "eval", run, "--split", "val")
    assert code == 2 and "trained with train.device = cuda" in err and "--device cpu" in err, err
    code, out, err = _cli(capsys, "eval", run, "--split", "val", "--device", "cpu")
    assert code == 0 and json.loads(out)["val/exact_match"] > 0.5, err
    code, out, err = _cli(capsys, "generate", run, "--source", "abc", "--device", "cpu")
    assert code == 0 and out.strip(), err
    code, out, err = _cli(capsys, "generate", run, "--source", "abc", "--device", "cuda")
    assert code == 2 and "--device cuda: no CUDA device is available here" in err
    code, out, err = _cli(capsys, "plot", run, "--what", "attention")  # diagnostics run on the CPU
    assert code == 0 and "attention" in out, err


# -- 8. a checkpoint belongs to its run; eval --checkpoint writes its own files ---------------------------------


def test_checkpoint_is_a_name_in_the_run_and_one_from_another_config_is_said(runs, tmp_path, capsys):
    code, out, err = _cli(capsys, "eval", runs["s2s"], "--checkpoint", "../../other/last.pt")
    assert code == 2 and "--checkpoint names a file in RUN_DIR/checkpoints" in err
    run = _copy_run(runs["s2s"], tmp_path)
    config = run / "config.toml"
    config.write_text(config.read_text().replace("d_ff = 64", "d_ff = 128"))  # as if another run's checkpoint
    for argv in (("eval", run, "--split", "val"), ("generate", run, "--source", "ab"), ("report", run)):
        code, out, err = _cli(capsys, *argv)
        assert code == 0 and "checkpoints/last.pt does not belong to" in err, err
        assert "model.d_ff: checkpoint 64, config.toml 128" in err


def test_eval_of_best_writes_its_own_files_naming_the_checkpoint_and_the_report_reads_them(runs, tmp_path, capsys):
    run = _copy_run(runs["s2s"], tmp_path)
    last = (run / "predictions.tsv").read_text()
    code, out, err = _cli(capsys, "eval", run, "--checkpoint", "best.pt")
    assert code == 0, err
    scores = json.loads((run / "scores-best.json").read_text())
    assert scores["test/checkpoint"] == "best.pt" and scores["test/step"] == 300
    assert (run / "predictions-best.tsv").is_file() and (run / "predictions.tsv").read_text() == last
    code, out, err = _cli(capsys, "eval", run, "--split", "val")
    assert json.loads((run / "scores-val.json").read_text())["val/checkpoint"] == "last.pt"
    code, out, err = _cli(capsys, "report", run, "--checkpoint", "best.pt")
    assert code == 0, err
    assert "predictions-best.tsv (greedy decoding of the test split by best.pt)" in (run / "report.html").read_text()


# -- 6. --precision: eval and generate in bf16 autocast -----------------------------------------------------------


def test_eval_and_generate_in_bf16_agree_with_fp32_and_say_so(runs, capsys):
    """bf16 keeps 8 bits of mantissa (a relative rounding of 2**-9 = 0.2% per value): through these two-layer
    models the loss and log-likelihood moved by under 0.1% (measured: nll per token 0.23968 -> 0.23982), so 2%
    is 10x the rounding of one value and fails only for a broken bf16 path; the decoded outputs of these
    confident models are the same tokens (log P of "cba" -0.1332 -> -0.1338). The JSON records the precision."""
    values = {}
    for precision in ("fp32", "bf16"):
        code, out, err = _cli(capsys, "eval", runs["gpt"], "--split", "val", "--precision", precision)
        assert code == 0, err
        values[precision] = json.loads(out)
        assert values[precision]["precision"] == precision
    fp32, bf16 = values["fp32"], values["bf16"]
    assert bf16["val/log_likelihood"] != fp32["val/log_likelihood"]  # the forward passes did run in bf16
    for key in ("val/loss", "val/nll_per_token", "val/bits_per_char"):
        assert bf16[key] == pytest.approx(fp32[key], rel=0.02, abs=0.01), key
    code, out, err = _cli(capsys, "eval", runs["s2s"], "--split", "val", "--precision", "bf16")
    s2s = json.loads(out)
    assert code == 0 and s2s["precision"] == "bf16" and s2s["val/exact_match"] > 0.5, err
    scores = json.loads((runs["s2s"] / "scores-val.json").read_text())
    assert scores["val/precision"] == "bf16"  # the predictions file says how it was decoded
    outputs = {}
    for precision in ("fp32", "bf16"):
        code, out, err = _cli(capsys, "generate", runs["s2s"], "--source", "abc", "--scores", "--precision", precision)
        assert code == 0, err
        text, log_prob, score = out.strip().split("\t")
        outputs[precision] = text, float(log_prob)
        greedy = ("--prompt", "to be", "--temperature", "0", "--max-new-tokens", "40")
        code, out, err = _cli(capsys, "generate", runs["gpt"], *greedy, "--precision", precision)
        assert code == 0, err
        outputs[precision, "gpt"] = out
    assert outputs["bf16"][0] == outputs["fp32"][0] == "cba"
    assert outputs["bf16"][1] == pytest.approx(outputs["fp32"][1], abs=0.05)
    assert outputs["bf16", "gpt"] == outputs["fp32", "gpt"]


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_is_bf16_only_where_native_and_an_emulated_bf16_is_said(runs, capsys, monkeypatch, native):
    from seqlab.train import trainer

    monkeypatch.setattr(trainer, "native_bf16", lambda device: native)
    code, out, err = _cli(capsys, "eval", runs["s2s"], "--split", "val", "--precision", "auto")
    assert code == 0 and json.loads(out)["precision"] == ("bf16" if native else "fp32"), err
    code, out, err = _cli(capsys, "generate", runs["s2s"], "--source", "abc", "--precision", "bf16")
    assert code == 0 and out.strip() == "cba", err
    if native:
        assert "emulated" not in err
    else:  # as training warns: it runs as asked, slowly, and the line names the fix
        assert "seqlab generate: warning: --precision=bf16 on this CPU is emulated" in err
        assert "set --precision=auto (bf16 only where native) or fp32" in err


def test_precision_takes_fp32_bf16_or_auto_and_says_so_in_one_line(runs, capsys):
    code, out, err = _cli(capsys, "eval", runs["s2s"], "--precision", "fp16")
    assert code == 2 and out == "" and "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("argument --precision: invalid choice: 'fp16' (choose from 'fp32', 'bf16', 'auto')")
    )
    with pytest.raises(ConfigError, match="--precision must be one of fp32, bf16, auto, got 'fp16'"):
        from seqlab.runs import load_generation_run

        load_generation_run(runs["s2s"], precision="fp16")
