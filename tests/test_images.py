"""Image folders as users have them: colour, size, class order, corrupt files, missing classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgedistill.data import load_dataset
from edgedistill.errors import InputError

from conftest import invoke

CLASSES = ("cat", "dog", "emu")


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)
    return path


def image_folder(root: Path, *, size=(10, 12), channels=3, per_class=(6, 2), classes=CLASSES, suffix=".png", seed=0) -> Path:
    """root/train/<class>/*.png and root/test/<class>/*.png of random colour (or grey) images."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "test"), per_class):
        for name in classes:
            for index in range(count):
                pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
                write_image(root / split / name / f"{index:03d}{suffix}", pixels)
    return root


def assert_one_line_error(result, fragment: str) -> str:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert fragment in errors[0], errors[0]
    return errors[0]


def test_colour_images_stay_rgb_bytes_at_their_own_size(tmp_path):
    data = load_dataset(f"images:{image_folder(tmp_path)}")
    assert data.input_shape == (10, 12, 3) and data.x_train.dtype == np.uint8
    assert data.class_names == CLASSES and data.value_range == (0.0, 255.0)
    assert "RGB pixels" in data.values["description"]
    first = np.asarray(Image.open(tmp_path / "test" / "cat" / "000.png"))
    np.testing.assert_array_equal(data.x_test[0], first)  # the very bytes of the file


def test_grayscale_folder_and_color_mode_option(tmp_path):
    from edgedistill.config import DataConfig

    root = image_folder(tmp_path, channels=1)
    assert load_dataset(f"images:{root}").input_shape == (10, 12, 1)
    forced = load_dataset(f"images:{root}", options=DataConfig(data=f"images:{root}", color_mode="rgb", image_size="8x8"))
    assert forced.input_shape == (8, 8, 3)
    assert forced.notes["converted"] == 24 and forced.notes["resized"] == 24


def test_mixed_sizes_and_modes_are_handled_and_counted(tmp_path):
    root = image_folder(tmp_path)
    write_image(root / "train" / "cat" / "big.png", np.zeros((20, 20, 3), dtype=np.uint8))
    write_image(root / "train" / "dog" / "grey.png", np.full((10, 12, 1), 77, dtype=np.uint8))
    Image.fromarray(np.zeros((10, 12, 4), dtype=np.uint8)).save(root / "train" / "emu" / "alpha.png")
    data = load_dataset(f"images:{root}")
    assert data.input_shape == (10, 12, 3)  # the most common size; colour because most files are colour
    assert data.notes["resized"] == 1 and data.notes["converted"] == 2 and data.notes["sizes_found"] == 2


def test_class_order_from_a_list_or_a_labels_file(tmp_path):
    from edgedistill.config import DataConfig

    root = image_folder(tmp_path)
    order = "emu,cat,dog"
    data = load_dataset(f"images:{root}", options=DataConfig(data=f"images:{root}", class_names=order))
    assert data.class_names == ("emu", "cat", "dog")
    labels = tmp_path / "labels.txt"
    labels.write_text("dog\nemu\ncat\n")
    data = load_dataset(f"images:{root}", options=DataConfig(data=f"images:{root}", class_names=str(labels)))
    assert data.class_names == ("dog", "emu", "cat")
    first_dog = np.asarray(Image.open(root / "test" / "dog" / "000.png"))
    assert data.y_test[np.flatnonzero([np.array_equal(x, first_dog) for x in data.x_test])[0]] == 0
    with pytest.raises(InputError, match="no folder for class.es. owl"):
        load_dataset(f"images:{root}", options=DataConfig(data=f"images:{root}", class_names="cat,dog,emu,owl"))


def test_a_single_folder_is_split_into_train_and_test(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for index in range(10):
            write_image(tmp_path / name / f"{index}.jpg", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    data = load_dataset(f"images:{tmp_path}")
    assert len(data.x_test) == 4 and len(data.x_train) + len(data.x_val) == 16 and data.input_shape == (8, 8, 3)


# ---------------------------------------------------------------------------------------
# Bad input through the command line: exit 2 and one Error: line, before anything is trained


def test_corrupt_image_files_are_named(tmp_path):
    root = image_folder(tmp_path)
    (root / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = (root / "train" / "cat" / "000.png").read_bytes()
    (root / "test" / "emu" / "cut.png").write_bytes(good[: len(good) // 2])
    error = assert_one_line_error(invoke("run", "--data", f"images:{root}", "--output-dir", tmp_path / "r"), "Cannot decode 2")
    assert "broken.png" in error and "cut.png" in error


def test_truncated_jpeg_is_named(tmp_path):
    root = image_folder(tmp_path, suffix=".jpg")
    good = (root / "test" / "emu" / "000.jpg").read_bytes()
    (root / "test" / "emu" / "000.jpg").write_bytes(good[: len(good) // 2])
    error = assert_one_line_error(invoke("run", "--data", f"images:{root}", "--output-dir", tmp_path / "r"), "Cannot decode")
    assert "000.jpg" in error and "emu" in error


def test_class_folder_missing_from_test_is_named(tmp_path):
    root = image_folder(tmp_path)
    for path in (root / "test" / "dog").iterdir():
        path.unlink()
    (root / "test" / "dog").rmdir()
    assert_one_line_error(invoke("run", "--data", f"images:{root}", "--output-dir", tmp_path / "r"), "no folder for class 'dog'")


@pytest.fixture(scope="module")
def rgb_teacher_file(tmp_path_factory) -> Path:
    """An untrained RGB 16x16 classifier of the 3 classes (its input shape is what these tests need)."""
    from edgedistill.models import build_model

    path = tmp_path_factory.mktemp("teachers") / "rgb16.keras"
    build_model("cnn", (16, 16, 3), 3, width=0.25, name="teacher").save(path)
    return path


def test_rgb_teacher_with_grayscale_data_names_both_shapes_and_the_option(tmp_path, rgb_teacher_file):
    root = image_folder(tmp_path, size=(16, 16), channels=1)
    error = assert_one_line_error(
        invoke("run", "--data", f"images:{root}", "--teacher", rgb_teacher_file, "--output-dir", tmp_path / "r"),
        "expects inputs of shape 16x16x3",
    )
    assert "16x16x1" in error and "--color-mode rgb" in error


def test_teacher_of_another_size_than_the_data_names_both_shapes_and_the_option(tmp_path, rgb_teacher_file):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
        y_train=np.arange(30) % 3,
        x_test=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(6) % 3,
    )
    error = assert_one_line_error(
        invoke("run", "--data", f"npz:{path}", "--teacher", rgb_teacher_file, "--output-dir", tmp_path / "r"),
        "expects inputs of shape 16x16x3 but the data",
    )
    assert "32x32x3" in error and "--image-size" in error


def test_image_size_defaults_to_the_teachers_input(tmp_path, rgb_teacher_file):
    from edgedistill import stages
    from edgedistill.config import DataConfig

    root = image_folder(tmp_path, size=(24, 20))
    data, summary = stages.load_data(DataConfig(data=f"images:{root}"), teacher_file=str(rgb_teacher_file))
    assert data.input_shape == (16, 16, 3) and summary["loading"]["resized"] == 24
