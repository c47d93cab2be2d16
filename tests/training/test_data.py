"""qnn_plugin.training.data: the canonical Dataset form, each source, its split, its errors."""
import gzip
import sys
import types

import numpy as np
import pytest
import torch

from qnn_plugin.errors import QnnPluginError
from qnn_plugin.training.data import Dataset, DatasetError, find_shared_dir, load_dataset, subset


def write_idx(path, arr, gz=False, magic=None):
    """An IDX file of uint8 ``arr``: 0x0000, type 0x08, ndim, big-endian int32 sizes, data."""
    arr = np.asarray(arr, dtype=np.uint8)
    header = magic if magic is not None else bytes([0, 0, 0x08, arr.ndim])
    raw = header + np.array(arr.shape, dtype=">i4").tobytes() + arr.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def random_images(rng, n, shape=(5, 4)):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write_pair(folder, prefix, x, y, gz=False):
    sfx = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{sfx}", x, gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{sfx}", y, gz)


def check_canonical(ds: Dataset):
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == ds.input_shape
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert 0 <= y.min() and y.max() < ds.n_classes
    for part in ("train", "test"):
        xt, yt = ds.tensors(part)
        pixels = ds.x_train if part == "train" else ds.x_test
        assert xt.dtype == torch.float32 and yt.dtype == torch.int64
        assert torch.equal(xt * 256, torch.from_numpy(pixels).float())  # p/256 exactly


# --- digits ----------------------------------------------------------------------------------

def check_digits(ds):
    check_canonical(ds)
    assert ds.name == "digits" and ds.input_shape == (1, 8, 8) and ds.n_classes == 10
    assert (len(ds.y_train), len(ds.y_test)) == (1437, 360)
    assert ds.x_train.max() <= 255 and set(np.unique(ds.y_train)) <= set(range(10))
    assert "default_rng(0)" in ds.source and "360" in ds.source


def test_digits_sklearn():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.datasets import load_digits
    ds = load_dataset("digits")
    check_digits(ds)
    again = load_dataset("digits")
    assert np.array_equal(ds.x_train, again.x_train) and np.array_equal(ds.y_test, again.y_test)
    raw = load_digits()
    perm = np.random.default_rng(0).permutation(1797)
    assert np.array_equal(ds.x_test[:, 0], np.minimum(255, raw.images[perm[-360:]] * 16))


@pytest.fixture
def fake_sklearn(monkeypatch):
    """A stand-in ``sklearn.datasets.load_digits`` (values 0..16), so the conversion and the
    split are tested where scikit-learn is not installed."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 17, size=(1797, 8, 8)).astype(np.float64)
    target = np.arange(1797) % 10
    datasets = types.ModuleType("sklearn.datasets")
    datasets.load_digits = lambda: types.SimpleNamespace(images=images, target=target)
    monkeypatch.setitem(sys.modules, "sklearn", types.ModuleType("sklearn"))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", datasets)
    return images, target


def test_digits_conversion_and_split(fake_sklearn):
    images, target = fake_sklearn
    ds = load_dataset("digits")
    check_digits(ds)
    perm = np.random.default_rng(0).permutation(1797)
    assert np.array_equal(ds.y_train, target[perm[:-360]])
    assert np.array_equal(ds.y_test, target[perm[-360:]])
    src, dst = images[perm[-360:]], ds.x_test[:, 0]
    assert (dst[src == 16] == 255).all() and (dst[src == 1] == 16).all() and (dst[src == 0] == 0).all()
    assert np.array_equal(dst, np.minimum(255, src * 16))
    again = load_dataset("digits")
    assert np.array_equal(ds.x_train, again.x_train) and np.array_equal(ds.y_train, again.y_train)


def test_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn` fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DatasetError, match="pip install scikit-learn"):
        load_dataset("digits")


# --- mnist (shared folder) -------------------------------------------------------------------

def test_mnist_shared():
    if find_shared_dir() is None:
        pytest.skip("the shared datasets folder (datasets/mnist) is not on this machine")
    ds = load_dataset("mnist")
    check_canonical(ds)
    assert ds.input_shape == (1, 28, 28) and ds.n_classes == 10
    assert (len(ds.y_train), len(ds.y_test)) == (8000, 2000)
    assert (np.bincount(ds.y_test, minlength=10) > 150).all()  # every class in the test part


def test_mnist_shared_dir_argument_and_env(tmp_path, monkeypatch):
    folder = tmp_path / "datasets" / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_pair(folder, "t10k", random_images(rng, 10, (28, 28)), np.arange(10) % 3, gz=True)
    ds = load_dataset("mnist", shared_dir=str(tmp_path))
    assert (len(ds.y_train), len(ds.y_test), ds.n_classes) == (8, 2, 3)
    monkeypatch.setenv("QNN_SHARED_DIR", str(tmp_path))
    assert find_shared_dir() == tmp_path
    assert np.array_equal(load_dataset("mnist").x_test, ds.x_test)
    with pytest.raises(DatasetError, match="nowhere"):
        load_dataset("mnist", shared_dir=str(tmp_path / "nowhere"))


# --- user folders of IDX files ---------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_train_and_t10k(tmp_path, gz):
    rng = np.random.default_rng(2)
    x_tr, x_te = random_images(rng, 7), random_images(rng, 3)
    y_tr, y_te = np.array([0, 1, 2, 3, 4, 5, 6]), np.array([9, 0, 1])
    write_pair(tmp_path, "train", x_tr, y_tr, gz)
    write_pair(tmp_path, "t10k", x_te, y_te, gz)
    ds = load_dataset(str(tmp_path))
    check_canonical(ds)
    assert ds.name == str(tmp_path) and ds.input_shape == (1, 5, 4) and ds.n_classes == 10
    assert np.array_equal(ds.x_train[:, 0], x_tr) and np.array_equal(ds.y_train, y_tr)
    assert np.array_equal(ds.x_test[:, 0], x_te) and np.array_equal(ds.y_test, y_te)


def test_idx_t10k_only_split(tmp_path):
    rng = np.random.default_rng(3)
    x, y = random_images(rng, 10), np.arange(10) % 4
    write_pair(tmp_path, "t10k", x, y)
    ds = load_dataset(str(tmp_path))
    assert np.array_equal(ds.x_train[:, 0], x[:8]) and np.array_equal(ds.x_test[:, 0], x[8:])
    assert np.array_equal(ds.y_test, y[8:]) and ds.n_classes == 4
    assert "first 8 train, last 2 test" in ds.source


# --- user .npz files -------------------------------------------------------------------------

def save_npz(path, x_tr, y_tr, x_te, y_te, **extra):
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, **extra)
    return path


def test_npz_grayscale_in_folder(tmp_path):
    rng = np.random.default_rng(4)
    x_tr, x_te = random_images(rng, 6, (28, 28)), random_images(rng, 2, (28, 28))
    save_npz(tmp_path / "mnist.npz", x_tr, np.arange(6), x_te, np.array([1, 2]))
    for spec in (str(tmp_path / "mnist.npz"), str(tmp_path)):  # the file, or its folder
        ds = load_dataset(spec)
        check_canonical(ds)
        assert ds.input_shape == (1, 28, 28) and ds.n_classes == 6
        assert np.array_equal(ds.x_train[:, 0], x_tr) and np.array_equal(ds.x_test[:, 0], x_te)


def test_npz_cifar_channels_last(tmp_path):
    rng = np.random.default_rng(5)
    x_tr, x_te = random_images(rng, 4, (32, 32, 3)), random_images(rng, 2, (32, 32, 3))
    y_tr, y_te = np.array([[3], [1], [0], [9]]), np.array([[2], [5]])  # Keras CIFAR: (N, 1)
    ds = load_dataset(str(save_npz(tmp_path / "cifar10.npz", x_tr, y_tr, x_te, y_te)))
    check_canonical(ds)
    assert ds.input_shape == (3, 32, 32) and ds.n_classes == 10
    assert np.array_equal(ds.y_train, [3, 1, 0, 9]) and np.array_equal(ds.y_test, [2, 5])
    n, i, j = 2, 7, 30
    for c in range(3):
        assert ds.x_train[n, c, i, j] == x_tr[n, i, j, c]
    assert np.array_equal(ds.x_train, x_tr.transpose(0, 3, 1, 2))


def test_npz_float_pixels(tmp_path):
    x = np.array([0.0, 1.0, 0.5, 1 / 255, 0.999]).reshape(1, 1, 5).repeat(2, axis=0)
    ds = load_dataset(str(save_npz(tmp_path / "f.npz", x, np.array([0, 1]), x, np.array([1, 0]))))
    assert ds.x_train.dtype == np.uint8
    assert ds.x_train[0, 0, 0].tolist() == [0, 255, 128, 1, 255]  # round(255 x)


def test_subset(tmp_path):
    rng = np.random.default_rng(6)
    save_npz(tmp_path / "d.npz", random_images(rng, 6), np.arange(6), random_images(rng, 4),
             np.arange(4))
    ds = load_dataset(str(tmp_path / "d.npz"))
    small = subset(ds, 2, None)
    assert np.array_equal(small.x_train, ds.x_train[:2]) and len(small.y_test) == 4
    assert small.n_classes == 6 and "subset" in small.source
    assert len(subset(ds, 100, 1).y_train) == 6


# --- bad input -------------------------------------------------------------------------------

def assert_error_names(spec, fragment, match=None):
    with pytest.raises(DatasetError) as info:
        load_dataset(str(spec))
    assert fragment in str(info.value), str(info.value)
    assert isinstance(info.value, (QnnPluginError, ValueError))
    if match:
        assert match in str(info.value), str(info.value)


def test_missing_path_and_empty_folder(tmp_path):
    assert_error_names(tmp_path / "absent.npz", "absent.npz", "'digits', 'mnist'")
    (tmp_path / "empty").mkdir()
    assert_error_names(tmp_path / "empty", "empty", "train-images-idx3-ubyte")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx(tmp_path, gz):
    rng = np.random.default_rng(7)
    write_pair(tmp_path, "t10k", random_images(rng, 5), np.arange(5))
    images = tmp_path / "t10k-images-idx3-ubyte"
    raw = images.read_bytes()[:-7]  # a valid gzip stream of a truncated IDX file when gz
    if gz:
        images.unlink()
        images = tmp_path / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(raw) if gz else raw)
    assert_error_names(tmp_path, images.name, "truncated")


def test_truncated_gzip_stream(tmp_path):
    rng = np.random.default_rng(8)
    write_pair(tmp_path, "t10k", random_images(rng, 5), np.arange(5), gz=True)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-10])
    assert_error_names(tmp_path, labels.name)


def test_wrong_magic(tmp_path):
    rng = np.random.default_rng(9)
    write_pair(tmp_path, "t10k", random_images(rng, 5), np.arange(5))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", random_images(rng, 5), magic=b"\x00\x01\x08\x03")
    assert_error_names(tmp_path, "t10k-images-idx3-ubyte", "not an IDX file")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", random_images(rng, 5), magic=b"\x00\x00\x0d\x03")
    assert_error_names(tmp_path, "t10k-images-idx3-ubyte", "0x0d")


def test_label_image_count_mismatch(tmp_path):
    rng = np.random.default_rng(10)
    write_pair(tmp_path, "t10k", random_images(rng, 5), np.arange(4))
    assert_error_names(tmp_path, "t10k-labels-idx1-ubyte", "4 labels")


def test_npz_missing_key(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((2, 3, 3), np.uint8), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((1, 3, 3), np.uint8))
    assert_error_names(path, "partial.npz", "y_test")


def test_npz_float_out_of_range(tmp_path):
    x = np.full((2, 3, 3), 255.0)
    path = save_npz(tmp_path / "scaled.npz", x, np.array([0, 1]), x, np.array([0, 1]))
    assert_error_names(path, "scaled.npz", "[0, 1]")
