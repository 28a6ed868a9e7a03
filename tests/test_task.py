"""seqlab.task.Task: the one name for a task across data, models and train, stored as a plain string."""

import json

import pytest
import torch

from seqlab.cli import main
from seqlab.data import DATASETS, build_splits
from seqlab.task import Task
from seqlab.train.metrics import default_metric, task_metric_names


@pytest.mark.parametrize(
    "name, task",
    [
        ("digits", Task.CLASSIFICATION),
        ("adding", Task.REGRESSION),
        ("copy_memory", Task.SEQUENCE_LABELING),
        ("copy", Task.SEQ2SEQ),
        ("char_lm", Task.LANGUAGE_MODEL),
        ("sine", Task.REGRESSION),
    ],
)
def test_every_dataset_names_its_task_with_the_shared_type(name, task):
    info = build_splits(DATASETS[name].config()).info
    assert type(info["task"]) is Task and info["task"] is task


def test_a_task_is_its_string():
    assert Task("seq2seq") is Task.SEQ2SEQ and Task.SEQ2SEQ == "seq2seq"
    assert f"{Task.LANGUAGE_MODEL}" == str(Task.LANGUAGE_MODEL) == "language_model"
    assert json.dumps({"task": Task.REGRESSION}) == '{"task": "regression"}'
    assert type(Task.CLASSIFICATION.value) is str
    with pytest.raises(ValueError):
        Task("translation")


@pytest.mark.parametrize(
    "task, names, best",
    [
        (Task.CLASSIFICATION, ("loss", "accuracy"), "accuracy"),
        (Task.SEQUENCE_LABELING, ("loss", "accuracy"), "accuracy"),
        (Task.REGRESSION, ("loss",), "loss"),
        (Task.LANGUAGE_MODEL, ("loss",), "loss"),
        (Task.SEQ2SEQ, ("loss",), "loss"),
        ("classification", ("loss", "accuracy"), "accuracy"),  # a checkpoint's stored string reads the same
    ],
)
def test_metrics_follow_the_task(task, names, best):
    assert task_metric_names(task) == names and default_metric(task) == best


def test_checkpoint_and_summary_store_the_plain_string(tmp_path, configs_dir):
    # torch.load(weights_only=True) refuses pickled classes: an enum in the checkpoint would make it unloadable.
    assert (
        main(
            [
                "train",
                str(configs_dir / "digits_lstm.toml"),
                "--train.max_steps=2",
                "--train.batch_size=64",
                "--model.hidden_size=8",
                "--train.tensorboard=false",
                "--out",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    (run,) = tmp_path.iterdir()
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert type(ckpt["task"]) is str and ckpt["task"] == "classification"
    assert json.loads((run / "summary.json").read_text())["task"] == "classification"
