"""Data loaders and their errors."""

import gzip
import struct

import numpy as np
import pytest

from edgedistill.data import load_dataset
from edgedistill.errors import InputError

from conftest import write_npz


def test_digits_splits_are_disjoint_and_keep_their_raw_values(digits):
    assert digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10
    assert len(digits.x_train) + len(digits.x_val) + len(digits.x_test) == 1797
    # The raw form: uint8 counts 0..16; the student's x / 16 lives inside the model.
    assert digits.x_train.dtype == np.uint8 and digits.x_train.max() == 16 and digits.value_range == (0.0, 16.0)
    assert digits.raw_bytes and "0..16" in digits.values["description"]
    assert set(np.unique(digits.y_test)) == set(range(10))


def test_npz_loader(tmp_path):
    rng = np.random.default_rng(0)
    path = write_npz(
        tmp_path / "d.npz",
        x_train=rng.integers(0, 255, (50, 6, 6), dtype=np.uint8),
        y_train=rng.integers(0, 3, 50),
        x_test=rng.integers(0, 255, (10, 6, 6), dtype=np.uint8),
        y_test=rng.integers(0, 3, 10),
    )
    data = load_dataset(f"npz:{path}")
    assert data.input_shape == (6, 6, 1)
    assert data.x_train.dtype == np.uint8 and data.value_range == (0.0, 255.0)  # pixels stay bytes
    assert len(data.x_train) + len(data.x_val) == 50


def test_npz_float_values_keep_their_range(tmp_path):
    rng = np.random.default_rng(0)
    path = write_npz(
        tmp_path / "f.npz",
        x_train=rng.random((20, 4, 4)) * 255,
        y_train=np.arange(20) % 2,
        x_test=rng.random((4, 4, 4)) * 255,
        y_test=np.arange(4) % 2,
    )
    data = load_dataset(f"npz:{path}")
    assert data.x_train.dtype == np.float32 and not data.raw_bytes and data.value_range == (0.0, 255.0)


def test_npz_is_subset_before_any_conversion(tmp_path, monkeypatch):
    """A 10-sample run of a large archive converts (and copies) only what it keeps."""
    import edgedistill.data as data_module

    rng = np.random.default_rng(0)
    path = write_npz(
        tmp_path / "big.npz",
        x_train=rng.random((3000, 8, 8, 3)),
        y_train=np.arange(3000) % 3,
        x_test=rng.random((5, 8, 8, 3)),
        y_test=np.arange(5) % 3,
    )
    converted = []
    original = data_module._finish
    monkeypatch.setattr(data_module, "_finish", lambda x, **kw: converted.append(len(x)) or original(x, **kw))
    data = load_dataset(f"npz:{path}", max_train_samples=10)
    assert len(data.x_train) == 10 and data.x_train.dtype == np.float32
    assert max(converted) == 300  # the validation split (10 %), never all 3,000 training images
    with np.load(path) as archive:  # memory-mapped members read the same values
        np.testing.assert_allclose(data.x_test, archive["x_test"].astype(np.float32))


def test_npz_missing_keys(tmp_path):
    path = write_npz(tmp_path / "d.npz", x_train=np.zeros((4, 2, 2)), y_train=np.zeros(4))
    with pytest.raises(InputError, match="lacks x_test, y_test"):
        load_dataset(f"npz:{path}")


def write_idx_folder(folder, *, compressed: bool = True) -> None:
    """Four MNIST-format IDX files of random images and labels (30 train, 10 test)."""

    def idx(stem, array):
        header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
        opener, name = (gzip.open, f"{stem}.gz") if compressed else (open, stem)
        with opener(folder / name, "wb") as handle:
            handle.write(header + array.astype(np.uint8).tobytes())

    rng = np.random.default_rng(0)
    idx("train-images-idx3-ubyte", rng.integers(0, 255, (30, 28, 28)))
    idx("train-labels-idx1-ubyte", np.arange(30) % 10)
    idx("t10k-images-idx3-ubyte", rng.integers(0, 255, (10, 28, 28)))
    idx("t10k-labels-idx1-ubyte", np.arange(10))


def test_fashion_mnist_from_a_folder(tmp_path):
    write_idx_folder(tmp_path)
    data = load_dataset(f"fashion_mnist:{tmp_path}")
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10
    assert data.class_names[0] == "t-shirt/top"


def test_mnist_from_a_folder_has_digit_classes(tmp_path):
    write_idx_folder(tmp_path, compressed=False)
    data = load_dataset(f"mnist:{tmp_path}")
    assert data.input_shape == (28, 28, 1) and data.x_train.dtype == np.uint8 and data.value_range == (0.0, 255.0)
    assert data.class_names == tuple(str(digit) for digit in range(10))
    assert len(data.x_test) == 10 and list(data.y_test) == list(range(10))


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("mnist", "Received `--data mnist` without a folder"),
        ("mnist:{}", "MNIST not found in {} (missing train-images-idx3-ubyte, train-labels-idx1-ubyte"),
    ],
)
def test_mnist_without_its_files_says_what_to_pass(tmp_path, spec, expected):
    with pytest.raises(InputError) as raised:
        load_dataset(spec.format(tmp_path))
    assert expected.format(tmp_path) in str(raised.value) and "--data mnist:DIR" in str(raised.value)


def test_fashion_mnist_absent_says_how_to_get_it(tmp_path):
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        load_dataset(f"fashion_mnist:{tmp_path}")


def test_image_folder(tmp_path):
    from edgedistill._keras import tf

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(5):
            image = rng.integers(0, 255, (12, 12, 1), dtype=np.uint8)
            (tmp_path / label / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())
    data = load_dataset(f"images:{tmp_path}")
    assert data.class_names == ("cat", "dog")
    assert data.input_shape == (12, 12, 1) and data.x_train.dtype == np.uint8  # the images' own size and bytes
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 10


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x_train": np.zeros((4, 2, 2, 1, 1))}, r"shape \(4, 2, 2, 1, 1\); expected"),
        ({"y_train": np.array([0, 1, -1, 0])}, "label -1"),
        ({"y_train": np.array([0, 1])}, "2 labels for 4 images"),
        ({"x_train": np.full((4, 2, 2), np.nan)}, "NaN"),
        ({"x_train": np.full((4, 2, 2), 1e30)}, "values up to 1e"),
        ({"y_test": np.array([0, 12])}, "label.s. 12 that no training sample has"),
        ({"x_train": np.zeros((0, 2, 2)), "y_train": np.zeros(0, dtype=int)}, "x_train is empty"),
    ],
)
def test_bad_npz_data(tmp_path, arrays, message):
    base = {
        "x_train": np.zeros((4, 2, 2)),
        "y_train": np.array([0, 1, 0, 1]),
        "x_test": np.zeros((2, 2, 2)),
        "y_test": np.array([0, 1]),
    }
    path = write_npz(tmp_path / "d.npz", **{**base, **arrays})
    with pytest.raises(InputError, match=message):
        load_dataset(f"npz:{path}")


def test_unknown_data_set_lists_valid_names():
    with pytest.raises(
        InputError, match="Unknown data set 'cifar'. Expected one of: audio, digits, fashion_mnist, images, mnist, npz"
    ):
        load_dataset("cifar")


def test_no_training_sample_left_after_the_validation_split(tmp_path):
    path = write_npz(
        tmp_path / "d.npz",
        x_train=np.zeros((2, 2, 2)),
        y_train=np.array([0, 1]),
        x_test=np.zeros((2, 2, 2)),
        y_test=np.array([0, 1]),
    )
    with pytest.raises(InputError, match="leave none after holding out 2 for validation"):
        load_dataset(f"npz:{path}", validation_fraction=0.9)


def test_npz_object_array_is_refused_by_name(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(
        path,
        x_train=np.array([np.zeros(3), np.zeros(2)], dtype=object),
        y_train=np.array([0, 1]),
        x_test=np.zeros((2, 3)),
        y_test=np.array([0, 1]),
    )
    with pytest.raises(InputError, match="x_train is an array of Python objects"):
        load_dataset(f"npz:{path}")


def test_a_text_file_named_npz_says_it_is_not_an_archive(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("hello")
    with pytest.raises(InputError, match=r"not a NumPy .npz archive \(not a zip file; it starts with b'hello'\)"):
        load_dataset(f"npz:{path}")


def test_max_train_samples_zero_is_refused():
    with pytest.raises(InputError, match="max_train_samples"):
        load_dataset("digits", max_train_samples=0)


def _npz_with(tmp_path, **changes):
    base = {
        "x_train": np.zeros((20, 4, 4), np.uint8),
        "y_train": np.arange(20) % 2,
        "x_test": np.zeros((4, 4, 4), np.uint8),
        "y_test": np.arange(4) % 2,
    }
    path = tmp_path / "d.npz"
    np.savez(path, **{**base, **changes})
    return f"npz:{path}"


def _text_npz(tmp_path):
    (tmp_path / "t.npz").write_text("hello")
    return f"npz:{tmp_path / 't.npz'}"


@pytest.mark.parametrize(
    "make, extra, fragment",
    [
        (
            lambda t: _npz_with(t, y_test=np.array([0, 1, 12, 1])),
            [],
            "label(s) 12 that no training sample has",
        ),  # issue 12, item 7
        (lambda t: _npz_with(t, x_train=np.zeros((0, 4, 4), np.uint8), y_train=np.zeros(0, int)), [], "x_train is empty"),
        (lambda t: "digits", ["--max-train-samples", "0"], "max_train_samples"),
        (lambda t: _npz_with(t, x_train=np.array([np.zeros(2)] * 20 + [None], dtype=object)[:20]), [], "array of Python objects"),
        (_text_npz, [], "not a NumPy .npz archive (not a zip file; it starts with b'hello')"),
        (lambda t: _npz_with(t, x_train=np.full((20, 4, 4), 1e30)), [], "values up to 1e+30"),
    ],
    ids=[
        "test-label-outside-training",
        "empty-training-set",
        "max-train-samples-0",
        "object-array",
        "text-file-npz",
        "pixels-1e30",
    ],
)
def test_bad_data_through_the_command_line(tmp_path, make, extra, fragment):
    """Issue 12 items 7 and 13: one Error: line and exit 2, before anything is trained."""
    from conftest import invoke

    result = invoke("run", "--data", make(tmp_path), *extra, "--output-dir", tmp_path / "r")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("max_train_samples", [0, -1])
def test_max_train_samples_is_checked_for_audio_folders_too(tmp_path, max_train_samples):
    """audio:DIR has its own loader: a bad max_train_samples once gave an empty (0) or shortened (-1) training split."""
    with pytest.raises(InputError, match="`max_train_samples` must be >= 1"):
        load_dataset(f"audio:{tmp_path}", max_train_samples=max_train_samples)
