"""MNIST-format IDX files: tests write small ones (5 x 7 images) and read them back."""

import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab.config import from_dict
from seqlab.data import DATASETS, DataError, MnistConfig, build_mnist, idx, mnist, read_idx

H, W = 5, 7


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, H, W)), np.arange(n) % 10


def write_split(root, split, images, labels, gz=True):
    img_stem, lbl_stem = idx.FILES[split]
    for stem, data in ((img_stem, idx_bytes(images, 2051)), (lbl_stem, idx_bytes(labels, 2049))):
        if gz:
            (root / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (root / stem).write_bytes(data)


@pytest.fixture
def root(tmp_path):
    write_split(tmp_path, "train", *make_set(60, 0))
    write_split(tmp_path, "test", *make_set(20, 1), gz=False)  # raw files read the same way
    return tmp_path


def test_rows_view_scales_pixels_and_keeps_labels(root):
    images, labels = make_set(60, 0)
    ds = mnist(root, "train", view="rows")
    assert len(ds) == 60 and ds.x.shape == (60, H, W) and ds.x.dtype == torch.float32
    assert torch.allclose(ds.x, torch.from_numpy(images / 255.0).float())
    assert ds.y.dtype == torch.int64 and ds.y.tolist() == labels.tolist()
    x, y = ds[3]
    assert x.shape == (H, W) and int(y) == 3
    assert float(ds.x.min()) >= 0.0 and float(ds.x.max()) <= 1.0


def test_pixels_and_permuted_views(root):
    rows = mnist(root, "test", view="rows").x
    pixels = mnist(root, "test", view="pixels").x
    assert pixels.shape == (20, H * W, 1)
    assert torch.equal(pixels[:, :, 0], rows.reshape(20, H * W))  # raster order
    perm_a = mnist(root, "test", view="permuted", permutation_seed=3).x
    perm_b = mnist(root, "train", view="permuted", permutation_seed=3).x
    order = torch.randperm(H * W, generator=torch.Generator().manual_seed(3))
    assert torch.equal(perm_a, pixels[:, order])
    assert torch.equal(perm_b, mnist(root, "train", view="pixels").x[:, order])  # one order for every split
    assert not torch.equal(mnist(root, "test", view="permuted", permutation_seed=4).x, perm_a)


def test_registry_entry_builds_a_stratified_validation_split(root):
    cfg = from_dict(DATASETS["mnist"].config, {"root": str(root), "val_fraction": 0.2, "view": "pixels"}, "data")
    splits = DATASETS["mnist"].build(cfg)
    # 6 images per class, round(0.2 * 6) = 1 of each class goes to validation
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50, 10, 20)
    assert sorted(splits.val.y.tolist()) == list(range(10))
    # train and val together are the training file, each image once
    together = torch.cat([splits.train.x, splits.val.x]).reshape(60, -1)
    full = mnist(root, "train", view="pixels").x.reshape(60, -1)
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, full.tolist()))
    info = splits.info
    assert info["input_shape"] == (H * W, 1) and info["num_classes"] == 10 and info["image_shape"] == (H, W)
    again = build_mnist(cfg)
    assert torch.equal(again.val.x, splits.val.x)
    other = build_mnist(MnistConfig(root=str(root), val_fraction=0.2, view="pixels", seed=1))
    assert not torch.equal(other.val.x, splits.val.x)


def test_wrong_magic_is_an_error_naming_file_expected_and_found(root):
    img_stem, lbl_stem = idx.FILES["test"]
    # labels where images are expected
    (root / img_stem).write_bytes(idx_bytes(np.zeros(20), 2049))
    with pytest.raises(
        DataError, match=re.escape(f"{root / img_stem}: wrong magic number: expected 2051 (0x00000803), found 2049")
    ):
        mnist(root, "test")


def test_truncated_file_is_an_error_with_expected_and_found_lengths(root):
    img_stem = idx.FILES["test"][0]
    data = idx_bytes(make_set(20, 1)[0], 2051)
    (root / img_stem).write_bytes(data[:-5])
    expected = 16 + 20 * H * W
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{root / img_stem}: truncated: the header says 20 x {H} x {W}, "
            f"so expected {expected:,} bytes, found {expected - 5:,}"
        ),
    ):
        mnist(root, "test")


def test_corrupt_gzip_is_an_error_naming_the_file(root):
    path = root / (idx.FILES["train"][1] + ".gz")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match=re.escape(f"{path}: not a complete gzip file")):
        mnist(root, "train")


def test_image_and_label_count_mismatch(root):
    img_stem, lbl_stem = idx.FILES["test"]
    (root / lbl_stem).write_bytes(idx_bytes(np.zeros(19), 2049))
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{root / img_stem} holds 20 images but {root / lbl_stem} holds 19 labels: expected the same count"
        ),
    ):
        mnist(root, "test")


def test_missing_files_say_what_to_put_where(tmp_path):
    with pytest.raises(DataError) as err:
        mnist(tmp_path, "train")
    msg = str(err.value)
    assert f"IDX files not found in {tmp_path}: missing train-images-idx3-ubyte, train-labels-idx1-ubyte(.gz)" in msg
    assert f"put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz (gzipped or not) into {tmp_path}/" in msg
    assert "ossci-datasets.s3.amazonaws.com/mnist" in msg and "download=True" in msg


def test_read_idx_returns_the_stored_array(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    (tmp_path / "l").write_bytes(idx_bytes(labels, 2049))
    assert read_idx(tmp_path / "l", 2049).tolist() == [3, 1, 4, 1, 5]
    (tmp_path / "long").write_bytes(idx_bytes(labels, 2049) + b"\0")
    with pytest.raises(DataError, match="too long: the header says 5, so expected 13 bytes, found 14"):
        read_idx(tmp_path / "long", 2049)


# --- download, served from file:// mirrors the test writes ------------------------------------------


def make_mirror(path, split, gz_level=9):
    """A mirror folder with the split's two .gz files, and the content checksums of what it serves."""
    path.mkdir()
    images, labels = make_set(30, 5)
    sums = {}
    for stem, data in zip(idx.FILES[split], (idx_bytes(images, 2051), idx_bytes(labels, 2049))):
        (path / f"{stem}.gz").write_bytes(gzip.compress(data, compresslevel=gz_level))
        sums[stem] = hashlib.sha256(data).hexdigest()
    return path.as_uri() + "/", sums


def test_download_fetches_verifies_content_and_loads(tmp_path, monkeypatch):
    mirror, sums = make_mirror(tmp_path / "mirror", "test")
    monkeypatch.setattr(idx, "MNIST_SHA256", sums)
    root = tmp_path / "root"
    ds = mnist_download(root, mirror)
    assert len(ds) == 30 and ds.x.shape == (30, H, W)
    assert sorted(p.name for p in root.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def mnist_download(root, *mirrors):
    idx.load_arrays(root, "test", download_missing=True, mirrors=mirrors)
    return mnist(root, "test")


def test_download_checks_the_decompressed_content_not_the_gz_bytes(tmp_path, monkeypatch):
    # A mirror serving the same content compressed differently is accepted.
    mirror, sums = make_mirror(tmp_path / "mirror", "test", gz_level=1)
    monkeypatch.setattr(idx, "MNIST_SHA256", sums)
    assert len(mnist_download(tmp_path / "root", mirror)) == 30


def test_download_skips_a_mirror_with_a_bad_checksum_and_an_unreachable_one(tmp_path, monkeypatch):
    good, sums = make_mirror(tmp_path / "good", "test")
    bad, _ = make_mirror(tmp_path / "bad", "test")
    (tmp_path / "bad" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"tampered"))
    monkeypatch.setattr(idx, "MNIST_SHA256", sums)
    missing = (tmp_path / "nowhere").as_uri() + "/"
    assert len(mnist_download(tmp_path / "root", missing, bad, good)) == 30


def test_a_mirror_that_drops_the_connection_mid_file_is_skipped(tmp_path, monkeypatch):
    """http.client.IncompleteRead is no OSError: it escaped as a traceback, and the next mirror went untried."""
    import http.client
    import urllib.request

    good, sums = make_mirror(tmp_path / "good", "test")
    monkeypatch.setattr(idx, "MNIST_SHA256", sums)
    open_url = urllib.request.urlopen

    class Dropped:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            raise http.client.IncompleteRead(b"\x1f\x8b", 1000)

    def urlopen(url, timeout=None):
        return Dropped() if url.startswith("https://dropped.example/") else open_url(url, timeout=timeout)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    assert len(mnist_download(tmp_path / "root", "https://dropped.example/", good)) == 30
    with pytest.raises(DataError, match=r"https://dropped.example/t10k-images-idx3-ubyte.gz: IncompleteRead"):
        idx.download(tmp_path / "other", ["t10k-images-idx3-ubyte"], mirrors=("https://dropped.example/",))


def test_offline_download_error_lists_each_mirror_and_what_to_put_where(tmp_path):
    root = tmp_path / "root"
    m1, m2 = (tmp_path / "a").as_uri() + "/", (tmp_path / "b").as_uri() + "/"
    with pytest.raises(DataError) as err:
        idx.download(root, ["t10k-images-idx3-ubyte"], mirrors=(m1, m2))
    msg = str(err.value)
    assert msg.startswith("could not download t10k-images-idx3-ubyte.gz:")
    assert f"{m1}t10k-images-idx3-ubyte.gz: " in msg and f"{m2}t10k-images-idx3-ubyte.gz: " in msg
    assert f"Offline? put t10k-images-idx3-ubyte.gz (gzipped or not) into {root}/" in msg
    assert not root.exists() or not any(root.iterdir())  # nothing half-written


SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="integration check: needs ../shared/data/mnist (present in CI)")
def test_checksums_match_the_real_files():
    for name, digest in idx.MNIST_SHA256.items():
        content = gzip.decompress((SHARED_MNIST / f"{name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == digest, name
