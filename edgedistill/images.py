"""Image folders as users have them: ``--data images:DIR``.

Layouts: ``DIR/train/<class>/*`` and ``DIR/test/<class>/*``, or ``DIR/<class>/*`` (a fixed 20 % of
the images become the test split). Images keep their colour (``--color-mode rgb|grayscale``;
default: RGB when any file is colour) and their bytes (``uint8``, 0..255). They are brought to one
size (``--image-size HxW``; default: the teacher's input size when there is a teacher file, else the
most common size among the files); how many were resized or converted is counted and reported.
Classes are ordered by folder name, or as ``--class-names`` (a comma-separated list, or a labels
file with one name per line) says. A file that cannot be decoded is reported by name.

Decoded images go into one ``uint8`` array; above :data:`MAX_IN_MEMORY_BYTES` it is a memory-mapped
file (unlinked at once: nothing stays on disk) and training reads it batch by batch.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.errors import InputError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
COLOR_MODES = ("rgb", "grayscale")
# Integer grayscale wider than a byte (16-bit PNGs): scaled to 8 bits by their high byte.
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_EXIF_ORIENTATION = 0x0112
# The default image size (the most common one) is bounded like --image-size: larger would size a huge array.
MAX_IMAGE_SIDE = 4096
# Decoded images larger than this live in a memory-mapped file rather than in RAM.
MAX_IN_MEMORY_BYTES = 2 * 1024**3
_TEST_FRACTION = 0.2


@dataclasses.dataclass
class ImageSplits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    notes: dict


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """``32x32``, ``96x128`` (height x width) or ``32`` -> ``(height, width)``."""
    if text is None or str(text).strip() == "":
        return None
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 1 or max(size) > 4096:
        raise InputError(f"`image_size` must be HxW in pixels (e.g. 32x32 or 96x96). Received: image_size={text!r}.")
    return size[0], size[1]


def parse_class_names(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated list, or the path of a labels file (one name per line, or comma-separated)."""
    if text is None or str(text).strip() == "":
        return None
    candidate = Path(str(text)).expanduser()
    if candidate.is_file():
        raw = candidate.read_bytes()
        # A BOM is no part of the first name; Windows Notepad's "Unicode" is UTF-16 with its own BOM.
        encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
        content = raw.decode(encoding, errors="replace")
        names = [n.strip() for n in (content.splitlines() if "\n" in content.strip() else content.split(","))]
    else:
        names = [n.strip() for n in str(text).split(",")]
    names = [n for n in names if n]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if len(names) < 2 or duplicates:
        raise InputError(
            f"`class_names` must name at least 2 distinct classes (a comma-separated list or a labels file). "
            f"Received: {text!r}" + (f" (repeated: {', '.join(duplicates)})." if duplicates else ".")
        )
    return tuple(names)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_order(folder: Path, class_names: tuple[str, ...] | None) -> tuple[str, ...]:
    found = _class_folders(folder)
    if class_names is None:
        if len(found) < 2:
            raise InputError(
                f"{folder} has {len(found)} class sub-folder(s); expected at least 2 (one per class), "
                "or `train/` and `test/` folders each holding one sub-folder per class."
            )
        return tuple(found)
    missing = [name for name in class_names if name not in found]
    extra = [name for name in found if name not in class_names]
    if missing or extra:
        problems = ([f"no folder for class(es) {', '.join(missing)}"] if missing else []) + (
            [f"folder(s) {', '.join(extra)} not in --class-names"] if extra else []
        )
        raise InputError(
            f"{folder}: {'; '.join(problems)}. --class-names lists {', '.join(class_names)}; "
            "name every class folder, in the teacher's output order."
        )
    return class_names


def _skipped_files(folder: Path) -> list[Path]:
    """Files of a class folder that are not read (another format, e.g. .webp, .heic, .tif): said, not dropped silently."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_SUFFIXES
    )


def _listing(folder: Path, class_names: tuple[str, ...], *, split: str) -> list[tuple[Path, int]]:
    files: list[tuple[Path, int]] = []
    skipped: list[Path] = []
    for label, name in enumerate(class_names):
        found = _image_files(folder / name)
        skipped += _skipped_files(folder / name)
        if not found and split == "train":
            raise InputError(
                f"Class folder {folder / name} holds no images ({', '.join(IMAGE_SUFFIXES)}). Add images or remove it."
            )
        files.extend((path, label) for path in found)
    if skipped:
        suffixes = sorted({p.suffix.lower() or "(none)" for p in skipped})
        logger.warning(
            "images: %d file(s) of %s are not read: only %s are images here (found %s, e.g. %s); convert them "
            "to PNG or JPEG to use them.",
            len(skipped),
            folder,
            ", ".join(IMAGE_SUFFIXES),
            ", ".join(suffixes),
            skipped[0],
        )
    return files


def _check_test_classes(root: Path, class_names: tuple[str, ...]) -> None:
    test_folders = set(_class_folders(root / "test"))
    missing = [name for name in class_names if name not in test_folders]
    if missing:
        raise InputError(
            f"{root / 'test'} has no folder for class {', '.join(repr(m) for m in missing)} (it is in {root / 'train'}). "
            "Add test images of that class, or remove the class from train/."
        )
    extra = sorted(test_folders - set(class_names))
    if extra:
        raise InputError(
            f"{root / 'test'} has class folder(s) {', '.join(repr(e) for e in extra)} that {root / 'train'} lacks: "
            "the model cannot predict a class it never trained on. Remove them or add training images."
        )


@contextlib.contextmanager
def _open(path: Path):
    """``Image.open`` with Pillow's decompression-bomb limit kept (not raised) and made an :class:`InputError`:
    its warning (above the limit) is an error too, so no image over ``Image.MAX_IMAGE_PIXELS`` is ever decoded."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                yield image
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise InputError(
                f"{path} is too large to decode safely ({_pixel_count(str(error))} pixels; Pillow's "
                f"decompression-bomb limit is {Image.MAX_IMAGE_PIXELS:,}). Downscale it (e.g. `convert {path.name} "
                "-resize 2048x2048 small.png`) or remove it."
            ) from None


def _pixel_count(message: str) -> str:
    """The pixel count of Pillow's decompression-bomb message ("Image size (N pixels) exceeds ...")."""
    import re

    found = re.search(r"\((\d+) pixels\)", message)
    return f"{int(found.group(1)):,}" if found else "too many"


def _upright_size(image) -> tuple[int, int]:
    """(height, width) as displayed: an EXIF orientation of 5-8 (a phone held upright) swaps the stored sides."""
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    return (image.width, image.height) if orientation in (5, 6, 7, 8) else (image.height, image.width)


def _probe(files: list[tuple[Path, int]]) -> tuple[collections.Counter, collections.Counter, list[str]]:
    """Sizes and modes from the file headers (fast); files that are not images at all."""
    sizes: collections.Counter = collections.Counter()
    modes: collections.Counter = collections.Counter()
    unreadable = []
    for path, _ in files:
        try:
            with _open(path) as image:
                sizes[_upright_size(image)] += 1
                modes[image.mode] += 1
        except InputError:
            raise
        except Exception:  # noqa: BLE001 - any failure means "not a readable image"
            unreadable.append(str(path))
    return sizes, modes, unreadable


def _eight_bit(image, counts: collections.Counter):
    """16-bit (and 32-bit integer) grayscale as 8-bit: the high byte, not Pillow's clip (which makes them all 255)."""
    from PIL import Image

    if image.mode not in WIDE_MODES:
        return image
    values = np.asarray(image).astype(np.int64)
    # mode "I" holds 16-bit PNGs in some Pillow versions, and 8-bit values in others: scale only what exceeds a byte
    shift = 8 if image.mode != "I" or values.max(initial=0) > 255 else 0
    counts["from_16_bit"] += int(shift > 0)
    return Image.fromarray((np.clip(values, 0, 65535) >> shift).astype(np.uint8), mode="L")


def _flatten_alpha(image, counts: collections.Counter):
    """Transparent pixels over black (their colour channels are otherwise whatever the editor left under them)."""
    from PIL import Image

    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La"):
        return image
    counts["alpha_flattened"] += 1
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _pixels(image, mode: str, size: tuple[int, int], counts: collections.Counter) -> np.ndarray:
    """One opened image as ``uint8`` pixels of ``mode`` (RGB or L) and ``size``: upright, 8-bit, alpha flattened."""
    from PIL import Image, ImageOps

    image.load()
    upright = ImageOps.exif_transpose(image)
    if upright is not image and upright.size != image.size:
        counts["rotated"] += 1
    image = _flatten_alpha(_eight_bit(upright, counts), counts)
    counts["converted"] += int(upright.mode != mode)  # whatever the route (16-bit, alpha, palette): one conversion
    if image.mode != mode:
        image = image.convert(mode)
    if (image.height, image.width) != size:
        counts["resized"] += 1
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _corrupt_error(paths: list[str]) -> InputError:
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return InputError(f"Cannot decode {len(paths)} image file(s): {shown}. Remove or re-save them, then run again.")


def allocate(shape: tuple[int, ...]) -> np.ndarray:
    """An empty uint8 array: in RAM, or a memory-mapped file above MAX_IN_MEMORY_BYTES."""
    if int(np.prod(shape)) <= MAX_IN_MEMORY_BYTES:
        return np.empty(shape, dtype=np.uint8)
    handle, name = tempfile.mkstemp(prefix="edgedistill-images-", suffix=".npy")
    os.close(handle)
    array = np.lib.format.open_memmap(name, mode="w+", dtype=np.uint8, shape=shape)
    os.unlink(name)  # the mapping stays valid; nothing is left on disk
    logger.info("%.1f GB of pixels: kept in a memory-mapped file rather than RAM", np.prod(shape) / 1e9)
    return array


def _decode(files: list[tuple[Path, int]], size: tuple[int, int], color: str, counts: collections.Counter, corrupt: list[str]):
    """``uint8 (N, H, W, C)`` images and their labels; files that cannot be decoded are added to ``corrupt``."""
    mode = "RGB" if color == "rgb" else "L"
    images = allocate((len(files), size[0], size[1], 3 if color == "rgb" else 1))
    labels = np.empty(len(files), dtype=np.int64)
    for index, (path, label) in enumerate(files):
        if str(path) in corrupt:
            continue
        try:
            with _open(path) as image:
                pixels = _pixels(image, mode, size, counts)
        except InputError:
            raise
        except Exception:  # noqa: BLE001 - truncated or corrupt data: named below
            corrupt.append(str(path))
            continue
        images[index] = pixels.reshape(images.shape[1:])
        labels[index] = label
    return images, labels


def _split_listing(
    root: Path, class_names: tuple[str, ...] | None
) -> tuple[tuple[str, ...], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """The class names and the (path, label) files of the training and test splits: the train/ and test/ folders,
    or, without them, a fixed random share of the class folders held out for testing."""
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    names = _class_order(root / "train" if split_layout else root, class_names)
    if split_layout:
        _check_test_classes(root, names)
        return names, _listing(root / "train", names, split="train"), _listing(root / "test", names, split="test")
    files = _listing(root, names, split="train")
    order = np.random.default_rng(0).permutation(len(files))
    num_test = max(1, int(len(files) * _TEST_FRACTION))
    test_files = [files[i] for i in sorted(order[:num_test])]
    train_files = [files[i] for i in sorted(order[num_test:])]
    return names, train_files, test_files


def _conversion_notes(
    num_files: int,
    size: tuple[int, int],
    color: str,
    counts: collections.Counter,
    sizes: collections.Counter,
    modes: collections.Counter,
) -> dict[str, Any]:
    """What was done to the pixels to give one size and colour mode (for the data notes), logged when anything was."""
    notes = {
        "files": num_files,
        "image_size": list(size),
        "color_mode": color,
        "resized": int(counts["resized"]),
        "converted": int(counts["converted"]),
        **{key: int(counts[key]) for key in ("from_16_bit", "alpha_flattened", "rotated") if counts[key]},
        "sizes_found": len(sizes),
        "modes_found": sorted(modes),
    }
    if counts["from_16_bit"] or counts["alpha_flattened"] or counts["rotated"]:
        logger.info(
            "images: %d 16-bit scaled to 8 bits, %d with transparency flattened over black, %d turned upright (EXIF)",
            counts["from_16_bit"],
            counts["alpha_flattened"],
            counts["rotated"],
        )
    if counts["resized"] or counts["converted"]:
        logger.info(
            "images: %d of %d resized to %dx%d, %d converted to %s (sizes found: %d, modes: %s)",
            counts["resized"],
            num_files,
            size[0],
            size[1],
            counts["converted"],
            color,
            len(sizes),
            ", ".join(sorted(modes)),
        )
    return notes


def load_image_folders(
    root: Path,
    *,
    image_size: tuple[int, int] | None = None,
    color_mode: str | None = None,
    class_names: tuple[str, ...] | None = None,
) -> ImageSplits:
    """Read ``images:DIR`` (see the module docstring) into ``uint8`` splits."""
    if not root.is_dir():
        raise InputError(f"Image folder not found: {root}. Expected a folder with one sub-folder per class.")
    names, train_files, test_files = _split_listing(root, class_names)
    every = train_files + test_files
    sizes, modes, corrupt = _probe(every)
    if not sizes:
        raise _corrupt_error(corrupt)
    size = image_size or sizes.most_common(1)[0][0]
    if max(size) > MAX_IMAGE_SIDE:
        raise InputError(
            f"{root}: most images are {size[0]}x{size[1]} pixels; training at that size needs "
            f"{size[0] * size[1] * 3 * len(every) / 1e9:.1f} GB of pixels. Pass --image-size HxW (at most "
            f"{MAX_IMAGE_SIDE} a side, e.g. 96x96) to resize them."
        )
    is_colour = any(mode not in GRAYSCALE_MODES for mode in modes)
    color = color_mode or ("rgb" if is_colour else "grayscale")
    counts: collections.Counter = collections.Counter()
    logger.info("images: decoding %d files (%s, %dx%d)", len(every), color, size[0], size[1])
    x_train, y_train = _decode(train_files, size, color, counts, corrupt)
    x_test, y_test = _decode(test_files, size, color, counts, corrupt)
    if corrupt:  # every undecodable file at once, by name
        raise _corrupt_error(corrupt)
    notes = _conversion_notes(len(every), size, color, counts, sizes, modes)
    return ImageSplits(x_train, y_train, x_test, y_test, names, notes)


__all__ = [
    "ImageSplits",
    "load_image_folders",
    "allocate",
    "parse_image_size",
    "parse_class_names",
    "IMAGE_SUFFIXES",
    "COLOR_MODES",
    "MAX_IN_MEMORY_BYTES",
]
