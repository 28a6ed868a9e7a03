"""impl="compiled": a layer's step functions unrolled over time, compiled with ``torch.compile``.

The code compiled is :func:`unrolled_stack`: plain PyTorch calling the layer's own step (the
equations of ``equations.py``, or a custom cell) at every time step, layer after layer. The
input's term X_t W_x + b_x, which does not depend on the state, is computed for every step at
once before the loop (``layer.input_function``: one large matrix product instead of T small
ones, as torch's kernel does); each step then multiplies only H_{t-1}. Unrolled, the whole
forward is one graph, so inductor fuses each step's pointwise work (gates, cell update) into one
kernel around the recurrent matrix product and writes the backward the same way. What a
learner reads is what runs.

Compiled once per shape family, every shape static: the sequence length (the loop is unrolled)
and the batch size. A batch smaller than one the family has compiled (up to :data:`PAD_LIMIT`
times its size) is padded with rows of zeros up to it: an epoch's short last batch reuses the
training compile, and the padded rows' outputs are dropped, so they add nothing to any gradient.
Any other batch size, and a new dtype, device, layer configuration or grad mode, compiles anew.
(torch.compile's automatic dynamic shapes, the previous choice, recompiled at the first short
batch with the batch symbolic: 79 s at the lab's shapes, more than an epoch's training.)
Variable-length input (a PackedSequence or ``lengths=``) runs padded, with a (T, B) mask that
keeps a sequence's state past its end, and its length rounded up to a multiple of
:data:`LENGTH_BUCKET` so that batches of different lengths share a compile.

Random masks (dropout between layers, variational dropout) are drawn eagerly, before the
compiled code runs, in the order and with the ops of the eager loop: the same seed gives the
same masks on either route.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ...torch_internals import recompile_limit
from .loop import State
from .routes import mark_compile_failed

LENGTH_BUCKET = 8  # variable-length input: T padded up to a multiple of this (fewer recompiles)
RECOMPILE_LIMIT = 64  # shape families one process may compile (dynamo's default is 8 per function)

BACKEND = "inductor"  # torch.compile's backend (the tests also run "aot_eager": the same graph, uncompiled kernels)
_COMPILED: dict = {}  # backend -> torch.compile(unrolled_stack, backend=...), made on first use
compile_seconds: dict[str, float] = {}  # shape family -> seconds its first call took (the compile)
PAD_LIMIT = 8  # a batch runs padded onto a compile of at most this many times its rows, else compiles its own
_BATCHES: dict[tuple, set[int]] = {}  # shape family (but the batch) -> the batch sizes compiled for it


def unrolled_stack(layer, x: Tensor, valid: Tensor | None, states: State, rmasks: list, dmasks: list):
    """Layers x directions over time, every step unrolled: the function that gets compiled.

    x (T, B, H_in) time-major; valid (T, B, 1) bool, False past a sequence's end, or None;
    states: each (num_layers * D, B, *); rmasks[layer * D + direction]: (B, H_out) or None;
    dmasks[layer]: (T, B, D * H_out) dropout after that layer, or None.
    Returns the top layer's outputs (T, B, D * H_out), zero past each sequence's end, and the
    final states, each (num_layers * D, B, *).
    """
    D = 2 if layer.bidirectional else 1
    T = x.size(0)
    valid_t = valid.unbind(0) if valid is not None else None  # T x (B, 1)
    finals: list[list[Tensor]] = [[] for _ in states]
    layer_in = x
    for k in range(layer.num_layers):
        outs = []
        for d in range(D):
            project = layer.input_function(k, d)  # X W_x + b_x for all T steps: one matrix product
            if project is None:  # a custom cell reads x_t itself
                step, x_t = layer.step_function(k, d), layer_in.unbind(0)  # T x (B, H_in)
            else:
                step, x_t = layer.step_function(k, d, projected=True), project(layer_in).unbind(0)  # T x (B, G)
            state = tuple(s[k * D + d] for s in states)
            hs: list[Tensor | None] = [None] * T
            for t in range(T - 1, -1, -1) if d else range(T):
                h_t, new, _ = step(x_t[t], state, rmasks[k * D + d])
                if valid_t is not None:  # a finished (backward: not yet started) sequence keeps its state
                    new = tuple(torch.where(valid_t[t], n, s) for n, s in zip(new, state))
                    h_t = h_t * valid_t[t]
                state = new
                hs[t] = h_t
            outs.append(torch.stack(hs))  # (T, B, H_out)
            for acc, s in zip(finals, state):
                acc.append(s)
        layer_in = outs[0] if D == 1 else torch.cat(outs, dim=-1)  # (T, B, D * H_out)
        if dmasks[k] is not None:
            layer_in = layer_in * dmasks[k]
    return layer_in, tuple(torch.stack(f) for f in finals)


def run_compiled(layer, steps: Tensor, sizes: list[int], states: State) -> tuple[Tensor, State]:
    """The "compiled" route on packed time-major rows (as ``_RecurrentBase._run_stack`` takes them).

    steps (N, H_in), the rows of step t a block of sizes[t] rows, longest sequence first;
    states each (num_layers * D, B, *). Returns the top layer's rows (N, D * H_out) in the same
    order and the final states. Falls back to the eager loop, with one warning, if the compile
    fails while the eager loop runs.
    """
    T, B = len(sizes), sizes[0]
    if B == 0:
        return layer._run_stack(steps, sizes, states, False)[:2]
    D = 2 if layer.bidirectional else 1
    H_out = layer.proj_size or layer.hidden_size
    padded = all(b == B for b in sizes)
    T_run = T if padded else -(-T // LENGTH_BUCKET) * LENGTH_BUCKET
    family = (BACKEND, type(layer), T_run, steps.size(-1), layer.hidden_size, H_out, layer.num_layers, D)
    family += (steps.dtype, steps.device.type, torch.is_grad_enabled())
    B_run = _batch_to_run(family, B)  # B, or B and rows of zeros up to a batch size already compiled
    if padded:
        x, valid = steps.view(T, B, steps.size(-1)), None  # (T, B, H_in)
    else:
        x, _ = pad_packed_sequence(PackedSequence(steps, torch.tensor(sizes)))  # (T, B, H_in), sorted batch
        live = torch.tensor(sizes + [0] * (T_run - T))  # sequences still running at each step
        running = torch.arange(B_run)[None, :] < live[:, None]  # (T_run, B_run), on the CPU
        # Row t * B_run + b of the padded (T_run * B_run) rows for each packed row, in packed order; found
        # on the CPU, so that moving rows between the layouts never waits for the GPU (boolean indexing does).
        packed_rows = running.flatten().nonzero().squeeze(1).to(steps.device)  # (N,)
        valid = running.to(steps.device).unsqueeze(-1)  # (T_run, B_run, 1)
    x = _pad(x, 1, B_run, T_run)  # (T_run, B_run, H_in)
    states = tuple(_pad(s, 1, B_run) for s in states)  # each (num_layers * D, B_run, *)
    rmasks, dmasks = [], []
    for k in range(layer.num_layers):  # the eager loop's draws, in its order
        rmasks += [_pad(layer._recurrent_mask(B, steps), 0, B_run) for _ in range(D)]
        mask = layer._dropout_mask(k, (steps.size(0), D * H_out), steps)  # (N, D * H_out), as eager
        if mask is not None:
            if padded:
                mask = _pad(mask.view(T, B, D * H_out), 1, B_run)
            else:
                mask = mask.new_zeros(T_run * B_run, D * H_out).index_copy_(0, packed_rows, mask)
        dmasks.append(None if mask is None else mask.view(T_run, B_run, D * H_out))
    out, finals = _call(layer, x, valid, states, rmasks, dmasks)  # (T_run, B_run, D * H_out), each (L * D, B_run, *)
    finals = tuple(f[:, :B] for f in finals)
    if not padded:
        return out.reshape(T_run * B_run, D * H_out).index_select(0, packed_rows), finals  # (N, D * H_out)
    return out[:, :B].reshape(T * B, D * H_out), finals


def _batch_to_run(family: tuple, B: int) -> int:
    """The smallest batch size compiled for ``family`` that holds B rows and at most PAD_LIMIT times B; else
    B, which is then compiled (an epoch's short last batch reuses the compile of the full one, one
    example after a large evaluation batch does not run padded to it)."""
    compiled = _BATCHES.setdefault(family, set())
    fits = [size for size in compiled if B <= size <= PAD_LIMIT * B]
    if fits:
        return min(fits)
    compiled.add(B)
    return B


def _pad(t: Tensor | None, dim: int, size: int, length: int | None = None) -> Tensor | None:
    """``t`` with rows of zeros after its own along ``dim``, up to ``size`` (and along dim 0 up to ``length``)."""
    if t is None or (t.size(dim) == size and (length is None or t.size(0) == length)):
        return t
    widths = [0, 0] * (t.dim() - 1 - dim) + [0, size - t.size(dim)]  # F.pad counts from the last dim
    if length is not None:
        widths += [0, 0] * (dim - 1) + [0, length - t.size(0)]
    return torch.nn.functional.pad(t, widths)


def _call(layer, x, valid, states, rmasks, dmasks):
    if torch.compiler.is_compiling():  # inside a compiled model: the outer compile traces the loop
        return unrolled_stack(layer, x, valid, states, rmasks, dmasks)
    compiled = _COMPILED.get(BACKEND)
    if compiled is None:
        compiled = _COMPILED[BACKEND] = torch.compile(unrolled_stack, backend=BACKEND, dynamic=False)
    family = (
        f"{type(layer).__name__} T={x.size(0)} {x.dtype} {x.device.type} "
        f"{'grad' if torch.is_grad_enabled() else 'no_grad'} L={layer.num_layers} D={1 + layer.bidirectional}"
    )
    start = time.perf_counter()
    try:
        with recompile_limit(RECOMPILE_LIMIT):
            result = compiled(layer, x, valid, states, rmasks, dmasks)
    except Exception as error:  # noqa: BLE001 - a compile that fails where the eager loop runs
        result = unrolled_stack(layer, x, valid, states, rmasks, dmasks)  # raises if the step itself is wrong
        mark_compile_failed(layer, x.device, error)
        return result
    compile_seconds.setdefault(family, time.perf_counter() - start)
    return result
