"""Gradient flow through time: ||dL/dH_t|| at every step t of a recurrent model.

BPTT sends dL/dH_t back one step at a time, dL/dH_{t-1} = (dH_t/dH_{t-1})^T dL/dH_t (+ the
step's own loss term), so the norm shrinks (vanishes) or grows (explodes) geometrically when the
Jacobians are small or large. To read dL/dH_t the states must be tensors of the graph that feed
both the step's output and the next step: :func:`unroll` runs a seqlab recurrent layer one step at
a time through the step function the layer itself runs (``layer.step_function``: the lecture's
``rnn_step``, ``lstm_step``, ``gru_step``, ``layernorm_lstm_step`` on the layer's own parameters, or
a custom cell's step) and keeps each H_t (the state's first tensor); tests check it equals
the layer's forward. :func:`unrolled` puts that loop in place of the recurrent layers of a task
model for the length of a ``with`` block, so the model's own loss can be differentiated w.r.t. H_t.

The norm at step t is the Frobenius norm of dL/dH_t over the batch (B, H): the L2 norm of the
gradient w.r.t. all B sequences' H_t together. Truncated BPTT (``truncate=k``) cuts the graph
(``detach``) every k steps, counted back from the last step, so a loss read at the last step
sends gradient exactly k steps back and exactly zero beyond.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

import seqlab.nn as snn

from ..utils import eval_mode

RECURRENT_LAYERS = (snn.RNN, snn.LSTM, snn.GRU, snn.LayerNormLSTM, snn.Recurrent)


def recurrent_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every seqlab recurrent layer (RNN, LSTM, GRU, LayerNormLSTM, Recurrent) in ``model``."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, RECURRENT_LAYERS)]


def cell_name(layer: nn.Module) -> str:
    """'rnn_tanh', 'rnn_relu', 'lstm', 'gru', 'layernorm_lstm', or a custom cell's class name."""
    if isinstance(layer, snn.Recurrent):
        return type(layer.cells[0]).__name__
    if isinstance(layer, snn.LayerNormLSTM):
        return "layernorm_lstm"
    if isinstance(layer, snn.RNN):
        return f"rnn_{layer.nonlinearity}"
    return "lstm" if isinstance(layer, snn.LSTM) else "gru"


@dataclass
class Unrolled:
    """What :func:`unroll` kept: ``states[k][d]`` is layer k, direction d's list of T tensors H_t (B, H_out),
    each the very tensor that fed step t + 1 and the output; ``cells`` the same for C_t (LSTMs)."""

    states: list[list[list[Tensor]]] = field(default_factory=list)
    cells: list[list[list[Tensor]]] = field(default_factory=list)

    def top(self) -> list[Tensor]:
        """The top layer's forward-direction H_1 .. H_T."""
        return self.states[-1][0]


def unroll(
    layer: nn.Module,
    input: Tensor,
    hx=None,
    *,
    lengths: Tensor | None = None,
    truncate: int | None = None,
    record: Unrolled | None = None,
):
    """``layer(input, hx, lengths=lengths)`` computed one step at a time by the step functions, with every
    H_t kept in ``record``; returns what the layer returns, (output, h_n) or (output, (h_n, c_n)).

    input: (B, T, H_in) if ``layer.batch_first`` else (T, B, H_in); not packed, not unbatched.
    lengths (B,): steps past a sequence's length keep its state and output zeros, as the layer does.
    truncate=k: the state is detached before every step t with (T - t) % k == 0, t > 0 (truncated BPTT
    in chunks of k steps ending at the last step). Dropout between layers follows ``layer.training``.
    """
    if isinstance(input, PackedSequence) or input.dim() != 3:
        raise ValueError("gradient flow needs a padded batch (B, T, H_in); packed or unbatched input is not supported")
    if layer.recurrent_dropout and layer.training:
        raise ValueError("gradient flow is measured in eval mode: variational dropout would change every step")
    if truncate is not None and truncate < 1:
        raise ValueError(f"truncate must be >= 1 step, got {truncate}")
    x = input if layer.batch_first else input.transpose(0, 1)  # (B, T, H_in)
    B, T, _ = x.shape
    D = 2 if layer.bidirectional else 1
    init = layer.zero_state(B, x) if hx is None else tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
    has_cell = len(init) > 1
    valid = None
    if lengths is not None:
        valid = torch.arange(T, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, T)
    record = Unrolled() if record is None else record
    record.states, record.cells = [], []
    finals: list[list[Tensor]] = [[] for _ in init]
    layer_in = x
    for k in range(layer.num_layers):
        outs, hs_k, cs_k = [], [], []
        x_steps = layer_in.unbind(1)  # T views (B, I): indexing layer_in[:, t] would make backward O(T^2)
        for d in range(D):
            step = layer.step_function(k, d)
            state = tuple(s[k * D + d] for s in init)  # (B, H) each
            order = range(T - 1, -1, -1) if d else range(T)
            out_t: list[Tensor | None] = [None] * T
            hs, cs = [None] * T, [None] * T
            for t in order:
                if truncate is not None and t != order[0] and (T - t if not d else t + 1) % truncate == 0:
                    state = tuple(s.detach() for s in state)  # truncated BPTT: no gradient past here
                _, new, _ = step(x_steps[t], state, None)
                if valid is not None:  # finished (or, going backward, not yet started) sequences keep their state
                    keep = valid[:, t, None]  # (B, 1)
                    new = tuple(torch.where(keep, n, s) for n, s in zip(new, state))
                state = new
                hs[t] = state[0]
                cs[t] = state[1] if has_cell else None
                out_t[t] = state[0] if valid is None else state[0] * valid[:, t, None]
            outs.append(torch.stack(out_t, dim=1))  # (B, T, H_out)
            hs_k.append(hs)
            cs_k.append(cs)
            for acc, s in zip(finals, state):
                acc.append(s)
        record.states.append(hs_k)
        record.cells.append(cs_k)
        layer_in = torch.cat(outs, dim=-1)  # (B, T, D * H_out)
        if k + 1 < layer.num_layers and layer.dropout:
            layer_in = F.dropout(layer_in, layer.dropout, layer.training)
    output = layer_in if layer.batch_first else layer_in.transpose(0, 1)
    state_n = tuple(torch.stack(f) for f in finals)  # (num_layers * D, B, H) each
    return output, (state_n if has_cell else state_n[0])


@contextlib.contextmanager
def unrolled(model: nn.Module, *, truncate: int | None = None) -> Iterator[list[tuple[str, Unrolled]]]:
    """Within the block, every seqlab recurrent layer of ``model`` runs through :func:`unroll`; yields the
    list that each call appends (layer name, :class:`Unrolled`) to. The layers' own forward is back after."""
    calls: list[tuple[str, Unrolled]] = []
    layers = recurrent_layers(model)

    def make(name, layer):
        def forward(input, hx=None, *, lengths=None, return_gates=False):
            if return_gates:
                raise ValueError("gradient flow: the unrolled layers do not return gates")
            rec = Unrolled()
            calls.append((name, rec))
            return unroll(layer, input, hx, lengths=lengths, truncate=truncate, record=rec)

        return forward

    for name, layer in layers:
        layer.forward = make(name, layer)  # an instance attribute: shadows the class's forward
    try:
        yield calls
    finally:
        for _, layer in layers:
            del layer.forward


def state_grad_norms(loss: Tensor, states: list[Tensor]) -> list[float]:
    """||dL/dH_t||_F for each H_t in ``states`` (0.0 where the loss does not depend on it)."""
    grads = torch.autograd.grad(loss, states, allow_unused=True, retain_graph=True)
    return [0.0 if g is None else float(g.norm()) for g in grads]


def layer_grad_norms(
    layer: nn.Module, x: Tensor, loss_fn: Callable[[Tensor, object], Tensor], *, truncate: int | None = None
) -> list[float]:
    """||dL/dH_t|| for t = 1..T of the top layer (forward direction) of a bare recurrent layer, with
    L = loss_fn(output, final_state) on the unrolled forward of x."""
    rec = Unrolled()
    output, state = unroll(layer, x, truncate=truncate, record=rec)
    return state_grad_norms(loss_fn(output, state), rec.top())


def model_loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, str]:
    """The loss whose gradient flows back: a model that predicts a token at every step (output (B, T, V),
    targets (B, T) ids) is scored at its last step only, so that step t is T - 1 - t steps from the loss;
    any other model by its own loss ``model(x, y)[1]``. Returns (loss, what it is)."""
    output, loss = model(x, y)[:2]
    if output.dim() == 3 and y.dim() == 2 and not y.is_floating_point() and output.shape[:2] == y.shape:
        return F.cross_entropy(output[:, -1], y[:, -1]), "cross-entropy of the last step's prediction"
    return loss, "the model's own loss on the batch"


def model_grad_norms(model: nn.Module, x: Tensor, y: Tensor, *, truncate: int | None = None) -> list[float]:
    """||dL/dH_t|| for t = 1..T, L = :func:`model_loss` on the batch, H_t the top layer's forward-direction
    states of the model's first recurrent layer call; in eval mode (no dropout)."""
    with eval_mode(model), torch.enable_grad(), unrolled(model, truncate=truncate) as calls:
        loss, _ = model_loss(model, x, y)
        if not calls:
            raise ValueError(f"{type(model).__name__} ran no seqlab recurrent layer on this input")
        return state_grad_norms(loss, calls[0][1].top())


def fit_decay(norms: list[float]) -> float | None:
    """The factor r per step back: least squares of log ||dL/dH_t|| = a + (T - t) log r over the steps
    with a positive norm (r < 1: vanishing, r > 1: exploding); None with fewer than two such steps."""
    pts = [(len(norms) - 1 - t, math.log(n)) for t, n in enumerate(norms) if n > 0 and math.isfinite(n)]
    if len(pts) < 2:
        return None
    d = torch.tensor([p[0] for p in pts], dtype=torch.float64)
    v = torch.tensor([p[1] for p in pts], dtype=torch.float64)
    dc = d - d.mean()
    slope = float((dc * (v - v.mean())).sum() / (dc * dc).sum())
    return math.exp(slope)


# -- a run's comparison: the trained model and fresh ones of every cell, same task, same seed ---------

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "layernorm_lstm")


# LSTMs initialised to remember, next to torch's default (model.init, model.forget_bias; docs/initialisation.md).
LSTM_INITS = {"lstm, forget bias 1": {"forget_bias": 1.0}, "lstm, chrono": {"init": "chrono"}}


def fresh_variants(model_cfg, build: Callable, seed: int = 0, seq_len: int = 0) -> dict[str, nn.Module]:
    """Untrained copies of the model, one per recurrent cell its config accepts (``cell = ...``), each built
    after ``torch.manual_seed(seed)`` (the same initialisation scheme and seed). The relu RNN is the
    tanh one with ``nonlinearity='relu'`` on the same weights. Each cell starts from torch's initialisation;
    where the config has ``init``, LSTMs with a forget bias of 1 and with chrono (T_max: the config's
    ``chrono_max``, else ``seq_len``) are added."""
    if not hasattr(model_cfg, "cell"):
        return {}
    default = {"init": "default", "forget_bias": 0.0} if hasattr(model_cfg, "init") else {}
    variants = [(cell, cell, default) for cell in ("rnn", "lstm", "gru", "layernorm_lstm")]
    if default and (model_cfg.chrono_max or seq_len >= 2):
        chrono_max = model_cfg.chrono_max or seq_len
        variants += [(name, "lstm", {**default, **c, "chrono_max": chrono_max}) for name, c in LSTM_INITS.items()]
    out = {}
    for name, cell, options in variants:
        try:
            cfg = dataclasses.replace(model_cfg, cell=cell, **options)
        except (ValueError, TypeError):  # a family that does not take this cell (seq2seq_rnn: gru, lstm)
            continue
        torch.manual_seed(seed)
        model = build(cfg)
        if cell != "rnn":
            out[name] = model
            continue
        out["rnn_tanh"] = model
        relu = copy.deepcopy(model)
        for _, layer in recurrent_layers(relu):
            layer.nonlinearity = "relu"  # the step function reads it; the weights stay the tanh model's
            layer.mode = "RNN_RELU"
        out["rnn_relu"] = relu
    return out


@dataclass
class GradFlow:
    """Norms by step (index t = 0..T-1) per model, the fitted decay per step, and full vs truncated."""

    norms: dict[str, list[float]]
    decay: dict[str, float | None]
    truncate: int
    cell: str  # the run's own cell
    full: list[float]
    truncated: list[float]
    loss: str = "the model's own loss on the batch"

    def to_json(self) -> dict:
        return {
            "norm": "Frobenius norm of dL/dH_t over the batch, H_t the top layer's state at step t (0-based)",
            "loss": self.loss,
            "decay_per_step": "factor r fitted to ||dL/dH_t|| ~ r^(T-1-t): < 1 vanishing, > 1 exploding",
            "models": {
                name: {"norms": norms, "decay_per_step": self.decay[name]} for name, norms in self.norms.items()
            },
            "truncated_bptt": {
                "model": f"{self.cell} (trained)",
                "k": self.truncate,
                "full": self.full,
                "truncated": self.truncated,
            },
        }

    def lines(self) -> list[str]:
        """One line per model: the fitted decay per step back, and the ratio first/last norm."""
        out = []
        for name, norms in self.norms.items():
            r = self.decay[name]
            last, first = norms[-1], norms[0]
            ratio = f"; ||dL/dH_1|| / ||dL/dH_T|| = {first / last:.3g}" if last > 0 else ""
            out.append(f"{name:<24} decay per step {'n/a' if r is None else f'x{r:.4g}'}{ratio}")
        return out


def run_grad_flow(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    model_cfg=None,
    build: Callable | None = None,
    truncate: int | None = None,
    seed: int = 0,
) -> GradFlow:
    """The trained model's gradient flow on (x, y), fresh models of every cell on the same batch (if
    ``model_cfg`` and ``build`` are given), and full vs truncated BPTT with k = ``truncate`` (T // 4 if it is
    not given or not below T)."""
    layers = recurrent_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no recurrent layer")
    cell = cell_name(layers[0][1])
    norms = {f"{cell} (trained)": model_grad_norms(model, x, y)}
    T = len(norms[f"{cell} (trained)"])
    if model_cfg is not None and build is not None:
        for name, fresh in fresh_variants(model_cfg, build, seed, seq_len=x.size(1)).items():
            norms[f"{name} (init)"] = model_grad_norms(fresh, x, y)
    k = truncate if truncate and truncate < T else max(1, T // 4)  # a k >= T would cut nothing
    full = norms[f"{cell} (trained)"]
    with torch.no_grad(), eval_mode(model):
        what = model_loss(model, x, y)[1]
    return GradFlow(
        norms,
        {n: fit_decay(v) for n, v in norms.items()},
        k,
        cell,
        full,
        model_grad_norms(model, x, y, truncate=k),
        what,
    )


def plot_grad_flow(flow: GradFlow, out_path: str | Path, title: str = "") -> Path:
    """Two panels: every model's ||dL/dH_t|| by step (log scale), and the run's full vs truncated BPTT."""
    from .curves import plt, save_figure

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=FIGSIZE, gridspec_kw={"width_ratios": [3, 2]})
    for name, norms in flow.norms.items():
        t, v = _positive(norms)
        r = flow.decay[name]
        style = {"lw": 2.4, "color": "black"} if name.endswith("(trained)") else {"lw": 1.4}
        ax1.semilogy(t, v, "o-", ms=3, label=f"{name}: x{r:.3g}/step" if r else name, **style)
    ax1.set_xlabel(f"time step t (L: {flow.loss})")
    ax1.set_ylabel("||dL/dH_t|| (Frobenius norm over the batch, log scale)")
    ax1.set_title("Gradient flow through time" + (f": {title}" if title else ""), fontsize=10)
    ax1.grid(alpha=0.3, which="both")
    ax1.legend(fontsize=7, title="model: fitted decay per step back", title_fontsize=7)
    for norms, label, style in (
        (flow.full, "full BPTT", "o-"),
        (flow.truncated, f"truncated, k = {flow.truncate}", "s--"),
    ):
        t, v = _positive(norms)
        ax2.semilogy(t, v, style, ms=4, label=label)
    T = len(flow.full)
    ax2.axvspan(-0.5, T - flow.truncate - 0.5, color="0.85", label="truncated: dL/dH_t = 0 exactly")
    ax2.set_xlim(-0.5, T - 0.5)
    ax2.set_xlabel("time step t")
    ax2.set_ylabel("||dL/dH_t|| (log scale)")
    ax2.set_title(f"Full vs truncated BPTT ({flow.cell}, trained)", fontsize=10)
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=7)
    return save_figure(fig, out_path)


FIGSIZE = (13, 4.6)  # inches at 100 dpi: 1300 x 460 pixels


def _positive(norms: list[float]) -> tuple[list[int], list[float]]:
    """Steps and norms where the norm is positive (a log axis cannot show zeros)."""
    pts = [(t, n) for t, n in enumerate(norms) if n > 0]
    return [p[0] for p in pts], [p[1] for p in pts]
