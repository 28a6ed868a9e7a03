"""Your own recurrent cell in ten lines: a peephole LSTM, trained on the digits preset.

A peephole LSTM (Gers & Schmidhuber 2000, "Recurrent nets that time and count") lets the gates
look at the cell state: the input and forget gates see C_{t-1}, the output gate sees C_t,

    I_t = sigmoid(X_t W_xi + H_{t-1} W_hi + p_i * C_{t-1} + b_i)
    F_t = sigmoid(X_t W_xf + H_{t-1} W_hf + p_f * C_{t-1} + b_f)
    C_t = F_t * C_{t-1} + I_t * tanh(X_t W_xc + H_{t-1} W_hc + b_c)
    O_t = sigmoid(X_t W_xo + H_{t-1} W_ho + p_o * C_t + b_o)
    H_t = O_t * tanh(C_t)

The cell is one time step in plain PyTorch; ``seqlab.nn.Recurrent`` makes it a full layer
(batch_first, layers, bidirectional, dropout, state in and out, lengths) that runs compiled
with torch.compile (or eagerly where compilation is unavailable).

    python examples/custom_cell.py [--steps 300] [--impl auto|reference]
"""

import argparse
import dataclasses
from pathlib import Path

import torch
from torch import nn

import seqlab.nn as snn


class PeepholeLSTMCell(nn.Module):
    num_states = 2  # the state is (h, c)

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.gates = nn.Linear(input_size + hidden_size, 4 * hidden_size)  # [X_t, H_{t-1}] W + b
        self.peep = nn.Parameter(torch.zeros(3, hidden_size))  # p_i, p_f, p_o

    def forward(self, x_t, state):
        h, c = state
        a_i, a_f, a_g, a_o = self.gates(torch.cat([x_t, h], dim=1)).chunk(4, dim=1)  # 4 x (B, H)
        c = torch.sigmoid(a_f + self.peep[1] * c) * c + torch.sigmoid(a_i + self.peep[0] * c) * torch.tanh(a_g)
        h = torch.sigmoid(a_o + self.peep[2] * c) * torch.tanh(c)
        return h, (h, c)


def train(steps: int, impl: str, seed: int = 0) -> dict:
    """The digits preset (8 rows of 8 pixels, configs/digits_lstm.toml) with its LSTM swapped for a
    peephole LSTM of the same width; ``steps`` optimiser steps. Returns the trainer's summary."""
    from seqlab.data import build_splits
    from seqlab.models import build_model
    from seqlab.train.config import load_experiment
    from seqlab.train.trainer import Trainer
    from seqlab.utils import set_seed

    exp = load_experiment(Path(__file__).resolve().parents[1] / "configs" / "digits_lstm.toml")
    train_cfg = dataclasses.replace(exp.train, max_steps=steps, eval_every=steps, tensorboard=False, seed=seed)
    set_seed(seed)
    splits = build_splits(exp.data)
    model = build_model(exp.model)
    model.rnn = snn.Recurrent(PeepholeLSTMCell, 8, exp.model.hidden_size, batch_first=True, impl=impl)
    trainer = Trainer(model, train_cfg, splits.train, splits.val, task="classification", progress=False)
    return trainer.fit()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--impl", default="auto", choices=["auto", "compiled", "reference"])
    args = parser.parse_args()
    summary = train(args.steps, args.impl)
    print(f"peephole LSTM on digits, {args.steps} steps: val accuracy {summary['best_val/accuracy']:.3f}")
