"""Evaluate a run: its model on one split of its data, rebuilt exactly as in training; a series' errors
in the series' own units."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import ConfigError
from ..data import Splits, resolve_locations
from ..generate import GenerationConfig
from ..task import Task
from ..train.config import Experiment
from ..train.contracts import ContextWindow, TokenIds
from ..train.likelihood import sequence_log_likelihood, unigram_probs
from ..train.metrics import evaluate
from ..train.seq2seq_metrics import seq2seq_scores
from ..utils import atomic_write_text, eval_mode
from .checks import check_shapes
from .store import build_run_data, data_file_changes, load_run
from .use import (
    OLD_RUN,
    autocast,
    check_belongs,
    check_same_vocabularies,
    run_device,
    run_precision,
    stored_vocabularies,
)


@torch.no_grad()
def original_units_errors(
    model: torch.nn.Module, dataset, inverse: Callable, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    """MSE and RMSE of a series model's predictions in the series' own units: the model's output and
    the targets mapped back by ``inverse`` (the scaler fitted on the training part), then compared."""
    x, y = dataset.tensors  # (N, tau, 1), (N, 1), normalised
    squared = 0.0
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            y_hat = model(x[i : i + batch_size].to(device))[0]  # (b, 1)
            err = inverse(y_hat.double().cpu()) - inverse(y[i : i + batch_size].double())  # (b, 1), original units
            squared += float((err**2).sum())
    mse = squared / y.numel()
    return {"mse_original_units": mse, "rmse_original_units": mse**0.5}


def split_metrics(
    model: torch.nn.Module, splits: Splits, split: str, task: str, metrics: dict[str, float], device: torch.device
) -> dict[str, float]:
    """``split/<metric>`` keys; for a series, the normalised loss named so and MSE, RMSE in original units."""
    if "inverse" not in splits.info:
        return {f"{split}/{k}": v for k, v in metrics.items()}
    out = original_units_errors(model, getattr(splits, split), splits.info["inverse"], device)
    out.update({("loss_normalised" if k == "loss" else k): v for k, v in metrics.items()})
    return {f"{split}/{k}": v for k, v in out.items()}


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    checkpoint: str = "last.pt",
    data_location: dict[str, str] | None = None,
    notify: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
    beam: int = 1,
    length_penalty: float = GenerationConfig.length_penalty,
    device: str | None = None,
    precision: str = "fp32",
) -> dict[str, float]:
    """Metrics of a trained run on one split of its data, rebuilt exactly as in training.

    A seq2seq run's outputs are greedy, or beam search of width ``beam`` (ranked by
    log P / ((5 + |Y|) / 6) ** length_penalty); predictions and scores files name the beam.

    For a language model, also the chain rule over the split's whole text read as one stream
    (``train.likelihood``): log_likelihood, tokens, nll_per_token, perplexity, bits_per_char.
    The first character, which the model cannot predict, is scored by the training part's
    add-one-smoothed unigram frequency. For a series, the normalised loss is ``loss_normalised``
    and the MSE and RMSE in the series' units are added. A data file that is not the one the run
    was trained on is reported through ``notify`` (one line each), and the evaluation goes on, unless its
    vocabulary differs from the one stored with the run (refused: its ids would mean other tokens). A
    checkpoint whose configs are not the run's config.toml is said through ``notify``.

    ``device`` (``--device``) overrides the run's train.device. ``precision`` (``--precision``): fp32, or
    bf16 autocast around every forward pass ("auto": bf16 where the device computes it natively); the
    metrics record which (``precision``). A seq2seq run's outputs are written to
    ``predictions[-<checkpoint>][-<split>][-beam<N>].tsv`` and ``scores...json`` (no checkpoint part for
    last.pt), and the scores record which checkpoint (and step) produced them.
    """
    exp, model, ckpt = load_run(run_dir, checkpoint, data_location, action="evaluate")
    check_belongs(run_dir, checkpoint, ckpt, notify)
    exp = Experiment(exp.model, resolve_locations(exp.data), exp.train)
    splits = build_run_data(exp.data, Path(run_dir))
    for line in data_file_changes(ckpt.get("data_files"), splits.info.get("files", {})):
        notify(line)
    stored = stored_vocabularies(ckpt)
    if stored is None and any(k in splits.info for k in ("vocab", "src_vocab")):
        notify(OLD_RUN.format(run_dir=run_dir))
    check_same_vocabularies(stored, splits.info, run_dir)
    try:
        check_shapes(exp, splits.info)
    except ConfigError as err:  # the model is fixed now: only the data can be wrong
        raise ConfigError(f"{run_dir} was trained on other data: {str(err).split('; ')[0]}") from None
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; expected train, val or test")
    device = run_device(exp.train.device, device)
    precision = run_precision(precision, device, notify)
    start = time.perf_counter()
    dataset = getattr(splits, split)
    if len(dataset) == 0:
        raise ConfigError(
            f"the {split} split of {run_dir} is empty (its data config holds nothing out for it); "
            f"evaluate another split, e.g. --split val"
        )
    task = Task(ckpt.get("task", Task.CLASSIFICATION))
    if beam != 1 and task != Task.SEQ2SEQ:
        raise ConfigError(
            f"--beam applies to seq2seq runs (exact match, BLEU, chrF of decoded outputs); {run_dir} is a {task} run"
        )
    with autocast(precision, device):  # every forward pass below, fp32 or bf16
        metrics = evaluate(model.to(device), dataset, task=task, device=device)
        if task == Task.SEQ2SEQ:  # greedy outputs: exact match, token accuracy, BLEU, chrF; the outputs in RUN_DIR
            suffix = output_suffix(checkpoint, split, beam)
            scores = seq2seq_scores(
                model,
                dataset,
                splits.info,
                device=device,
                predictions=Path(run_dir) / f"predictions{suffix}.tsv",
                beam=beam,
                length_penalty=length_penalty,
            )
            if beam > 1:
                scores.update(beam=beam, length_penalty=length_penalty)
            # which weights, in which precision, wrote the predictions
            scores.update(checkpoint=checkpoint, step=int(ckpt.get("step", 0)), precision=precision)
            atomic_write_text(
                Path(run_dir) / f"scores{suffix}.json",
                json.dumps({f"{split}/{k}": v for k, v in scores.items()}, indent=2) + "\n",
            )
            metrics.update(scores)
        if task == Task.LANGUAGE_MODEL and isinstance(dataset, TokenIds):
            # The whole part as one stream: log P(x_1..x_T) by the chain rule, bits per character.
            first = unigram_probs(splits.train.ids, splits.info["vocab_size"])  # P(x_1): the model has no BOS
            # A window model (a GPT) reads at most block_size tokens: strided windows instead of one stream,
            # no longer than the windows it trained on (positions past those were never trained).
            context = None
            if isinstance(exp.model, ContextWindow):
                context = min(exp.model.block_size, getattr(exp.data, "seq_len", None) or exp.model.block_size)
            metrics.update(
                sequence_log_likelihood(model, dataset.ids, first_probs=first, device=device, context=context)
            )
        metrics = split_metrics(model, splits, split, task, metrics, device)
    return {**metrics, "precision": precision, "seconds": time.perf_counter() - start}


def output_suffix(checkpoint: str = "last.pt", split: str = "test", beam: int = 1) -> str:
    """What eval's predictions*.tsv and scores*.json names carry: best.pt, split val, beam 5 -> "-best-val-beam5"."""
    stem = "" if checkpoint == "last.pt" else "-" + Path(checkpoint).stem
    return stem + ("" if split == "test" else f"-{split}") + (f"-beam{beam}" if beam > 1 else "")
