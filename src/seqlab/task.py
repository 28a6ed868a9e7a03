"""What a dataset asks a model to do: the one name that data, models and the trainer share.

A dataset says it in ``info["task"]``; the trainer picks its metrics by it; a checkpoint and
``summary.json`` store it as the plain string (``Task.SEQ2SEQ.value == "seq2seq"``), so they load
with ``weights_only=True`` and read the same as before this type existed.
"""

from __future__ import annotations

from enum import Enum


class Task(str, Enum):
    """A ``str`` enum: ``Task.LANGUAGE_MODEL == "language_model"``, so stored strings compare equal."""

    CLASSIFICATION = "classification"  # x -> one label: output (B, C), y (B,)
    SEQUENCE_LABELING = "sequence_labeling"  # a label per step: output (B, T, C), y (B, T)
    REGRESSION = "regression"  # real-valued targets (series, the adding problem)
    LANGUAGE_MODEL = "language_model"  # next token: output (B, T, V), y (B, T)
    SEQ2SEQ = "seq2seq"  # a target sequence from a source sequence

    def __str__(self) -> str:  # "seq2seq", not "Task.SEQ2SEQ", in messages and f-strings on every Python
        return self.value
