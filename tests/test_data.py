"""initlab.data: IDX parsing and its checks, real data sets, splits, standardization."""

from __future__ import annotations

import gzip
import random
import socket
import struct

import numpy as np
import pytest
import torch

from initlab.data import Dataset, load, names, read_idx, sources, write_idx

needs_fashion = pytest.mark.skipif(
    not sources.fashion_mnist_installed(),
    reason=f"Fashion-MNIST not installed at {sources.FASHION_MNIST_DIR} "
    "(apt-get install dataset-fashion-mnist; CI installs it)",
)

# Standardization uses float64 sums and float32 values: the training split's
# per-channel mean and std then differ from 0 and 1 by float32 rounding only
# (measured below 1e-7 on every data set here); 1e-5 leaves a wide margin yet
# fails for real errors: an unbiased std on the 2160 synthetic training rows is
# off by 1/(2N) = 2.3e-4, statistics taken from the wrong split by >= 1e-3.
STAT_TOL = 1e-5


# ------------------------------------------------------------------ helpers


def _images(n: int, seed: int, hw: tuple[int, int] = (4, 5)) -> np.ndarray:
    """Random uint8 images that carry their own index, recoverable after standardization.

    Pixels (0, 0) and (0, 1) hold ``i % 256`` and ``i // 256``; pixels (0, 2) and
    (0, 3) are the anchors 0 and 255, which pin down the affine standardization.
    """
    images = np.random.default_rng(seed).integers(0, 256, size=(n, *hw), dtype=np.uint8)
    index = np.arange(n)
    images[:, 0, :4] = np.stack([index % 256, index // 256, 0 * index, 0 * index + 255], 1)
    return images


def _indices(x: torch.Tensor) -> list[int]:
    """Indices of standardized :func:`_images` rows, undoing the map with the anchors."""
    pixels = x[:, 0, 0, :4].double()
    low, high = pixels[:, 2:3], pixels[:, 3:4]
    raw = torch.round((pixels[:, :2] - low) / (high - low) * 255).long()
    return (raw[:, 0] + 256 * raw[:, 1]).tolist()


def _idx_name(split: str, kind: str, style: str) -> str:
    ndim = 3 if kind == "images" else 1
    return {
        "gz": f"{split}-{kind}-idx{ndim}-ubyte.gz",
        "plain": f"{split}-{kind}-idx{ndim}-ubyte",
        "dotted": f"{split}-{kind}.idx{ndim}-ubyte",
        "prefixed": f"emnist-letters-{split}-{kind}-idx{ndim}-ubyte.gz",
    }[style]


def make_idx_folder(folder, n_train=300, n_test=40, classes=3, style="gz", test=True):
    """An MNIST-format folder; returns {(split, kind): (path, array)}."""
    folder.mkdir(exist_ok=True)
    arrays = {
        ("train", "images"): _images(n_train, seed=1),
        ("train", "labels"): (np.arange(n_train) % classes).astype(np.uint8),
    }
    if test:
        arrays[("t10k", "images")] = _images(n_test, seed=2)
        arrays[("t10k", "labels")] = (np.arange(n_test) % classes).astype(np.uint8)
    written = {}
    for (split, kind), array in arrays.items():
        path = write_idx(folder / _idx_name(split, kind, style), array)
        written[split, kind] = (path, array)
    return written


def _rows(x: torch.Tensor) -> list[bytes]:
    return [row.numpy().tobytes() for row in x]


def _channel_moments(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std in float64, one pass: std = sqrt(E[x^2] - E[x]^2).

    A different formula from the library's two-pass one, and exact enough here:
    the means are ~0, so the subtraction cancels nothing.
    """
    flat = x.numpy().reshape(len(x), x.shape[1], -1)
    count = flat.shape[0] * flat.shape[2]
    mean = flat.sum(axis=(0, 2), dtype=np.float64) / count
    square = np.einsum("ncp,ncp->c", flat, flat, dtype=np.float64) / count
    return mean, np.sqrt(square - mean**2)


# ------------------------------------------------------------ IDX format


@pytest.mark.parametrize(
    ("code", "fmt", "values"),
    [
        (0x08, "B", [0, 7, 255, 1, 2, 3]),
        (0x09, "b", [-128, -1, 0, 1, 127, 5]),
        (0x0B, "h", [-2, 300, 7, -32768, 32767, 0]),
        (0x0C, "i", [-(2**31), 2**31 - 1, 0, 1, -1, 123456]),
        (0x0D, "f", [0.5, -1.25, 3.0, 1e-3, 2.0, -0.0]),
        (0x0E, "d", [np.pi, -np.e, 1e300, 0.0, 1.0, -2.5]),
    ],
)
def test_read_idx_parses_hand_built_big_endian_file(tmp_path, code, fmt, values):
    path = tmp_path / "x-idx2"
    path.write_bytes(
        bytes([0, 0, code, 2]) + struct.pack(">2I", 2, 3) + struct.pack(f">6{fmt}", *values)
    )
    array = read_idx(path)
    assert array.shape == (2, 3)
    assert array.dtype.isnative
    np.testing.assert_array_equal(array.ravel(), np.array(values, dtype=array.dtype))


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_write_then_read_idx_round_trips(tmp_path, dtype, name):
    array = (np.arange(60).reshape(3, 4, 5) - 20).astype(dtype)
    path = write_idx(tmp_path / name, array)
    raw = path.read_bytes()
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    assert len(raw) == 4 + 4 * 3 + array.size * array.itemsize
    assert raw[:4] == bytes([0, 0, raw[2], 3]) and struct.unpack(">3I", raw[4:16]) == (3, 4, 5)
    result = read_idx(path)
    assert result.dtype == array.dtype
    np.testing.assert_array_equal(result, array)


def test_read_idx_recognises_gzip_by_content_not_name(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"  # no .gz, gzipped content
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 4, 5, 6])))
    np.testing.assert_array_equal(read_idx(path), [4, 5, 6])


_HEADER_U8_3 = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 3)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"\x00\x00", "too short for the 4-byte IDX magic number"),
        (bytes([1, 0, 8, 1]) + struct.pack(">I", 3) + b"abc", "bad magic number 0x01000801"),
        (bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 3) + b"abc", "unknown data type code 0x0A"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (bytes([0, 0, 8, 3]) + struct.pack(">I", 3), "header declares 3 dimensions"),
        (_HEADER_U8_3 + b"ab", "size mismatch: header says shape (3,) of uint8 = 11 bytes, file"),
        (_HEADER_U8_3 + b"abcd", "file has 12 bytes"),
        (b"\x1f\x8b" + b"not really gzip", "corrupt gzip data"),
        (gzip.compress(_HEADER_U8_3 + b"abcd")[:-6], "corrupt gzip data"),
    ],
    ids=[
        "short",
        "magic",
        "dtype",
        "ndim0",
        "header",
        "truncated",
        "extra",
        "gzip",
        "gzip-cut",
    ],
)
def test_bad_idx_file_error_names_file_and_fault(tmp_path, content, what):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        read_idx(path)
    assert str(path) in str(err.value) and what in str(err.value)


def test_write_idx_rejects_types_idx_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match=r"int64.*valid types"):
        write_idx(tmp_path / "x-idx1-ubyte", np.arange(3, dtype=np.int64))


# ------------------------------------------------------------ IDX folders


@pytest.mark.parametrize("style", ["gz", "plain", "dotted", "prefixed"])
def test_idx_folder_loads_and_standardizes_with_train_statistics(tmp_path, style):
    files = make_idx_folder(tmp_path / "set", style=style)
    ds = load("idx", data_dir=tmp_path / "set", val_fraction=0.0)
    raw_train, raw_test = files["train", "images"][1], files["t10k", "images"][1]
    assert ds.name == "idx" and ds.num_classes == 3 and ds.input_shape == (1, 4, 5)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (300, 0, 40)
    # Independent computation: numpy float64 statistics of all 300 training images.
    mean, std = raw_train.mean(dtype=np.float64), raw_train.std(dtype=np.float64)
    expected_test = (raw_test[:, None] - mean) / std
    np.testing.assert_allclose(ds.x_test.numpy(), expected_test, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ds.y_test.numpy(), files["t10k", "labels"][1])
    np.testing.assert_allclose(
        np.sort(ds.x_train.numpy().ravel()), np.sort(((raw_train - mean) / std).ravel()), atol=1e-5
    )


def test_idx_folder_prefers_plain_file_over_its_gz_twin(tmp_path):
    make_idx_folder(tmp_path, style="plain")
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(300, np.uint8))
    assert len(set(load("idx", data_dir=tmp_path).y_train.tolist())) == 3


def test_idx_folder_without_test_pair_holds_out_a_test_split(tmp_path):
    make_idx_folder(tmp_path, test=False)
    ds = load("idx", data_dir=tmp_path)
    assert len(ds.y_test) == 60 and len(ds.y_train) + len(ds.y_val) == 240


def test_image_and_label_counts_must_match(tmp_path):
    files = make_idx_folder(tmp_path)
    images_path, _ = files["t10k", "images"]
    labels_path, labels = files["t10k", "labels"]
    write_idx(labels_path, labels[:-1])
    with pytest.raises(ValueError) as err:
        load("idx", data_dir=tmp_path)
    message = str(err.value)
    assert str(images_path) in message and str(labels_path) in message
    assert "40 images" in message and "39 labels" in message


def test_fashion_mnist_labels_must_be_below_ten(tmp_path):
    files = make_idx_folder(tmp_path)
    labels_path, labels = files["train", "labels"]
    labels = labels.copy()
    labels[[5, 9]] = 12
    write_idx(labels_path, labels)
    with pytest.raises(ValueError) as err:
        load("fashion-mnist", data_dir=tmp_path)
    assert str(labels_path) in str(err.value)
    assert "label 12 out of range [0, 10) (2 of 300 labels)" in str(err.value)


def test_idx_test_labels_must_be_within_training_classes(tmp_path):
    files = make_idx_folder(tmp_path, classes=3)
    labels_path, labels = files["t10k", "labels"]
    write_idx(labels_path, np.full_like(labels, 3))
    with pytest.raises(ValueError, match=r"t10k-labels.*label 3 out of range \[0, 3\)"):
        load("idx", data_dir=tmp_path)


def test_truncated_file_in_folder_is_named(tmp_path):
    files = make_idx_folder(tmp_path, style="plain")
    images_path, _ = files["train", "images"]
    images_path.write_bytes(images_path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="size mismatch") as err:
        load("idx", data_dir=tmp_path)
    assert str(images_path) in str(err.value)


def test_images_must_be_three_dimensional(tmp_path):
    files = make_idx_folder(tmp_path)
    images_path, images = files["train", "images"]
    write_idx(images_path, images.reshape(300, -1))
    with pytest.raises(ValueError, match=r"must be 3-d \(N, H, W\), got shape \(300, 20\)") as err:
        load("idx", data_dir=tmp_path)
    assert str(images_path) in str(err.value)


def test_missing_idx_files_are_listed(tmp_path):
    files = make_idx_folder(tmp_path)
    files["t10k", "labels"][0].unlink()
    with pytest.raises(FileNotFoundError) as err:
        load("idx", data_dir=tmp_path)
    assert str(tmp_path) in str(err.value) and "t10k-images-idx3-ubyte.gz" in str(err.value)


def test_constant_images_are_centred_not_divided_by_zero(tmp_path):
    make_idx_folder(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.full((300, 4, 5), 9, np.uint8))
    ds = load("idx", data_dir=tmp_path)
    assert torch.equal(ds.x_train, torch.zeros_like(ds.x_train))


# ------------------------------------------------------------ real data sets


@needs_fashion
def test_fashion_mnist_from_debian_package():
    ds = load("fashion-mnist")
    assert ds.input_shape == (1, 28, 28) and ds.in_features == 784 and ds.num_classes == 10
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (54000, 6000, 10000)
    assert ds.x_train.shape == (54000, 1, 28, 28) and ds.x_test.dtype == torch.float32
    # The official test set has exactly 1000 images per class (Xiao et al. 2017).
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert load("auto", limit=10).name == "fashion-mnist"


@needs_fashion
def test_fashion_mnist_pixel_mean_matches_published_constant():
    images = sources.fashion_mnist().x_train  # as read_idx parsed it
    assert images.shape == (60000, 1, 28, 28) and images.dtype == np.uint8
    # The widely used normalization constants are mean 0.2860, std 0.3530 (4 digits).
    assert abs(images.mean() / 255 - 0.2860) < 5e-5
    assert abs(images.std() / 255 - 0.3530) < 5e-5


def test_digits_shapes_and_fixed_test_split():
    a, b = load("digits", seed=0), load("digits", seed=1)
    assert a.input_shape == (1, 8, 8) and a.in_features == 64 and a.num_classes == 10
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    assert len(a.y_test) == round(0.2 * 1797)
    # The held-out test examples do not depend on the run's seed ...
    assert torch.equal(a.y_test, b.y_test)
    # ... the validation examples do.
    assert not torch.equal(a.y_val, b.y_val)


@pytest.fixture(scope="module")
def mnist1d_fresh(tmp_path_factory):
    """MNIST-1D generated from scratch in an empty cwd with sockets disabled."""

    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried to open a network connection")

    cwd = tmp_path_factory.mktemp("cwd")
    sources.mnist1d.cache_clear()
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(socket.socket, "connect", no_network)
        ds = load("mnist1d")
    return ds, (np_before, py_before), (np.random.get_state()[1], random.getstate()), cwd


def test_mnist1d_is_generated_locally(mnist1d_fresh):
    ds, (np_before, py_before), (np_after, py_after), cwd = mnist1d_fresh
    assert ds.input_shape == (1, 40) and ds.in_features == 40 and ds.num_classes == 10
    assert (len(ds.y_train) + len(ds.y_val), len(ds.y_test)) == (4000, 1000)
    assert torch.bincount(ds.y_train, minlength=10).min() > 0
    assert list(cwd.iterdir()) == []  # no mnist1d_data.pkl written or fetched
    np.testing.assert_array_equal(np_before, np_after)  # global RNGs untouched
    assert py_before == py_after


# ------------------------------------------------------ standardization


@pytest.mark.parametrize(
    "name", ["synthetic", "digits", "mnist1d", pytest.param("fashion-mnist", marks=needs_fashion)]
)
def test_train_split_has_zero_mean_unit_std_per_channel(name):
    ds = load(name, seed=3)
    mean, std = _channel_moments(ds.x_train)
    assert len(mean) == ds.input_shape[0]  # one pair per channel; per feature for (d,) inputs
    assert np.abs(mean).max() < STAT_TOL and np.abs(std - 1).max() < STAT_TOL
    # Validation data is mapped with the training statistics, not its own.
    val_mean, _ = _channel_moments(ds.x_val)
    assert np.abs(val_mean).max() > STAT_TOL


def test_synthetic_standardizes_each_feature():
    ds = load("synthetic")
    assert ds.input_shape == (20,) and ds.in_features == 20 and ds.num_classes == 4
    raw = sources.synthetic().x_train
    raw_feature_means = raw.mean(axis=0)
    assert np.ptp(raw_feature_means) > 0.01  # features differ, so per-feature matters
    mean, std = _channel_moments(ds.x_train)
    assert np.abs(mean).max() < STAT_TOL and np.abs(std - 1).max() < STAT_TOL


# ------------------------------------------------------------ splits


@pytest.mark.parametrize("name", ["synthetic", "digits"])
def test_same_seed_same_split(name):
    a, b, c = load(name, seed=7), load(name, seed=7), load(name, seed=8)
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, split), getattr(b, split)), split
    assert not torch.equal(a.x_val, c.x_val)


def test_synthetic_task_is_the_same_task_after_regeneration():
    before = sources.synthetic()
    sources.synthetic.cache_clear()
    after = sources.synthetic()
    np.testing.assert_array_equal(before.x_train, after.x_train)
    np.testing.assert_array_equal(before.y_train, after.y_train)
    # A usable classification task: every one of the 4 classes holds >= 10%.
    assert np.bincount(after.y_train, minlength=4).min() >= 0.1 * len(after.y_train)


def test_splits_are_disjoint_and_cover_the_examples():
    ds = load("synthetic", seed=5, val_fraction=0.25)
    train, val, test = map(set, (_rows(ds.x_train), _rows(ds.x_val), _rows(ds.x_test)))
    assert (len(train), len(val), len(test)) == (1800, 600, 600)  # rows distinct within splits
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 3000


def test_idx_train_and_val_partition_the_official_train_set(tmp_path):
    make_idx_folder(tmp_path)
    ds = load("idx", data_dir=tmp_path, seed=2, val_fraction=0.2)
    train, val, test = _indices(ds.x_train), _indices(ds.x_val), _indices(ds.x_test)
    assert (len(train), len(val)) == (240, 60)
    assert sorted(train + val) == list(range(300))  # disjoint, and nothing lost
    assert test == list(range(40))  # the official test set, in file order


def test_limit_caps_training_examples_nested_and_seeded(tmp_path):
    make_idx_folder(tmp_path)
    full, small, small_again, larger = (
        load("idx", data_dir=tmp_path, seed=4, limit=n) for n in (None, 50, 50, 120)
    )
    assert (len(small.y_train), len(larger.y_train), len(full.y_train)) == (50, 120, 270)
    assert _indices(small.x_train) == _indices(small_again.x_train)
    assert (
        set(_indices(small.x_train)) < set(_indices(larger.x_train)) < set(_indices(full.x_train))
    )
    # The validation split ignores the limit; a limit beyond the data keeps everything.
    assert _indices(small.x_val) == _indices(full.x_val)
    assert len(load("idx", data_dir=tmp_path, limit=10**6).y_train) == 270


# ------------------------------------------------------------ argument errors


def test_unknown_name_suggests_closest():
    with pytest.raises(
        ValueError, match=r"unknown dataset 'fashon-mnist'; did you mean 'fashion-mnist'"
    ):
        load("fashon-mnist")
    assert names() == ["auto", "fashion-mnist", "idx", "digits", "mnist1d", "synthetic"]


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\), got 1.0"),
        ({"val_fraction": -0.1}, r"val_fraction must be in \[0, 1\), got -0.1"),
        ({"limit": 0}, r"limit must be a positive int or None, got 0"),
        ({"limit": 2.5}, r"limit must be a positive int or None, got 2.5"),
        ({"data_dir": "/tmp/x"}, r"'synthetic' is generated, it reads no data_dir"),
    ],
)
def test_bad_arguments_are_named(kwargs, what):
    with pytest.raises(ValueError, match=what):
        load("synthetic", **kwargs)


def test_idx_needs_a_folder(tmp_path):
    with pytest.raises(ValueError, match="'idx' needs data_dir"):
        load("idx")
    with pytest.raises(FileNotFoundError, match="no such IDX folder"):
        load("idx", data_dir=tmp_path / "absent")


def test_auto_falls_back_to_digits_and_uses_data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", tmp_path / "absent")
    assert load("auto").name == "digits"
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load("fashion-mnist")
    make_idx_folder(tmp_path / "mine")
    assert load("auto", data_dir=tmp_path / "mine").name == "idx"


def test_loaded_tensors_are_the_callers_own():
    first = load("synthetic")
    first.x_train.zero_()
    assert load("synthetic").x_train.abs().sum() > 0


def test_describe_names_the_splits():
    ds = load("synthetic", limit=50)
    text = ds.describe()
    assert isinstance(ds, Dataset) and repr(ds) == f"Dataset({text})"
    assert text.startswith("synthetic: 4 classes, input 20, 50 train / 240 val / 600 test")
    assert "teacher MLP 20-64-4" in text
