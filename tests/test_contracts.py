"""The Protocols the engine checks with isinstance (train/contracts.py) match the real datasets and configs.

A dataset or config that renamed ``streams``, ``lengths``, ``ids``, ``check_data`` ... would silently
lose a feature (TBPTT, bucketing, the chain-rule likelihood, its own data checks): these say which
of them must keep which.
"""

import pytest
import torch
from torch.utils.data import Dataset

from seqlab.data import DATASETS, TensorSequenceDataset, build_splits
from seqlab.models import (
    ClassifierConfig,
    GPTConfig,
    LanguageModelConfig,
    Seq2SeqRNNConfig,
    Seq2SeqTransformerConfig,
    ViTConfig,
)
from seqlab.train.checks import check_trainable
from seqlab.train.config import TrainConfig
from seqlab.train.contracts import (
    ChecksData,
    ContextWindow,
    FixedInputShape,
    HasLengths,
    InMemory,
    Streams,
    TokenIds,
    batches,
)
from seqlab.train.distributed import DistributedBatchSampler

PROTOCOLS = (InMemory, Streams, HasLengths, TokenIds)


@pytest.mark.parametrize(
    "name, has",
    [
        ("digits", {InMemory}),
        ("copy_memory", {InMemory}),
        ("copy", {InMemory, HasLengths}),
        ("char_lm", {InMemory, Streams, TokenIds}),
        ("sine", {InMemory}),
    ],
)
def test_datasets_offer_what_the_engine_uses(name, has):
    train = build_splits(DATASETS[name].config()).train
    assert {p for p in PROTOCOLS if isinstance(train, p)} == has


@pytest.mark.parametrize(
    "config, has",
    [
        (ClassifierConfig(input_size=3, num_classes=2), set()),
        (LanguageModelConfig(vocab_size=5), set()),
        (GPTConfig(vocab_size=5), {ContextWindow}),
        (
            ViTConfig(image_size=8, patch_size=4, num_classes=2, d_model=8, depth=1, num_heads=2, d_ff=8),
            {FixedInputShape},
        ),
        (Seq2SeqRNNConfig(), {ChecksData}),
        (Seq2SeqTransformerConfig(), {ChecksData}),
    ],
)
def test_model_configs_offer_their_checks(config, has):
    assert {p for p in (ChecksData, ContextWindow, FixedInputShape) if isinstance(config, p)} == has


class _Plain(Dataset):
    """The same examples without ``tensors``: batched one example at a time."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_batches_slice_in_memory_data_and_collate_the_rest_alike():
    x, y = torch.randn(10, 4, 3), torch.arange(10)
    sampler = lambda: DistributedBatchSampler(10, 4, seed=3, epoch=1)  # noqa: E731
    sliced = list(batches(TensorSequenceDataset(x, y), sampler()))
    collated = list(batches(_Plain(x, y), sampler()))
    assert [len(b[0]) for b in sliced] == [4, 4, 2]
    for (xa, ya), (xb, yb) in zip(sliced, collated):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sorted(torch.cat([b[1] for b in sliced]).tolist()) == list(range(10))


def test_settings_a_dataset_cannot_serve_are_refused_before_training():
    data = TensorSequenceDataset(torch.zeros(8, 3, 2), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"train.tbptt_steps=4 needs a stream dataset .* no .streams\(\)"):
        check_trainable(TrainConfig(tbptt_steps=4), data, None, "classification")
    with pytest.raises(ValueError, match="train.bucket=2 batches examples of similar length, but this dataset has no"):
        check_trainable(TrainConfig(bucket=2), data, None, "classification")
