"""Data set loaders: the embedded default, Fashion-MNIST, ``.npz`` files and image folders.

A data set is named by a string users type:

- ``digits``: scikit-learn's 8x8 hand-written digits (1,797 images, ships with scikit-learn);
- ``fashion_mnist`` or ``fashion_mnist:DIR``: the IDX files of the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``) or of a folder;
- ``npz:PATH``: a NumPy archive with ``x_train, y_train, x_test, y_test``;
- ``images:DIR``: one sub-folder per class (or ``DIR/train`` and ``DIR/test`` each so);
- ``audio:DIR``: WAV clips -> log-mel features of the device's audio front end (:mod:`edgedistill.audio`).

Every loader returns a :class:`Dataset` of float32 NHWC images in [0, 1] and int labels.
The validation split is taken from train; the test split is only for the final evaluation.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgedistill.errors import InputError
from edgedistill.registry import Registry

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclasses.dataclass
class Dataset:
    """Train / validation / test splits of one data set.

    Images are float32 NHWC in [0, 1]; labels are int64 class indices in [0, num_classes).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = ()
    audio: Any = None  # audio:DIR only: edgedistill.audio.AudioData (the front end, the raw test clips)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    def summary(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "num_train": int(len(self.x_train)),
            "num_val": int(len(self.x_val)),
            "num_test": int(len(self.x_test)),
        }


# A loader takes its argument (the text after "name:", or None) and returns raw splits
# (x_train, y_train, x_test, y_test, class_names); load_dataset() validates and splits.
RawSplits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]
LOADERS: Registry[Callable[[str | None], RawSplits]] = Registry("data set")


@LOADERS.register("digits")
def _load_digits(argument: str | None) -> RawSplits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # pixel values are 0..16
    labels = digits.target.astype(np.int64)
    # A fixed, stratified test split so every run evaluates on the same 360 images.
    rng = np.random.default_rng(20150309)
    test_index = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:36] for c in range(10)]
    )
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_index] = True
    names = tuple(str(c) for c in range(10))
    return images[~is_test], labels[~is_test], images[is_test], labels[is_test], names


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InputError(f"{path} is not an IDX file (bad magic number). Expected MNIST-style IDX data.")
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if array.size != int(np.prod(shape)):
        raise InputError(f"{path} is truncated: header says shape {shape}, file holds {array.size} values.")
    return array.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).exists():
            return folder / name
    return None


@LOADERS.register("fashion_mnist")
def _load_fashion_mnist(argument: str | None) -> RawSplits:
    folder = Path(argument).expanduser() if argument else FASHION_MNIST_DIR
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = [_find_idx(folder, stem) for stem in stems]
    if any(path is None for path in paths):
        missing = [stem for stem, path in zip(stems, paths) if path is None]
        raise InputError(
            f"Fashion-MNIST not found in {folder} (missing {', '.join(missing)}). "
            "Install it with `apt-get install dataset-fashion-mnist`, or pass "
            "`--data fashion_mnist:DIR` with a folder holding the four IDX files (.gz or not)."
        )
    x_train, y_train, x_test, y_test = (_read_idx(path) for path in paths)  # type: ignore[arg-type]
    return (
        x_train.astype(np.float32) / 255.0,
        y_train.astype(np.int64),
        x_test.astype(np.float32) / 255.0,
        y_test.astype(np.int64),
        FASHION_MNIST_CLASSES,
    )


@LOADERS.register("npz")
def _load_npz(argument: str | None) -> RawSplits:
    if not argument:
        raise InputError("`npz` needs a path: `--data npz:PATH` (an archive with x_train, y_train, x_test, y_test).")
    path = Path(argument).expanduser()
    if not path.is_file():
        raise InputError(f"Data file not found: {path}. Expected an .npz with x_train, y_train, x_test, y_test.")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # zipfile / pickle / value errors: all mean "not a usable npz"
        raise InputError(f"Cannot read {path} as a NumPy .npz archive ({error}).") from None
    with archive:
        keys = ("x_train", "y_train", "x_test", "y_test")
        missing = [key for key in keys if key not in archive.files]
        if missing:
            raise InputError(
                f"{path} lacks {', '.join(missing)}. Received arrays: {', '.join(archive.files) or 'none'}; "
                "expected x_train, y_train, x_test, y_test."
            )
        x_train, y_train, x_test, y_test = (archive[key] for key in keys)
    scale = 255.0 if np.issubdtype(x_train.dtype, np.integer) else 1.0
    return (
        x_train.astype(np.float32) / scale,
        y_train,
        x_test.astype(np.float32) / scale,
        y_test,
        (),
    )


def _read_image_folder(folder: Path, image_size: tuple[int, int], class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    from edgedistill._keras import tf

    images, labels = [], []
    for label, name in enumerate(class_names):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files:
            try:
                image = tf.io.decode_image(tf.io.read_file(str(path)), channels=1, expand_animations=False)
            except Exception as error:
                raise InputError(f"Cannot decode image {path} ({error.__class__.__name__}). Remove or convert it.") from None
            image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, image_size)
            images.append(image.numpy())
            labels.append(label)
    if not images:
        raise InputError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}.")
    return np.stack(images).astype(np.float32), np.asarray(labels, dtype=np.int64)


@LOADERS.register("images")
def _load_images(argument: str | None) -> RawSplits:
    if not argument:
        raise InputError("`images` needs a folder: `--data images:DIR` with one sub-folder per class.")
    folder = Path(argument).expanduser()
    if not folder.is_dir():
        raise InputError(f"Image folder not found: {folder}. Expected a folder with one sub-folder per class.")
    size = int(os.environ.get("EDGEDISTILL_IMAGE_SIZE", "32"))
    split_folders = (folder / "train", folder / "test")
    if all(p.is_dir() for p in split_folders):
        class_names = tuple(sorted(p.name for p in split_folders[0].iterdir() if p.is_dir()))
        x_train, y_train = _read_image_folder(split_folders[0], (size, size), class_names)
        x_test, y_test = _read_image_folder(split_folders[1], (size, size), class_names)
        return x_train, y_train, x_test, y_test, class_names
    class_names = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    if len(class_names) < 2:
        raise InputError(
            f"{folder} has {len(class_names)} class sub-folder(s); expected at least 2 (one per class), "
            "or `train/` and `test/` folders each holding one sub-folder per class."
        )
    x, y = _read_image_folder(folder, (size, size), class_names)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    num_test = max(1, len(x) // 5)
    test, train = order[:num_test], order[num_test:]
    return x[train], y[train], x[test], y[test], class_names


@LOADERS.register("audio")
def _load_audio(argument: str | None, *, spec: str = "audio", **settings: Any) -> Dataset:
    """``audio:DIR``: WAV clips -> features of the device front end (:mod:`edgedistill.audio`, imported when used)."""
    from edgedistill.audio import load_audio_splits

    splits = load_audio_splits(argument, **settings)
    arrays = {name: getattr(splits, name) for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    names = splits.class_names
    return Dataset(name=spec, **arrays, num_classes=len(names), class_names=names, audio=splits.audio)


def _as_images(x: np.ndarray, what: str, source: str) -> np.ndarray:
    if x.ndim == 3:  # (N, H, W): one channel
        x = x[..., None]
    if x.ndim == 2:  # (N, features): treat as a 1 x F image so the presets still apply
        x = x[:, None, :, None]
    if x.ndim != 4:
        raise InputError(
            f"{source}: {what} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, features)."
        )
    if not np.all(np.isfinite(x)):
        raise InputError(f"{source}: {what} contains NaN or infinite values; clean the data first.")
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_labels(y: np.ndarray, num_samples: int, what: str, source: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if len(y) != num_samples:
        raise InputError(f"{source}: {what} has {len(y)} labels for {num_samples} images; they must match.")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise InputError(f"{source}: {what} holds non-integer values; expected class indices 0..K-1.")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise InputError(f"{source}: {what} has label {int(y.min())}; labels must be class indices >= 0.")
    return y


def load_dataset(
    spec: str = "digits",
    *,
    validation_fraction: float = 0.1,
    seed: int = 0,
    max_train_samples: int | None = None,
    options: Any = None,
) -> Dataset:
    """Load a data set by name and split a validation set off its training split.

    Args:
        spec: ``digits``, ``fashion_mnist[:DIR]``, ``npz:PATH`` or ``images:DIR``.
        validation_fraction: fraction of the training split held out for validation
            (early stopping, calibration); the test split is never used for training.
        seed: seed of the validation split.
        max_train_samples: keep at most this many training images (quick runs).
        options: the loader's options (the ``DataConfig``; ``audio:DIR`` reads its ``audio_*`` fields).

    Example::

        data = load_dataset("digits")
        data.x_train.shape  # (1293, 8, 8, 1)
    """
    name, _, argument = spec.partition(":")
    loader = LOADERS.get(name)
    if not 0.0 < validation_fraction < 1.0:
        raise InputError(
            f"`validation_fraction` must be in (0, 1). Received: validation_fraction={validation_fraction}."
        )
    if name == "audio":  # its own split rules (held-out speakers), augmentation after the validation split
        return _load_audio(argument or None, validation_fraction=validation_fraction, seed=seed,
                           max_train_samples=max_train_samples, options=options, spec=spec)  # fmt: skip
    x_train, y_train, x_test, y_test, class_names = loader(argument or None)
    x_train = _as_images(np.asarray(x_train), "x_train", spec)
    x_test = _as_images(np.asarray(x_test), "x_test", spec)
    y_train = _as_labels(y_train, len(x_train), "y_train", spec)
    y_test = _as_labels(y_test, len(x_test), "y_test", spec)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InputError(f"{spec}: x_train images are {x_train.shape[1:]} but x_test images are {x_test.shape[1:]}; they must match.")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if class_names and num_classes > len(class_names):
        raise InputError(f"{spec}: label {num_classes - 1} is out of range for {len(class_names)} classes.")
    num_classes = max(num_classes, len(class_names))
    if num_classes < 2:
        raise InputError(f"{spec}: found {num_classes} class; classification needs at least 2.")

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_train))
    num_val = max(1, int(round(len(x_train) * validation_fraction)))
    val_index, train_index = order[:num_val], order[num_val:]
    if max_train_samples is not None:
        train_index = train_index[:max_train_samples]
    return Dataset(
        name=spec,
        x_train=x_train[train_index],
        y_train=y_train[train_index],
        x_val=x_train[val_index],
        y_val=y_train[val_index],
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        class_names=tuple(class_names) or tuple(str(c) for c in range(num_classes)),
    )


def dataset_names() -> list[str]:
    return LOADERS.names()


__all__ = ["Dataset", "load_dataset", "dataset_names", "LOADERS"]
