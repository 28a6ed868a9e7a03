"""One direction of one layer over time, eagerly: the loop of the "reference" route.

Input comes as packed time-major rows (a padded batch is the case where every step has all B
rows): the rows of step t are a block of sizes[t] rows, sequences sorted longest first. The
loop hands each step its x_t, the live rows of the state and of the dropout mask, and puts
the state of the sequences that are not running back around the step's result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .equations import Gates

State = tuple[Tensor, ...]  # (h,) or (h, c), each (B, H_out) / (B, H)
Weights = dict[str, "Tensor | None"]  # one (layer, direction)'s parameters by short name: w_ih, w_hh, b_ih, ...
RecordedGates = dict[str, Gates]  # forward(..., return_gates=True)'s third output: {"l0": {...}, "l0_reverse": ...}


class StepResult(Protocol):
    """What an LSTM or GRU step computed (equations.LSTMStep, GRUStep): its gates by name."""

    def gates(self) -> Gates: ...


# A step: (x_t, state, recurrent_mask) -> (h_t, new state, the step's result or None). h_t is the
# step's output (B, H_out); for the built-in cells it is the new state's first tensor. The result
# is the equations' named result (LSTMStep, GRUStep), whose gates the loop records when asked;
# None for a plain RNN or a custom cell.
Step = Callable[[Tensor, State, "Tensor | None"], "tuple[Tensor, State, StepResult | None]"]


def rows(xs: Tensor | list[Tensor]) -> Tensor:
    """Per-step rows as one (N, H) block (a list from run_direction is concatenated; a block as is)."""
    return xs if isinstance(xs, Tensor) else torch.cat(xs, dim=0)


def run_direction(
    step: Step,
    xs: Tensor | list[Tensor],
    sizes: list[int],
    state: State,
    *,
    reverse: bool,
    mask: Tensor | None,
    record: bool,
):
    """Run one direction of one layer: h_t = step(x_t, h_{t-1}) for t = 1..T (or T..1).

    Sequences are sorted longest first, so at step t the first sizes[t] rows are the live
    ones; the others keep their state (finished sequences going forward, not yet started
    ones going backward, which is why the reverse pass needs no per-sequence flipping).
    xs: the rows (N, *) or the list of each step's rows. Returns the outputs as the list of
    each step's rows (sizes[t], H_out) (``rows`` makes them one (N, H_out) block in the input's
    packed row order), the final state and the gates {name: (B, T, H)} (empty unless ``record``).
    """
    B, T = sizes[0], len(sizes)
    outs: list[Tensor | None] = [None] * T
    recorded: list[Gates | None] = [None] * T
    # One split rather than T slices: the backward of a slice is a zero tensor the size of the
    # whole input per step (quadratic in T); that of a split is a single concatenation.
    x_steps = xs.split(sizes) if isinstance(xs, Tensor) else xs  # T x (sizes[t], *)
    for t in range(T - 1, -1, -1) if reverse else range(T):
        bs = sizes[t]
        x_t = x_steps[t]  # (bs, *)
        if bs == B:
            h_t, state, result = step(x_t, state, mask)
            gates_t = result.gates() if record else None
        else:
            h_t, live, result = step(x_t, tuple(s[:bs] for s in state), None if mask is None else mask[:bs])
            state = tuple(torch.cat([n, s[bs:]]) for n, s in zip(live, state))
            gates_t = {k: F.pad(g, (0, 0, 0, B - bs)) for k, g in result.gates().items()} if record else None
        outs[t] = h_t  # (bs, H_out)
        if record:  # otherwise let them go now: T steps of gates held to the end cost memory and page faults
            recorded[t] = gates_t
    gates = {}
    if record:
        gates = {k: torch.stack([r[k] for r in recorded], dim=1) for k in recorded[0]}  # (B, T, H)
    return outs, state, gates
