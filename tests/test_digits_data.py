import torch

from seqlab.data import DigitsConfig, digits, load_digits_arrays, stratified_split
from seqlab.data.digits import DIGITS_SHA256


def test_digits_arrays():
    images, labels = load_digits_arrays()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.min() == 0.0 and images.max() == 1.0
    assert sorted(set(labels.tolist())) == list(range(10))


def test_split_is_stratified_disjoint_and_seeded():
    a, b = digits(DigitsConfig(seed=3)), digits(DigitsConfig(seed=3))
    assert [len(s) for s in a[:3]] == [1259, 179, 359]
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    c = digits(DigitsConfig(seed=4))
    assert not torch.equal(a.train.x, c.train.x)
    counts = torch.bincount(a.test.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class (174-183 images per class)
    assert a.info == {
        "task": "classification",
        "metric": "accuracy",
        "input_size": 8,
        "seq_len": 8,
        "num_classes": 10,
        "input_shape": (8, 8),
        "target_shape": (),
        "files": {"embedded": {"path": "embedded:digits.csv.gz", "size": None, "sha256": DIGITS_SHA256}},
    }


def test_pixel_view():
    s = digits(DigitsConfig(view="pixels"))
    assert s.train.x.shape[1:] == (64, 1) and s.info["input_size"] == 1


def test_stratified_split_partitions_every_index():
    labels = torch.tensor([0] * 10 + [1] * 20)
    test, val, train = stratified_split(labels, (0.2, 0.1), seed=0)
    together = torch.cat([test, val, train]).sort().values
    assert torch.equal(together, torch.arange(30))  # disjoint and complete
    assert torch.bincount(labels[test]).tolist() == [2, 4]
    assert torch.bincount(labels[val]).tolist() == [1, 2]
