"""``seqlab generate``: continue prompts (language models) or translate sources (seq2seq) with a run's model.

Its decoding flags are GenerationConfig's fields: each field is a flag (``top_k`` -> ``--top-k``) with
the field's type and default, unless it is one of ``LIBRARY_ONLY``; adding a field to GenerationConfig
adds the flag (``FLAG_HELP`` gives it a better help line than the generic one).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

from ..config import ConfigError
from ..generate.config import GenerationConfig
from .common import checkpoint_option, command, data_overrides, device_option, precision_option, warn_as

HELP = "write text with a language-model or seq2seq run"
DESCRIPTION = """\
Continue a prompt (language models: gpt, rnn_lm) or translate a source (seq2seq_rnn,
seq2seq_transformer) with RUN_DIR's model and the vocabulary stored with it (its data is not read).
Greedy with --temperature 0, sampling above 0, beam search with --beam N. A language model samples
at temperature 1.0 unless told otherwise (Hugging Face's generate is greedy by default: give
--temperature 0 for that); seq2seq models decode greedily. Source words or characters the model
does not know are named on stderr and read as <unk>; no special token is ever written. Output to a
reader that went away (seqlab generate ... | head -c 100) stops it at once, with status 0."""
EPILOG = """\
examples:
  seqlab generate runs/shakespeare --prompt "ROMEO:" --max-new-tokens 300 --temperature 0.8 --top-k 40
  seqlab generate runs/fra-eng --source "je suis content ." --beam 5 --num-return-sequences 3 --scores
  seqlab generate runs/fra-eng --input sources.txt --output translations.txt --beam 5
"""

# Fields that are for library callers (token ids, attention weights), not for the command line.
LIBRARY_ONLY = ("banned_ids", "eos_ids", "output_attentions")
# A flag's name where it is not the field's own with '-' for '_'.
FLAG_NAMES = {
    "num_beams": "--beam",
    "no_repeat_ngram_size": "--no-repeat-ngram",
    "stop_strings": "--stop",
    "use_cache": "--no-cache",
}
# Defaults that depend on the run (language model or seq2seq): None here, resolved in ``settings``.
RUN_DEFAULTS = ("max_new_tokens", "temperature")
FLAG_HELP = {
    "max_new_tokens": "default: 200 for a language model; a seq2seq model's longest target",
    "min_new_tokens": "no <eos> before this many tokens (default: %(default)s)",
    "temperature": "0: greedy; > 0: sample (default: 1.0 for a language model, 0 for seq2seq and beam search)",
    "top_k": "sample among the k most probable tokens (default %(default)s: off)",
    "top_p": "sample from the smallest set reaching p (default %(default)s: off)",
    "min_p": "drop tokens below min_p * the top probability (default %(default)s)",
    "num_beams": "beam search of width N (default %(default)s: none)",
    "length_penalty": "beam search ranks log P / ((5 + |Y|) / 6) ** ALPHA (default: %(default)s)",
    "early_stopping": "beam search: stop at N finished hypotheses",
    "num_return_sequences": "outputs per input: samples, or the N best beams (default: %(default)s)",
    "repetition_penalty": "> 1 makes tokens already seen less likely (default %(default)s: off)",
    "no_repeat_ngram_size": "never repeat an N-gram (default %(default)s: off)",
    "stop_strings": "end a sequence once its text contains TEXT (repeatable; not with --beam)",
    "seed": "make sampling reproducible",
    "use_cache": "recompute the whole prefix at every step (slow; for checking the cache)",
}
METAVARS = {"num_beams": "N", "length_penalty": "ALPHA", "num_return_sequences": "N", "no_repeat_ngram_size": "N"}


def flag(field: str) -> str:
    """GenerationConfig's field -> its command-line flag: ``top_k`` -> ``--top-k``."""
    return FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def add_generation_flag(parser: argparse.ArgumentParser, field: str, help: str | None = None) -> None:
    """``parser.add_argument`` for GenerationConfig's ``field``: its flag, type and default (``args.<field>``)."""
    f = next(f for f in dataclasses.fields(GenerationConfig) if f.name == field)
    kind = typing.get_type_hints(GenerationConfig)[field]
    if isinstance(kind, types.UnionType):  # int | None: an int, or left out
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    default = None if field in RUN_DEFAULTS else f.default
    help = help or FLAG_HELP.get(field, f"GenerationConfig.{field} (default: %(default)s)")
    if kind is bool:  # a switch that turns the default around: --early-stopping, --no-cache
        action = "store_false" if f.default else "store_true"
        parser.add_argument(flag(field), dest=field, action=action, help=help)
    elif typing.get_origin(kind) is tuple:  # repeatable: --stop A --stop B
        item = typing.get_args(kind)[0]
        parser.add_argument(flag(field), dest=field, type=item, action="append", default=[], metavar="TEXT", help=help)
    else:
        parser.add_argument(flag(field), dest=field, type=kind, default=default, metavar=METAVARS.get(field), help=help)


def add_parser(sub) -> argparse.ArgumentParser:
    p = command(sub, "generate", HELP, DESCRIPTION, EPILOG)
    p.add_argument("run_dir")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--prompt", help="text for a language model to continue")
    given.add_argument("--source", help="text for a seq2seq model to translate")
    given.add_argument("--input", metavar="FILE", help="one prompt or source per line, decoded in batches")
    for field in dataclasses.fields(GenerationConfig):
        if field.name not in LIBRARY_ONLY:
            add_generation_flag(p, field.name)
    p.add_argument("--batch-size", type=int, default=32, help="inputs decoded together with --input (default: 32)")
    p.add_argument(
        "--output",
        metavar="FILE",
        help="write the outputs here, one line per sequence "
        "(tab, newline, backslash written \\t, \\n, \\\\), instead of printing them",
    )
    p.add_argument("--scores", action="store_true", help="also print each sequence's log-probability and score")
    checkpoint_option(p)
    device_option(p)
    precision_option(p)
    return p


def settings(args, run) -> GenerationConfig:
    """The GenerationConfig of the command line, with the run's defaults for what it leaves out."""
    from ..generate import GenerationConfigError
    from ..task import Task

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(GenerationConfig) if f.name not in LIBRARY_ONLY}
    lm = run.task == Task.LANGUAGE_MODEL
    if values["temperature"] is None:
        values["temperature"] = 1.0 if lm and args.num_beams == 1 else 0.0
    values["max_new_tokens"] = values["max_new_tokens"] or run.default_max_new_tokens()
    values["stop_strings"] = tuple(values["stop_strings"])
    try:
        cfg = GenerationConfig(**values)
    except GenerationConfigError as err:
        raise ConfigError(f"{flag(err.key)} {err.detail}") from None
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    return cfg


def read_inputs(args, given: str | None) -> tuple[list[str], list[str]]:
    """(texts, where each came from): the lines of --input, or the one --prompt / --source."""
    if args.input is None:
        return [args.prompt if given == "prompt" else args.source], [f"--{given}"]
    if args.output is not None and Path(args.output).resolve() == Path(args.input).resolve():
        raise ConfigError(
            f"--output {args.output} is the --input file: writing it would replace the inputs; give another --output"
        )
    try:
        texts = Path(args.input).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read --input {args.input}: {getattr(err, 'strerror', None) or err}") from None
    if not texts:
        raise ConfigError(f"--input {args.input} holds no lines: nothing to decode (one prompt or source per line)")
    return texts, [f"{args.input}:{i + 1}" for i in range(len(texts))]


class ReaderGone(Exception):
    """stdout's reader went away while text streamed: generating more would be for nobody."""


def run(args, extra: list[str], argv: list[str]) -> int:
    import warnings

    from ..generate import ContextTooLong, GenerationConfigError
    from ..runs import generate_texts, load_generation_run
    from ..task import Task
    from ..train.seq2seq_metrics import escape

    warn = warn_as("generate")
    run = load_generation_run(
        args.run_dir, args.checkpoint, data_overrides(extra), notify=warn, device=args.device, precision=args.precision
    )
    given = "prompt" if args.prompt is not None else "source" if args.source is not None else None
    if given is not None and given != run.reads:
        raise ConfigError(
            f"{args.run_dir} is a {run.task.replace('_', ' ')} run: give --{run.reads} TEXT "
            f"(or --input FILE), not --{given}"
        )
    texts, names = read_inputs(args, given)
    lm = run.task == Task.LANGUAGE_MODEL
    cfg = settings(args, run)
    if cfg.num_beams == 1:  # beam-search settings given without a beam: said, not silently ignored
        for option in ("--length-penalty", "--early-stopping"):
            if any(a == option or a.startswith(option + "=") for a in argv):
                warn(f"{option} applies to beam search only (--beam N > 1); ignored")
    streaming = (
        lm and args.output is None and args.input is None and cfg.num_beams == 1 and cfg.num_return_sequences == 1
    )

    def stream(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
        if getattr(sys.stdout, "reader_gone", False):  # generate ... | head -c 100: nobody reads the rest
            raise ReaderGone

    with warnings.catch_warnings():
        warnings.simplefilter("always", ContextTooLong)
        warnings.showwarning = lambda message, *rest, **kw: warn(str(message))
        try:
            results = generate_texts(
                run,
                texts,
                cfg,
                batch_size=args.batch_size,
                names=names,
                stream=stream if streaming else None,
                on_encoded=(lambda: stream(texts[0])) if streaming else None,  # echoed once known to be valid
            )
        except ReaderGone:
            return 0
        except GenerationConfigError as err:  # a --max-new-tokens whose outputs cannot fit in memory
            raise ConfigError(f"{flag(err.key)} {err.detail}") from None
    lines = []
    for i, (text, outputs) in enumerate(zip(texts, results)):
        for k, out in enumerate(outputs):
            if args.output is not None:
                lines.append(escape(out.text) + (f"\t{out.log_prob:.4f}\t{out.score:.4f}" if args.scores else ""))
            elif streaming:
                print()
            elif lm:
                if len(texts) > 1 or len(outputs) > 1:
                    print(f"--- {names[i] if len(texts) > 1 else 'sample'} {k + 1}")
                print(text + out.text)
            else:
                print(out.text + (f"\t{out.log_prob:.4f}\t{out.score:.4f}" if args.scores else ""))
            if args.scores and args.output is None and lm:
                print(f"[log P = {out.log_prob:.4f}, score = {out.score:.4f}, {out.tokens} tokens]")
    if args.output is not None:
        from ..utils import atomic_write_text

        atomic_write_text(args.output, "".join(line + "\n" for line in lines))
        print(f"{sum(len(o) for o in results)} sequences for {len(texts)} inputs written to {args.output}")
    return 0
