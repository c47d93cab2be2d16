"""Datasets for QNN training, all returned in one canonical form (``Dataset``).

Images are uint8 pixel levels 0..255 in (N, C, H, W) layout, labels int64 0..n_classes-1.
``Dataset.tensors`` hands the trainer ``pixels / 256`` (float32): level p is the real value
p/256, which an 8-bit input quantizer with scale 2**-8 maps back to code p exactly.

Sources accepted by ``load_dataset(spec)`` (the names take precedence over a same-named path):

``"digits"``
    scikit-learn's bundled ``load_digits()``: 1797 8x8 images with values 0..16, converted to
    levels ``p = min(255, 16 * v)`` (1 -> 16, 15 -> 240, 16 -> 255); shape (N, 1, 8, 8).
    Split: ``np.random.default_rng(0).permutation(1797)``; its last 360 indices are the test part,
    the first 1437 (in permutation order) the training part.
``"mnist"``
    The MNIST *test* set (10,000 images, the only MNIST part in the shared folder) from
    ``<shared>/datasets/mnist/t10k-{images-idx3,labels-idx1}-ubyte.gz``. Split: the first 8,000
    images train, the last 2,000 test (the file is not ordered by class). ``<shared>`` is the
    ``shared_dir`` argument, else ``$QNN_SHARED_DIR``, else ``shared`` beside the repository,
    else ``/work/shared``.
a folder of MNIST / Fashion-MNIST IDX files
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each optionally ``.gz`` (also the ``train-images.idx3-ubyte`` spelling).
    Train files -> training part, t10k files -> test part. With only one of the two pairs, that
    pair is split like "mnist": the first 80% train, the last 20% test.
a ``.npz`` file (or a folder holding exactly one, and no IDX files)
    Keras style, keys ``x_train, y_train, x_test, y_test`` (``mnist.npz``, ``fashion_mnist.npz``,
    CIFAR-10 saved that way). Images (N, H, W) get a channel axis; (N, H, W, C) with C in (1, 3)
    is transposed to (N, C, H, W); (N, C, H, W) with C in (1, 3) is kept. Pixels must be uint8,
    or float in [0, 1] (converted to ``round(255 * x)``). Labels (N,) or (N, 1), integers >= 0.

``n_classes`` is the largest label over both parts plus one. Every problem with the input raises
``DatasetError`` naming the file or folder and what was expected.
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from ..errors import QnnPluginError

DIGITS_TEST_SIZE = 360
MNIST_TRAIN_FRACTION = (4, 5)  # first 4/5 train, last 1/5 test: 8,000 / 2,000 for MNIST's t10k
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DatasetError(QnnPluginError, ValueError):
    """A dataset is missing, malformed, or not in a supported layout."""


@dataclass
class Dataset:
    name: str  # "digits", "mnist", or the user's path
    x_train: np.ndarray  # uint8 (N, C, H, W)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    source: str  # one line: where the data came from and how it was split

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def tensors(self, part: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of part "train" or "test": x float32 = pixels / 256 (exact), y int64."""
        if part not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        x, y = (self.x_train, self.y_train) if part == "train" else (self.x_test, self.y_test)
        return torch.from_numpy(x).to(torch.float32) / 256.0, torch.from_numpy(y).to(torch.int64)


def load_dataset(spec: str, shared_dir: Optional[str] = None) -> Dataset:
    """Load ``"digits"``, ``"mnist"``, or a user path (see the module docstring)."""
    if spec == "digits":
        return _load_digits()
    if spec == "mnist":
        return _load_shared_mnist(shared_dir)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_folder(path, spec)
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise DatasetError(f"{path}: unsupported file; expected a .npz file (keys "
                               f"{', '.join(NPZ_KEYS)}) or a folder of MNIST IDX files")
        return _load_npz(path, spec)
    raise DatasetError(f"{spec}: unknown dataset and no such file or folder; expected 'digits', "
                       "'mnist', or a path to a .npz file or a folder of MNIST IDX files")


def subset(ds: Dataset, n_train: Optional[int], n_test: Optional[int]) -> Dataset:
    """The first ``n_train`` / ``n_test`` samples of each part (None keeps a part whole).

    ``n_classes`` is kept, so a model trained on the subset has the full dataset's outputs."""
    for n in (n_train, n_test):
        if n is not None and n < 0:
            raise ValueError(f"subset sizes must be >= 0, got {n}")
    tr, te = slice(n_train), slice(n_test)
    return dataclasses.replace(
        ds, x_train=ds.x_train[tr], y_train=ds.y_train[tr], x_test=ds.x_test[te], y_test=ds.y_test[te],
        source=f"{ds.source}; subset: first {len(ds.y_train[tr])} train, first {len(ds.y_test[te])} test")


# --- the named datasets ---------------------------------------------------------------------

def _load_digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DatasetError("digits: the 'digits' dataset is scikit-learn's bundled copy, and "
                           f"scikit-learn is not installed ({e}); run: pip install scikit-learn") from e
    digits = load_digits()
    # values are integers 0..16; 16 levels per step spreads them over 0..256, capped to fit uint8
    x = np.minimum(255, np.rint(digits.images) * 16).astype(np.uint8)[:, None, :, :]
    y = np.asarray(digits.target)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:-DIGITS_TEST_SIZE], perm[-DIGITS_TEST_SIZE:]
    source = (f"scikit-learn load_digits ({len(y)} 8x8 images, levels min(255, 16*v)); split: "
              f"np.random.default_rng(0).permutation, last {DIGITS_TEST_SIZE} test, "
              f"{len(tr)} train")
    return _finish("digits", source, x[tr], y[tr], x[te], y[te], "digits")


def find_shared_dir(shared_dir: Optional[str] = None) -> Optional[Path]:
    """The shared folder holding ``datasets/mnist``, or None: ``shared_dir``, else
    ``$QNN_SHARED_DIR``, else ``shared`` beside the repository, else ``/work/shared``."""
    for cand in _shared_candidates(shared_dir):
        if (cand / "datasets" / "mnist").is_dir():
            return cand
    return None


def _shared_candidates(shared_dir: Optional[str]) -> List[Path]:
    # an explicit choice (argument, then environment) is the only place looked at
    if shared_dir:
        return [Path(shared_dir).expanduser()]
    if os.environ.get("QNN_SHARED_DIR"):
        return [Path(os.environ["QNN_SHARED_DIR"]).expanduser()]
    repo_root = Path(__file__).resolve().parents[2]  # .../<repo>/qnn_plugin/training/data.py
    return [repo_root.parent / "shared", Path("/work/shared")]


def _load_shared_mnist(shared_dir: Optional[str]) -> Dataset:
    root = find_shared_dir(shared_dir)
    if root is None:
        looked = ", ".join(str(c / "datasets" / "mnist") for c in _shared_candidates(shared_dir))
        raise DatasetError(f"mnist: no shared MNIST folder; looked for {looked} (set "
                           "QNN_SHARED_DIR or pass shared_dir)")
    folder = root / "datasets" / "mnist"
    pair = _find_idx_pair(folder, "t10k")
    if pair is None:
        raise DatasetError(f"{folder}: expected t10k-images-idx3-ubyte[.gz] and "
                           "t10k-labels-idx1-ubyte[.gz] (the MNIST test set)")
    x, y = _read_idx_pair(*pair)
    return _split_pair("mnist", x, y, f"MNIST test set from {folder}", "mnist")


# --- user paths -----------------------------------------------------------------------------

def _load_folder(folder: Path, name: str) -> Dataset:
    train, test = _find_idx_pair(folder, "train"), _find_idx_pair(folder, "t10k")
    if train and test:
        x_tr, y_tr = _read_idx_pair(*train)
        x_te, y_te = _read_idx_pair(*test)
        source = f"IDX files in {folder}: train-* files train, t10k-* files test"
        return _finish(name, source, x_tr, y_tr, x_te, y_te, folder)
    if train or test:
        x, y = _read_idx_pair(*(train or test))
        prefix = "train" if train else "t10k"
        return _split_pair(name, x, y, f"{prefix}-* IDX files in {folder}", folder)
    npz = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".npz" and p.is_file())
    if len(npz) == 1:
        return _load_npz(npz[0], name)
    if npz:
        raise DatasetError(f"{folder}: {len(npz)} .npz files ({', '.join(p.name for p in npz)}); "
                           "expected exactly one, or pass the file's path")
    raise DatasetError(f"{folder}: no MNIST IDX files (expected train-images-idx3-ubyte[.gz], "
                       "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
                       "t10k-labels-idx1-ubyte[.gz]) and no .npz file")


def _find_idx_pair(folder: Path, prefix: str) -> Optional[Tuple[Path, Path]]:
    """(images, labels) files of ``prefix`` ("train" or "t10k"), None if neither is there."""
    found = []
    for kind, idx in (("images", "idx3"), ("labels", "idx1")):
        names = [f"{prefix}-{kind}{sep}{idx}-ubyte{gz}" for sep in "-." for gz in ("", ".gz")]
        found.append(next((folder / n for n in names if (folder / n).is_file()), None))
    if found == [None, None]:
        return None
    if None in found:
        have, missing = (found[0], "labels-idx1") if found[0] else (found[1], "images-idx3")
        raise DatasetError(f"{have}: found, but no matching {prefix}-{missing}-ubyte[.gz] in {folder}")
    return found[0], found[1]


def _read_idx_pair(images: Path, labels: Path) -> Tuple[np.ndarray, np.ndarray]:
    x, y = _read_idx(images, ndim=3), _read_idx(labels, ndim=1)
    if len(x) != len(y):
        raise DatasetError(f"{labels}: {len(y)} labels, but {images} holds {len(x)} images; "
                           "expected one label per image")
    return x[:, None, :, :], y


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes with ``ndim`` dimensions.

    Layout: 2 zero bytes, data type code (0x08 = unsigned byte), number of dimensions, then
    one big-endian int32 size per dimension, then the data in C order."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic: decide by content, not by the file name
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read or decompress ({e})") from e
    if len(raw) < 4 or raw[:2] != b"\0\0":
        raise DatasetError(f"{path}: not an IDX file (magic {raw[:4].hex() or 'missing'}; "
                           f"expected 0000080{ndim:x}: two zero bytes, type 0x08, {ndim} dims)")
    if raw[2] != 0x08:
        raise DatasetError(f"{path}: IDX data type 0x{raw[2]:02x} is not supported; expected "
                           "0x08 (unsigned byte)")
    if raw[3] != ndim:
        raise DatasetError(f"{path}: IDX file with {raw[3]} dimensions; expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes; expected {header})")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DatasetError(f"{path}: IDX file {what}: {len(raw)} bytes, expected {expected} "
                           f"for sizes {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _load_npz(path: Path, name: str) -> Dataset:
    if not zipfile.is_zipfile(path):  # else np.load would try a .npy or a pickle
        raise DatasetError(f"{path}: not a .npz (zip) archive; expected arrays "
                           f"{', '.join(NPZ_KEYS)} saved with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files if k in NPZ_KEYS}
            files = list(f.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: cannot read as .npz ({e})") from e
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing key(s) {', '.join(missing)}; expected "
                           f"{', '.join(NPZ_KEYS)} (has {', '.join(files) or 'none'})")
    x_tr = _npz_images(arrays["x_train"], path, "x_train")
    x_te = _npz_images(arrays["x_test"], path, "x_test")
    y_tr = _npz_labels(arrays["y_train"], path, "y_train")
    y_te = _npz_labels(arrays["y_test"], path, "y_test")
    source = f"{path} (.npz): x_train/y_train train, x_test/y_test test"
    return _finish(name, source, x_tr, y_tr, x_te, y_te, path)


def _npz_images(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None, :, :]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # channels last (Keras CIFAR-10) -> channels first
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise DatasetError(f"{path}: {key} has shape {x.shape}; expected (N, H, W), "
                           "(N, H, W, C) or (N, C, H, W) with C in (1, 3)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
            raise DatasetError(f"{path}: {key} is {x.dtype} with values outside [0, 1] "
                               f"(min {x.min()}, max {x.max()}); expected uint8 0..255 "
                               "or float in [0, 1]")
        return np.ascontiguousarray(np.rint(x * 255.0).astype(np.uint8))
    raise DatasetError(f"{path}: {key} has dtype {x.dtype}; expected uint8 0..255 or float in [0, 1]")


def _npz_labels(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # Keras CIFAR-10 stores labels as (N, 1)
    if y.ndim != 1:
        raise DatasetError(f"{path}: {key} has shape {y.shape}; expected (N,) or (N, 1)")
    return y


# --- shared checks --------------------------------------------------------------------------

def _split_pair(name: str, x: np.ndarray, y: np.ndarray, origin: str, where) -> Dataset:
    num, den = MNIST_TRAIN_FRACTION
    n_train = len(y) * num // den
    source = (f"{origin}; split: first {n_train} train, last {len(y) - n_train} test "
              f"(first {num}/{den})")
    return _finish(name, source, x[:n_train], y[:n_train], x[n_train:], y[n_train:], where)


def _finish(name: str, source: str, x_tr, y_tr, x_te, y_te, where) -> Dataset:
    """Check both parts (``where`` names the file or folder in messages) and build the Dataset."""
    for part, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if len(x) == 0:
            raise DatasetError(f"{where}: the {part} part is empty; expected at least one image")
        if len(x) != len(y):
            raise DatasetError(f"{where}: {part} part has {len(x)} images but {len(y)} labels")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DatasetError(f"{where}: {part} labels must be non-negative integers "
                               f"(dtype {y.dtype}, min {y.min()})")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DatasetError(f"{where}: train images are {x_tr.shape[1:]} but test images are "
                           f"{x_te.shape[1:]}; expected the same (C, H, W)")
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    return Dataset(name, x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64), n_classes, source)
