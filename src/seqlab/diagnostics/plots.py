"""What ``seqlab plot RUN_DIR`` draws: every diagnostic that applies to the run's model, as PNGs in
``RUN_DIR/plots/`` (and as images in the run's TensorBoard), the rest skipped with the reason.

The model comes from the run's checkpoint and the examples from its own data (the test split, or
the validation split where a run holds no test part), rebuilt as ``seqlab eval`` does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from ..config import ConfigError
from ..models import build_model
from ..models.seq2seq_common import Seq2SeqModel
from ..utils import atomic_write_text, eval_mode
from . import attention as att
from .curves import plot_curves, plot_runs_curves, read_metrics
from .gates import plot_gates, record_gates, saturation
from .gradflow import plot_grad_flow, recurrent_layers, run_grad_flow
from .posenc import plot_positional, positional_tables

WHAT = ("curves", "gradflow", "gates", "attention", "posenc")
GRADFLOW_BATCH = 32
GATES_BATCH = 64
MAX_TOKENS = 40  # attention maps of longer sequences show their first 40 tokens


@dataclass
class PlotResult:
    """One diagnostic: the files it wrote, or why it does not apply; lines worth printing; data for the report."""

    what: str
    paths: list[Path] = field(default_factory=list)
    skipped: str | None = None
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class Skip(Exception):
    """This diagnostic does not apply to the run (the message says why)."""


def token_label(tok: str) -> str:
    """A token as an axis label: visible whitespace."""
    return {" ": "␣", "\n": "\\n", "\t": "\\t"}.get(tok, tok)


class RunDiagnostics:
    """The diagnostics of one run directory; the model and data are loaded on first use."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        checkpoint: str = "last.pt",
        example: int = 0,
        data_location: dict[str, str] | None = None,
        notify: Callable[[str], None] = lambda text: print(f"warning: {text}", file=sys.stderr),
    ):
        self.run_dir, self.notify = Path(run_dir), notify
        if not self.run_dir.is_dir():
            raise ConfigError(f"run directory not found: {self.run_dir}")
        if not (self.run_dir / "config.toml").is_file() and not (self.run_dir / "checkpoints").is_dir():
            raise ConfigError(
                f"{self.run_dir} is not a seqlab run directory (no config.toml, no checkpoints/); "
                f"give a folder written by seqlab train (seqlab runs lists them)"
            )
        if example < 0:
            raise ConfigError(f"--example must be >= 0, got {example}")
        from ..runs.store import check_data_location

        check_data_location(data_location)  # before anything is loaded: loading waits for a plot that needs it
        if checkpoint != "last.pt" and not (self.run_dir / "checkpoints" / checkpoint).is_file():  # a typo: say so
            from ..runs import read_run_checkpoint

            read_run_checkpoint(self.run_dir, checkpoint)
        self.plots = self.run_dir / "plots"
        self.checkpoint, self.example, self.data_location = checkpoint, example, data_location
        self._loaded: tuple | None = None
        self._splits = None

    # -- what is loaded --------------------------------------------------------------------------
    def _load(self):
        """(experiment, model in eval mode, checkpoint); Skip if the run has no usable checkpoint."""
        if self._loaded is None:
            from ..runs import load_run

            try:
                self._loaded = load_run(self.run_dir, self.checkpoint, self.data_location)
            except ConfigError as err:
                if (self.run_dir / "checkpoints" / self.checkpoint).is_file():
                    raise  # a checkpoint that is there but cannot be read is an error of the command, said once
                # no checkpoint yet (a run stopped before its first): what needs the model is skipped
                raise Skip(f"needs the trained model: {err}") from None
            self._loaded[1].eval()
            from ..runs.use import check_belongs

            check_belongs(self.run_dir, self.checkpoint, self._loaded[2], self.notify)
        return self._loaded

    @property
    def exp(self):
        return self._load()[0]

    @property
    def model(self) -> torch.nn.Module:
        return self._load()[1]

    @property
    def step(self) -> int:
        return int(self._load()[2].get("step", 0))

    @property
    def model_name(self) -> str:
        return self.exp.model.name

    def splits(self):
        if self._splits is None:
            from ..data import resolve_locations
            from ..runs import build_run_data
            from ..runs.use import check_same_vocabularies, stored_vocabularies

            try:
                splits = build_run_data(resolve_locations(self.exp.data), self.run_dir)
                stored = stored_vocabularies(self._load()[2])
                check_same_vocabularies(stored, splits.info, self.run_dir)  # else its ids mean other tokens
            except ConfigError as err:  # DataError too: the run's data is not where it was
                raise Skip(f"needs the run's data: {err}") from None
            splits.info.update(stored or {})  # the run's own vocabularies decode its examples
            self._splits = splits
        return self._splits

    def dataset(self):
        """The test split, or the validation (then training) split when the run holds no test part."""
        splits = self.splits()
        for name in ("test", "val", "train"):
            ds = getattr(splits, name)
            if len(ds):
                return name, ds
        raise Skip("the run's data has no examples")

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n examples starting at --example (wrapping around): example N is row 0 of the batch."""
        split, ds = self.dataset()
        if self.example >= len(ds):
            raise ConfigError(f"--example {self.example} is out of range: the {split} split has {len(ds)} examples")
        idx = (torch.arange(min(n, len(ds))) + self.example) % len(ds)
        tensors = getattr(ds, "tensors", None)
        if tensors is not None:
            return tuple(t[idx] for t in tensors)[:2]
        return tuple(default_collate([ds[int(i)] for i in idx]))[:2]

    @property
    def info(self) -> dict:
        return self.splits().info

    def title(self) -> str:
        return f"{self.model_name} on {self.exp.data.name}, step {self.step}"

    # -- the diagnostics ---------------------------------------------------------------------------
    def curves(self, compare: list[str | Path] = ()) -> PlotResult:
        metrics = self.run_dir / "metrics.jsonl"
        if not metrics.is_file():
            raise Skip(f"{metrics} does not exist (the run logged nothing yet)")
        if not read_metrics(metrics):
            raise Skip(f"{metrics} holds no readable line (the run logged nothing yet, or the file is damaged)")
        paths = [plot_curves(metrics, self.plots / "curves.png", title=self.run_dir.name)]
        if compare:
            runs = {self.run_dir.name: read_metrics(metrics)}
            for other in compare:
                other_metrics = Path(other) / "metrics.jsonl"
                if not other_metrics.is_file():
                    raise ConfigError(f"--compare {other}: no metrics.jsonl there (is it a seqlab run directory?)")
                runs[Path(other).name] = read_metrics(other_metrics)
            paths.append(plot_runs_curves(runs, self.plots / "curves_compare.png"))
        return PlotResult("curves", paths)

    def gradflow(self) -> PlotResult:
        model = self.model
        if not recurrent_layers(model):
            raise Skip(f"model '{self.model_name}' has no recurrent layer: no gradient flows through time")
        x, y = self.batch(GRADFLOW_BATCH)
        k = getattr(self.exp.train, "tbptt_steps", 0) or None
        try:
            flow = run_grad_flow(
                model, x, y, model_cfg=self.exp.model, build=build_model, truncate=k, seed=self.exp.train.seed
            )
        except ValueError as err:
            raise Skip(str(err)) from None
        png = plot_grad_flow(flow, self.plots / "gradflow.png", title=self.title())
        path = self.plots / "gradflow.json"
        atomic_write_text(
            path,
            json.dumps({"run": str(self.run_dir), "step": self.step, "batch": len(x), **flow.to_json()}, indent=1)
            + "\n",
        )
        lines = [f"gradient flow: ||dL/dH_t|| on {len(x)} examples, fitted factor per step back (< 1: vanishing)"]
        lines += ["  " + line for line in flow.lines()]
        return PlotResult("gradflow", [png, path], lines=lines, data={"flow": flow.to_json()})

    def gates(self) -> PlotResult:
        model = self.model
        if not recurrent_layers(model):
            raise Skip(f"model '{self.model_name}' has no recurrent layer, so no gates")
        x, y = self.batch(GATES_BATCH)
        try:
            record = record_gates(model, x, y if isinstance(model, Seq2SeqModel) else None)
        except ValueError as err:
            raise Skip(str(err)) from None
        mask = None
        if isinstance(model, Seq2SeqModel):  # padded sources: only real steps count
            mask = x[:, : record.hidden.shape[1]] != self.exp.model.pad_id
        png = plot_gates(record, self.plots / "gates.png", example=0, title=self.title(), mask=mask, label=self.example)
        sat = saturation(record, mask)
        line = "gates: saturated fraction " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in sat.items())
        return PlotResult("gates", [png], lines=[line], data={"saturation": sat})

    def attention_maps(self) -> tuple[list[att.AttentionMap], dict]:
        """The example's attention maps and what else the report needs (ViT: rollout inputs)."""
        model = self.model
        x, y = self.batch(1 if not hasattr(model, "attention_weights") else 8)
        extra: dict[str, Any] = {}
        with torch.no_grad(), eval_mode(model):
            if hasattr(model, "attention_weights"):  # ViT, transformer_forecaster: encoder self-attention
                weights = model.attention_weights(x)
                if self.model_name == "vit":
                    kind, tokens = "vit", att.vit_tokens(model.grid)
                    extra = {"rollout": (x[0], weights, model.grid, model.config.pool)}
                else:
                    T = weights[0].shape[-1]
                    kind, tokens = "window", [f"t-{T - i}" for i in range(T)]
                return [att.AttentionMap(kind, att.stack_layers(weights, 0), tokens, tokens)], extra
            if isinstance(model, Seq2SeqModel):
                out = model(x, y, need_weights=True)
                src, tgt = self.info["src_vocab"], self.info["tgt_vocab"]
                pad = self.exp.model.pad_id
                s_ids = [i for i in x[0].tolist() if i != pad][:MAX_TOKENS]
                t_ids = [i for i in y[0].tolist() if i != pad][:-1][:MAX_TOKENS]  # the decoder's inputs: no <eos>
                return att.transformer_maps(
                    out[2], 0, [token_label(src.itos[i]) for i in s_ids], [token_label(tgt.itos[i]) for i in t_ids]
                ), extra
        if hasattr(model, "begin_decoding") and "vocab" in self.info:  # a decoder-only LM
            block = getattr(self.exp.model, "block_size", MAX_TOKENS)
            prompt = x[:1, : min(MAX_TOKENS, block)]
            tokens = [token_label(self.info["vocab"].itos[i]) for i in prompt[0].tolist()]
            try:
                return [att.causal_maps(model, prompt, tokens)], extra
            except ValueError as err:
                raise Skip(str(err)) from None
        raise Skip(f"model '{self.model_name}' has no attention")

    def attention(self) -> PlotResult:
        if not _has_attention(self.model):
            raise Skip(f"model '{self.model_name}' has no attention")
        maps, extra = self.attention_maps()
        paths = [
            att.plot_attention_maps(m, self.plots / f"{m.stem}.png", subtitle=f"example {self.example}, {self.title()}")
            for m in maps
        ]
        paths.append(att.plot_head_entropy(maps, self.plots / "attention_entropy.png", subtitle=self.title()))
        lines = []
        for m in maps:
            ent = att.head_entropy(m)
            lines.append(
                f"attention: {m.title}: head entropy {float(ent.min()):.2f}..{float(ent.max()):.2f} nats "
                f"(uniform over {len(m.key_tokens)} keys: {torch.tensor(len(m.key_tokens)).log():.2f})"
            )
        if "rollout" in extra:
            image, weights, grid, pool = extra["rollout"]
            paths.append(
                att.plot_rollout(
                    image,
                    weights,
                    grid,
                    self.plots / "attention_rollout.png",
                    example=0,
                    pool=pool,
                    label=self.example,
                    subtitle=self.title(),
                )
            )
        return PlotResult("attention", paths, lines=lines, data={"maps": maps})

    def posenc(self) -> PlotResult:
        tables = positional_tables(self.model)
        if not tables:
            if getattr(self.exp.model, "positions", None) == "none":
                why = "model.positions = 'none': it reads its input as a set"
            else:
                why = "a recurrent model reads the order by its recurrence"
            raise Skip(f"model '{self.model_name}' has no positional encoding ({why})")
        length = _positions_used(self.exp.model)
        paths = []
        for name, kind, table, width in tables:
            stem = f"posenc_{kind}" + (f"_{name.replace('.', '_')}" if sum(t[1] == kind for t in tables) > 1 else "")
            paths.append(
                plot_positional(
                    name, kind, table, width, self.plots / f"{stem}.png", length=length, subtitle=self.title()
                )
            )
        return PlotResult("posenc", paths)

    def run(self, what: str, compare: list[str | Path] = ()) -> PlotResult:
        """One diagnostic by name; a Skip becomes a result with the reason."""
        try:
            return self.curves(compare) if what == "curves" else getattr(self, what)()
        except Skip as skip:
            return PlotResult(what, skipped=str(skip))

    def plot(self, what: str = "all", compare: list[str | Path] = (), tensorboard: bool = True) -> list[PlotResult]:
        names = WHAT if what == "all" else (what,)
        results = [self.run(name, compare) for name in names]
        pngs = [p for r in results for p in r.paths if p.suffix == ".png"]
        if tensorboard and pngs:
            from .tensorboard import log_images

            log_images(self.run_dir, pngs, step=self.step if self._loaded else 0)
        return results


def _has_attention(model: torch.nn.Module) -> bool:
    from ..nn.alignment import Alignment
    from ..nn.attention import MultiHeadAttention

    return any(isinstance(m, (MultiHeadAttention, Alignment)) for m in model.modules())


def _positions_used(cfg) -> int:
    """How many positions the run's model reads (the sinusoidal table has 5,000 rows; nobody uses them all)."""
    for key in ("block_size", "tau"):
        if getattr(cfg, key, 0):
            return int(getattr(cfg, key))
    if getattr(cfg, "max_src_len", 0):
        return int(max(cfg.max_src_len, cfg.max_tgt_len))
    return 128
