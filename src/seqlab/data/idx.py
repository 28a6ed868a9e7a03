"""MNIST-format image sets (MNIST, Fashion-MNIST, KMNIST) read from the original IDX files.

An IDX file is a big-endian header, ``magic`` then one int32 per dimension, followed by the raw
values. Images: magic 2051 (0x00000803: unsigned bytes, 3 dimensions), N x rows x cols; labels:
magic 2049 (0x00000801: unsigned bytes, 1 dimension), N. Files may be gzipped (``.gz``) or raw.

Views of an image as a sequence (the lecture's lab reads rows):

- ``rows``: T = rows (28) steps of C = cols (28) features, x of shape (N, 28, 28);
- ``pixels``: T = 784 steps of 1 feature, x of shape (N, 784, 1), in raster order;
- ``permuted``: as ``pixels``, in one fixed order drawn from ``permutation_seed`` (the same for
  every image and every split).

Pixels are scaled to [0, 1]; labels are int64.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..task import Task
from ..utils import atomic_write
from .base import DataError, Splits, TensorSequenceDataset, fingerprint, stratified_split

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# sha256 of the *decompressed* files: a mirror may serve a differently compressed .gz.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

VIEWS = ("rows", "pixels", "permuted")


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seqlab" / "mnist"


def default_roots() -> list[Path]:
    """Where ``root=""`` looks, in order: ``data/mnist``, ``../shared/data/mnist``, the user cache."""
    return [Path("data/mnist"), Path("../shared/data/mnist"), _cache_root()]


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: not a complete gzip file ({err}); found {len(raw):,} bytes. "
            f"Delete it and download it again, or put the uncompressed file beside it"
        ) from None


def parse_idx(data: bytes, expected_magic: int, where: str) -> np.ndarray:
    """The array stored in IDX bytes ``data``, after checking magic, header and length."""
    if len(data) < 4:
        raise DataError(f"{where}: truncated: expected an IDX header of at least 4 bytes, found {len(data)}")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{where}: wrong magic number: expected {expected_magic} (0x{expected_magic:08x}), found {magic} "
            f"(0x{magic:08x}); is this an IDX {'image' if expected_magic == IMAGES_MAGIC else 'label'} file?"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where}: truncated header: expected {header} bytes for {ndim} dimensions, found {len(data)}")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        shape = " x ".join(map(str, dims))
        kind = "truncated" if len(data) < expected else "too long"
        raise DataError(
            f"{where}: {kind}: the header says {shape}, so expected {expected:,} bytes, found {len(data):,}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """The uint8 array in IDX file ``path`` (raw or ``.gz``)."""
    path = Path(path)
    return parse_idx(_read_bytes(path), expected_magic, str(path))


def _missing_message(root: Path, stems: list[str], mirrors) -> str:
    names = ", ".join(f"{s}.gz" for s in stems)
    return (
        f"put {names} (gzipped or not) into {root}/ "
        f"(from {' or '.join(mirrors)}), or pass download=True (--data.download=true)"
    )


def download(root: str | Path, stems: list[str], mirrors=MNIST_MIRRORS, checksums: dict | None = None) -> list[Path]:
    """Fetch ``<stem>.gz`` from the first mirror that serves it with the right content checksum.

    Each file is verified by the sha256 of its decompressed content (``checksums``, MNIST's by
    default), written atomically to ``root`` and returned. When no mirror serves a file, the
    error lists what each mirror answered and which files to put where.
    """
    checksums = MNIST_SHA256 if checksums is None else checksums
    root = Path(root).expanduser()
    out = []
    for stem in stems:
        if stem not in checksums:
            raise DataError(
                f"no checksum known for {stem}: cannot verify a download; put the file into {root}/ yourself"
            )
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + stem + ".gz"
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    packed = resp.read()
                content = gzip.decompress(packed)
            # URLError is an OSError; a connection dropped mid-body (IncompleteRead) an HTTPException
            except (OSError, EOFError, zlib.error, ValueError, http.client.HTTPException) as err:
                failures.append(f"{url}: {err}")
                continue
            digest = hashlib.sha256(content).hexdigest()
            if digest != checksums[stem]:
                failures.append(f"{url}: checksum mismatch: expected sha256 {checksums[stem]}, found {digest}")
                continue
            out.append(atomic_write(root / (stem + ".gz"), lambda fh: fh.write(packed)))
            break
        else:
            raise DataError(
                f"could not download {stem}.gz:\n  "
                + "\n  ".join(failures)
                + f"\nOffline? {_missing_message(root, stems, mirrors)}"
            )
    return out


def load_arrays(
    root: str | Path, split: str = "train", download_missing: bool = False, mirrors=MNIST_MIRRORS
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, rows, cols) uint8 and labels (N,) uint8 of ``split`` from the IDX files in ``root``."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser()
    stems = list(FILES[split])
    missing = [s for s in stems if _find(root, s) is None]
    if missing:
        if not download_missing:
            raise DataError(
                f"IDX files not found in {root}: missing {', '.join(missing)}(.gz); "
                + _missing_message(root, missing, mirrors)
            )
        download(root, missing, mirrors)
    img_path, lbl_path = _find(root, stems[0]), _find(root, stems[1])
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lbl_path, LABELS_MAGIC)
    if images.ndim != 3:
        raise DataError(f"{img_path}: expected 3 dimensions (N x rows x cols), found {images.ndim}")
    if labels.ndim != 1:
        raise DataError(f"{lbl_path}: expected 1 dimension (N), found {labels.ndim}")
    if len(images) != len(labels):
        raise DataError(
            f"{img_path} holds {len(images):,} images but {lbl_path} holds {len(labels):,} labels: "
            f"expected the same count; are they from the same split and dataset?"
        )
    return images, labels


def permutation(num_pixels: int, seed: int) -> torch.Tensor:
    """The fixed pixel order of the ``permuted`` view."""
    return torch.randperm(num_pixels, generator=torch.Generator().manual_seed(seed))


def to_sequences(images: np.ndarray, view: str = "rows", permutation_seed: int = 0) -> torch.Tensor:
    """uint8 images (N, H, W) -> float32 sequences in [0, 1]: (N, H, W) rows or (N, H*W, 1) pixels."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0)  # (N, H, W)
    N, H, W = x.shape
    if view == "rows":
        return x  # (N, T=H, C=W)
    x = x.reshape(N, H * W, 1)  # (N, T=H*W, C=1), raster order
    if view == "permuted":
        x = x[:, permutation(H * W, permutation_seed)]  # (N, H*W, 1), one fixed order
    return x


def mnist(
    root: str | Path = "", split: str = "train", view: str = "rows", download: bool = False, permutation_seed: int = 0
) -> TensorSequenceDataset:
    """MNIST-format ``split`` ("train" or "test") from the IDX files in ``root``, as a Dataset.

    ``ds[i] -> (x, y)``: x (28, 28) for rows or (784, 1) for pixels/permuted, float in [0, 1];
    y an int64 class. ``root=""`` searches :func:`default_roots` (and downloads into the user
    cache when ``download`` is set and nothing is found). Fashion-MNIST and KMNIST load the same
    way from their own folder (``download`` knows MNIST's mirrors and checksums only).
    """
    images, labels = load_arrays(resolve_root(root, split, download), split, download)
    x = to_sequences(images, view, permutation_seed)
    return TensorSequenceDataset(x, torch.from_numpy(labels.astype(np.int64)))


def resolve_root(root: str | Path, split: str = "train", download: bool = False) -> Path:
    if str(root):
        root = Path(root).expanduser()
        if root.is_file():
            raise DataError(f"data.root {root} is a file, expected the folder that holds the IDX files")
        return root
    for candidate in default_roots():
        if all(_find(candidate, s) is not None for s in FILES.get(split, FILES["train"])):
            return candidate
    if download:
        return _cache_root()
    tried = ", ".join(str(p) for p in default_roots())
    raise DataError(
        f"MNIST files not found (looked in {tried}); "
        f"put {', '.join(f'{s}.gz' for s in FILES['train'] + FILES['test'])} "
        f"into one of them, set --data.root=DIR, or pass --data.download=true"
    )


@dataclass(frozen=True)
class MnistConfig:
    """MNIST-format images as sequences; validation taken (stratified) from the training file."""

    name: str = "mnist"
    root: str = ""  # folder with the IDX files; "" searches data/mnist, ../shared/data/mnist, ~/.cache/seqlab/mnist
    view: str = "rows"  # "rows" (28 x 28), "pixels" (784 x 1) or "permuted" (784 x 1, fixed order)
    val_fraction: float = 1 / 12  # of the training file: 5,001 of MNIST's 60,000 (1/12 of each class, rounded)
    seed: int = 0  # the train/val split
    permutation_seed: int = 0  # the pixel order of the "permuted" view
    download: bool = False

    def __post_init__(self):
        if self.view not in VIEWS:
            raise ValueError(f"data.view must be one of {', '.join(VIEWS)}, got {self.view!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")


def build_mnist(cfg: MnistConfig = MnistConfig()) -> Splits:
    root = resolve_root(cfg.root, "train", cfg.download)
    splits = {}
    for split in ("train", "test"):
        images, labels = load_arrays(root, split, cfg.download)
        splits[split] = (
            to_sequences(images, cfg.view, cfg.permutation_seed),
            torch.from_numpy(labels.astype(np.int64)),
        )
    (x, y), (x_test, y_test) = splits["train"], splits["test"]
    val_idx, train_idx = stratified_split(y, (cfg.val_fraction,), cfg.seed)
    N, T, C = x.shape
    info = {
        "task": Task.CLASSIFICATION,
        "metric": "accuracy",
        "input_size": C,
        "seq_len": T,
        "num_classes": int(max(y.max(), y_test.max())) + 1,
        "input_shape": (T, C),
        "target_shape": (),
        "root": str(root),
        "view": cfg.view,
        "image_shape": tuple(images.shape[1:]),
        "files": {stem: fingerprint(_find(root, stem)) for split in ("train", "test") for stem in FILES[split]},
    }
    if cfg.view == "permuted":
        info["permutation"] = permutation(T, cfg.permutation_seed)  # x[:, t] is pixel permutation[t]
    return Splits(
        TensorSequenceDataset(x[train_idx], y[train_idx]),
        TensorSequenceDataset(x[val_idx], y[val_idx]),
        TensorSequenceDataset(x_test, y_test),
        info,
    )
