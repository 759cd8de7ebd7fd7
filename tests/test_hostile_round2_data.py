"""Issue 23, part B: hostile data, images, audio, listen, micro, preprocessing, verify and multi_worker set-ups.

Each case ends in one `Error:` line naming what was received and the fix (exit 2 for bad input, 1 for a stage
that cannot run), or, where a correct reading exists (16-bit PNGs, CMYK, alpha, EXIF rotation, a BOM), in the
right pixels. The multi_worker cases use TF_CONFIG on 127.0.0.1 only, with a deadline of seconds.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, write_npz
from test_hostile_inputs import assert_one_line_error

PYTHON = sys.executable
EDGEDISTILL = [PYTHON, "-c", "from edgedistill.cli import main; main()"]

MAKE_MODELS = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np, tensorflow as tf, tf_keras as keras
    out = sys.argv[1]
    keras.utils.set_random_seed(0)
    inputs = keras.layers.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(10)(flat), keras.layers.Dense(3)(flat)])
    converter = tf.lite.TFLiteConverter.from_keras_model(two)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.random.rand(1, 8, 8, 1).astype("float32") * 16] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    open(os.path.join(out, "two_outputs_int8.tflite"), "wb").write(converter.convert())
    for name, shape, classes in (("other_shape", (4, 4, 1), 10), ("gray", (8, 8, 1), 10), ("three_classes", (8, 8, 1), 3)):
        layers = [keras.layers.Input(shape), keras.layers.Flatten(), keras.layers.Dense(classes, activation="softmax")]
        model = keras.Sequential(layers)
        model.save(os.path.join(out, f"{name}.keras"))
    """
)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("round2_models")
    subprocess.run([PYTHON, "-c", MAKE_MODELS, str(folder)], check=True, capture_output=True, timeout=300)
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tf_config(ports: list[int], index: int = 0) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


# ---------------------------------------------------------------------------------------------------------------
# Sizes from a file are bounded before anything is allocated for them


def test_label_of_a_billion_is_refused_before_class_names_are_built(tmp_path):
    y = np.arange(20) % 3
    y[4] = 999_999_999
    path = write_npz(
        tmp_path / "big_label.npz", x_train=np.zeros((20, 4, 4)), y_train=y, x_test=np.zeros((3, 4, 4)), y_test=np.arange(3)
    )
    result = invoke("teacher", "--data", f"npz:{path}", "-o", tmp_path / "t.keras", "--epochs", "1")
    assert_one_line_error(result, 2, "label 999999999", "100000 classes", "y_train")
    assert not (tmp_path / "t.keras").exists()


def _npz_with_lying_header(path: Path) -> Path:
    """A compressed .npz whose x_train header announces 10^12 float64 values but stores 16."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.zeros((4, 4)))
    member = buffer.getvalue().replace(b"(4, 4)", b"(1000000, 1000000)", 1)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", member)
        for name, array in (("y_train", np.zeros(4, np.int64)), ("x_test", np.zeros((2, 4))), ("y_test", np.zeros(2, np.int64))):
            stream = io.BytesIO()
            np.lib.format.write_array(stream, array)
            archive.writestr(f"{name}.npy", stream.getvalue())
    return path


def _idx_with_255_dimensions(folder: Path) -> Path:
    folder.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / stem).write_bytes(b"\x00\x00\x08\xff" + b"\x00" * 8)
    return folder


def _corrupt_gz_idx(folder: Path) -> Path:
    folder.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / f"{stem}.gz").write_bytes(b"\x1f\x8b\x08\x00cut short")
    return folder


@pytest.mark.parametrize(
    "make, spec, fragments",
    [
        (
            lambda t: _npz_with_lying_header(t / "lying.npz"),
            "npz:{}",
            ("x_train announces shape (1000000, 1000000)", "truncated"),
        ),
        (lambda t: _idx_with_255_dimensions(t / "idx"), "fashion_mnist:{}", ("255 dimension(s)", "truncated")),
        (lambda t: _corrupt_gz_idx(t / "gz"), "fashion_mnist:{}", ("train-images-idx3-ubyte.gz", "download it again")),
        (lambda t: t, "npz:{}", ("is a folder", "--data images:DIR")),
    ],
    ids=["npz-header-announces-8-TB", "idx-header-announces-255-dimensions", "idx-gz-corrupt", "npz-is-a-folder"],
)
def test_headers_that_announce_more_than_the_file_holds(tmp_path, make, spec, fragments):
    result = invoke("teacher", "--data", spec.format(make(tmp_path)), "-o", tmp_path / "t.keras", "--epochs", "1")
    assert_one_line_error(result, 2, *fragments)


_BASE = {
    "x_train": np.random.default_rng(0).random((20, 4, 4)),
    "y_train": np.arange(20) % 2,
    "x_test": np.random.default_rng(1).random((4, 4, 4)),
    "y_test": np.arange(4) % 2,
}


@pytest.mark.parametrize(
    "arrays, fragments",
    [
        ({"x_train": _BASE["x_train"] + 1j}, ("complex128 (complex numbers)", "real values")),
        ({"y_train": np.array(["cat", "dog"] * 10)}, ("dtype <U3", "'cat'", "np.unique")),
        ({"y_train": np.zeros((20, 2, 2))}, ("shape (20, 2, 2)", "(20,) class indices")),
        ({"x_train": np.zeros((20, 4, 0)), "x_test": np.zeros((4, 4, 0))}, ("samples of size 0",)),
        ({"y_train": np.full(20, 1e20)}, ("label 1e+20", "100000 classes")),
    ],
    ids=["complex-pixels", "string-labels", "3d-labels", "zero-width-images", "float-label-1e20"],
)
def test_npz_arrays_of_odd_dtypes_and_shapes(tmp_path, arrays, fragments):
    path = write_npz(tmp_path / "odd.npz", **{**_BASE, **arrays})
    result = invoke("teacher", "--data", f"npz:{path}", "-o", tmp_path / "t.keras", "--epochs", "1")
    assert_one_line_error(result, 2, *fragments)


# ---------------------------------------------------------------------------------------------------------------
# Images as cameras and editors write them


def _image_folder(tmp_path: Path, files: dict[str, object]) -> Path:
    """Two classes; class `a` holds the images under test (one copy in train, one in test), class `b` grey squares."""
    from PIL import Image

    root = tmp_path / "images"
    for split in ("train", "test"):
        for name, image in files.items():
            (root / split / "a").mkdir(parents=True, exist_ok=True)
            save = getattr(image, "save_as", None)
            (save or (lambda path, im=image: im.save(path)))(root / split / "a" / name)
        (root / split / "b").mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 100).save(root / split / "b" / "grey.png")
    return root


def _load_images(root: Path, **options):
    from edgedistill.images import load_image_folders

    return load_image_folders(root, **options)


def _pixels_of(splits, label: int = 0) -> np.ndarray:
    return splits.x_train[splits.y_train == label]


def _png16():
    from PIL import Image

    return Image.fromarray(np.full((8, 8), 0xC000, dtype=np.uint16))  # mode I;16: 49152 of 65535 -> 192 of 255


def _cmyk_red():
    from PIL import Image

    return Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # cyan 0, magenta and yellow full: red


def _rgba_half_transparent():
    from PIL import Image

    image = Image.new("RGBA", (8, 8), (200, 10, 10, 255))
    image.paste((255, 255, 255, 0), (0, 0, 4, 8))  # left half: white but fully transparent
    return image


def _palette_with_transparency():
    from PIL import Image

    image = Image.new("P", (8, 8), 1)
    image.putpalette([255, 255, 255, 0, 0, 255] + [0] * 762)  # index 0 white, index 1 blue
    image.paste(0, (0, 0, 8, 4))  # top half: index 0, declared transparent below
    image.info["transparency"] = 0

    class Saved:
        @staticmethod
        def save_as(path):
            image.save(path, transparency=0)

    return Saved()


def _exif_rotated():
    """A 6x10 (h x w) landscape picture stored with EXIF orientation 6: displayed as 10x6, the red stripe on top."""
    from PIL import Image

    stored = Image.new("RGB", (10, 6), (0, 0, 0))
    stored.paste((255, 0, 0), (0, 0, 2, 6))  # left stripe: after a 90 degree clockwise turn, it is the top rows
    exif = stored.getexif()
    exif[0x0112] = 6

    class Saved:
        @staticmethod
        def save_as(path):
            stored.save(path, exif=exif)

    return Saved()


def test_16_bit_grayscale_png_keeps_its_values(tmp_path):
    splits = _load_images(_image_folder(tmp_path, {"deep.png": _png16()}))
    assert splits.notes["color_mode"] == "grayscale" and splits.notes["from_16_bit"] == 2
    assert np.all(_pixels_of(splits) == 192)  # was 255 everywhere: Pillow clips I;16 to L


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    splits = _load_images(_image_folder(tmp_path, {"print.jpg": _cmyk_red()}))
    red = _pixels_of(splits)[0].reshape(-1, 3).mean(axis=0)
    assert splits.notes["color_mode"] == "rgb" and red[0] > 200 and red[1] < 50 and red[2] < 50, red


@pytest.mark.parametrize(
    "name, make, transparent_region, opaque_region, opaque_colour",
    [
        ("alpha.png", _rgba_half_transparent, np.s_[:, :4], np.s_[:, 4:], (200, 10, 10)),
        ("palette.png", _palette_with_transparency, np.s_[:4, :], np.s_[4:, :], (0, 0, 255)),
    ],
    ids=["rgba", "palette-with-transparency"],
)
def test_transparent_pixels_are_flattened_over_black(tmp_path, name, make, transparent_region, opaque_region, opaque_colour):
    splits = _load_images(_image_folder(tmp_path, {name: make()}))
    image = _pixels_of(splits)[0]
    assert splits.notes["alpha_flattened"] == 2
    assert np.all(image[transparent_region] == 0), image[..., 0]
    assert np.all(image[opaque_region] == np.array(opaque_colour, dtype=np.uint8))


def test_grayscale_with_alpha_and_plain_palette(tmp_path):
    from PIL import Image

    la = Image.new("LA", (8, 8), (180, 255))
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([30, 60, 90] + [0] * 765)
    splits = _load_images(_image_folder(tmp_path, {"la.png": la, "palette.gif": palette}), color_mode="rgb")
    la_pixels, palette_pixels = _pixels_of(splits)[0], _pixels_of(splits)[1]
    assert np.all(la_pixels == 180) and np.all(palette_pixels == np.array([30, 60, 90], dtype=np.uint8))


def test_exif_rotated_photo_is_turned_upright(tmp_path):
    splits = _load_images(_image_folder(tmp_path, {"phone.jpg": _exif_rotated()}), image_size=(10, 6))
    image = _pixels_of(splits)[0]
    assert splits.notes["rotated"] == 2 and image.shape == (10, 6, 3)
    assert image[:2, :, 0].mean() > 200 and image[3:, :, 0].mean() < 40  # the stripe on top, as displayed


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"], ids=["utf-8-bom", "utf-16-notepad"])
def test_labels_file_with_a_byte_order_mark(tmp_path, encoding):
    from edgedistill.images import parse_class_names

    labels = tmp_path / "labels.txt"
    labels.write_bytes("cat\r\ndog\r\n".encode(encoding))
    assert parse_class_names(str(labels)) == ("cat", "dog")


def test_webp_is_read_and_unknown_formats_are_counted_in_a_warning(tmp_path, caplog):
    from PIL import Image

    root = _image_folder(tmp_path, {"photo.webp": Image.new("RGB", (8, 8), (0, 200, 0))})
    (root / "train" / "a" / "photo.heic").write_bytes(b"not read")
    with caplog.at_level(logging.WARNING):
        splits = _load_images(root)
    assert len(_pixels_of(splits)) == 1 and _pixels_of(splits)[0][..., 1].mean() > 150
    warnings = [r.getMessage() for r in caplog.records if "are not read" in r.getMessage()]
    assert len(warnings) == 1 and "1 file(s)" in warnings[0] and ".heic" in warnings[0]


@pytest.mark.parametrize(
    "limit, fragment",
    [(1000, "4,096 pixels"), (3000, "4,096 pixels")],
    ids=["beyond-twice-the-limit-error", "beyond-the-limit-warning"],
)
def test_decompression_bomb_is_one_error_line_and_the_limit_stays(tmp_path, monkeypatch, limit, fragment):
    from PIL import Image

    root = _image_folder(tmp_path, {"huge.png": Image.new("L", (64, 64), 7)})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    result = invoke("teacher", "--data", f"images:{root}", "-o", tmp_path / "t.keras", "--epochs", "1")
    assert_one_line_error(result, 2, "huge.png", fragment, f"limit is {limit:,}", "Downscale")
    assert Image.MAX_IMAGE_PIXELS == limit


def test_default_image_size_beyond_the_bound_asks_for_image_size(tmp_path, monkeypatch):
    from PIL import Image

    import edgedistill.images

    monkeypatch.setattr(edgedistill.images, "MAX_IMAGE_SIDE", 32)
    root = _image_folder(tmp_path, {"big.png": Image.new("L", (40, 40), 7), "big2.png": Image.new("L", (40, 40), 9)})
    result = invoke("teacher", "--data", f"images:{root}", "-o", tmp_path / "t.keras", "--epochs", "1")
    assert_one_line_error(result, 2, "40x40", "--image-size")


# ---------------------------------------------------------------------------------------------------------------
# Audio as recorders write it


def _wav(path: Path, samples: np.ndarray, rate: int = 8000, subtype: str = "PCM_16") -> Path:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, subtype=subtype)
    return path


def _tone(rate: int = 8000, seconds: float = 0.3, frequency: float = 440.0) -> np.ndarray:
    return (9000 * np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate)).astype(np.int16)


def _with_list_chunk(path: Path) -> Path:
    """A WAV with a LIST/INFO chunk before `data`, as recorders and editors write them."""
    _wav(path, _tone())
    content = path.read_bytes()
    info = b"INFOISFT" + (10).to_bytes(4, "little") + b"recorder\x00\x00"
    chunk = b"LIST" + len(info).to_bytes(4, "little") + info
    at = content.index(b"data")
    content = content[:at] + chunk + content[at:]
    path.write_bytes(content[:4] + (len(content) - 8).to_bytes(4, "little") + content[8:])
    return path


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: _wav(p, _tone().astype(np.float32) / 32768, subtype="FLOAT"), "expected 16-bit PCM"),
        (lambda p: _wav(p, _tone().astype(np.int32) << 16, subtype="PCM_24"), "expected 16-bit PCM"),
        (lambda p: _wav(p, np.stack([_tone(), _tone()], axis=1)), "2 channels; expected mono"),
        (lambda p: _wav(p, _tone(), subtype="PCM_U8"), "expected 16-bit PCM"),
    ],
    ids=["float32", "24-bit", "stereo", "8-bit"],
)
def test_recorder_encodings_that_the_front_end_cannot_take_are_refused_with_their_fix(tmp_path, make, fragment):
    from edgedistill.audio.wav import read_wav
    from edgedistill.errors import InputError

    path = make(tmp_path / "clip.wav")
    with pytest.raises(InputError, match=fragment) as error:
        read_wav(path)
    assert "sox" in str(error.value)


def test_wav_claiming_a_rate_of_two_gigahertz(tmp_path):
    from edgedistill.audio.wav import read_clip, ClipFormat
    from edgedistill.errors import InputError

    path = _wav(tmp_path / "odd.wav", _tone(), rate=2_000_000_000)
    with pytest.raises(InputError, match="2000000000 Hz; recorders write at most 768000 Hz"):
        read_clip(path, ClipFormat(8000, 4000))


def test_recorder_encodings_that_are_read_correctly(tmp_path):
    from edgedistill.audio.wav import ClipFormat, missing_bytes, read_clip, read_wav

    samples, rate = read_wav(_with_list_chunk(tmp_path / "list.wav"))
    assert rate == 8000 and np.array_equal(samples, _tone()) and missing_bytes(tmp_path / "list.wav") == 0
    clip = read_clip(_wav(tmp_path / "cd.wav", _tone(rate=44100, seconds=0.25), rate=44100), ClipFormat(8000, 4000))
    assert clip.shape == (4000,) and 5000 < np.abs(clip).max() < 10000  # resampled, not silenced nor clipped


def test_an_hour_long_clip_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import edgedistill.audio.wav as wav
    from edgedistill.errors import InputError

    monkeypatch.setattr(wav, "MAX_CLIP_SECONDS", 1.0)  # the bound, scaled down: a 2 s file stands for a long recording
    path = _wav(tmp_path / "long.wav", _tone(seconds=2.0))
    with pytest.raises(InputError, match="is 2 s long.*edgedistill listen"):
        wav.read_clip(path, wav.ClipFormat(8000, 4000, trim=True))


def test_truncated_wav_is_counted_in_a_warning_not_padded_silently(tmp_path, caplog):
    from edgedistill.audio.loader import load_audio_splits
    from edgedistill.config import DataConfig

    for label, frequency in (("low", 300.0), ("high", 1400.0)):
        for index in range(6):
            _wav(tmp_path / "clips" / label / f"{index}.wav", _tone(frequency=frequency, seconds=0.4))
    cut = tmp_path / "clips" / "low" / "0.wav"
    content = cut.read_bytes()
    cut.write_bytes(content[: len(content) // 3])
    options = DataConfig(data=f"audio:{tmp_path / 'clips'}", audio_sample_rate=8000, audio_clip_ms=500, audio_channels=16)
    with caplog.at_level(logging.WARNING):
        splits = load_audio_splits(str(tmp_path / "clips"), options=options)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 12 .wav files" in warnings[0] and str(cut) in warnings[0]
    assert splits.audio.summary()["truncated_files"] == [str(cut)]


def test_label_pattern_on_a_folder_of_class_sub_folders(tmp_path):
    for label in ("yes", "no"):
        _wav(tmp_path / "kws" / label / "a.wav", _tone())
    result = invoke(
        "teacher",
        "--data",
        f"audio:{tmp_path / 'kws'}",
        "--audio-label-pattern",
        "{label}_{speaker}.wav",
        "-o",
        tmp_path / "t.keras",
        "--epochs",
        "1",
    )
    assert_one_line_error(result, 2, "--audio-label-pattern", "sub-folders (no, yes)", "Leave --audio-label-pattern out")


def test_label_pattern_with_files_also_in_sub_folders_says_they_are_not_read(tmp_path, caplog):
    from edgedistill.audio.loader import find_files

    for name in ("yes_a_0.wav", "no_a_0.wav"):
        _wav(tmp_path / "kws" / name, _tone())
    _wav(tmp_path / "kws" / "extra" / "yes_b_0.wav", _tone())
    with caplog.at_level(logging.WARNING):
        files = find_files(tmp_path / "kws", "{label}_{speaker}_{index}.wav")
    assert sorted(f.label for f in files) == ["no", "yes"]
    assert any("the 1 in its sub-folders are not read" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "is empty (0 bytes)"),
        (b"\n  \n", "is empty (4 bytes)"),
        (b"\x00\x01\x02binary", "binary data"),
        (b"\xff\xfe\x00garbage", "Cannot read the events file"),
        (b"time_s,label\n1.0\n", "has 1 field(s); expected 2"),
    ],
    ids=["zero-bytes", "blank-lines", "binary", "not-utf8", "short-row"],
)
def test_events_file_empty_or_malformed_is_one_clear_error(tmp_path, content, fragment):
    from edgedistill.audio.streaming import read_events
    from edgedistill.errors import InputError

    path = tmp_path / "events.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        read_events(path, class_names=("yes", "no"), duration_s=10.0)


def test_events_file_with_only_its_header_is_a_recording_without_keywords(tmp_path):
    from edgedistill.audio.streaming import read_events

    path = tmp_path / "events.csv"
    path.write_text("time_s,label\n")
    assert read_events(path, class_names=("yes", "no"), duration_s=10.0) == []


# ---------------------------------------------------------------------------------------------------------------
# micro, preprocessing and verify on models that do not fit


def test_micro_refuses_a_second_output_naming_both(tmp_path, models):
    output = tmp_path / "micro"
    result = invoke("micro", models / "two_outputs_int8.tflite", "-o", output)
    assert_one_line_error(result, 2, "has 2 outputs", "[1, 10]", "[1, 3]", "single output")
    assert not output.exists()


def test_listen_refuses_a_model_with_a_second_output(models):
    from edgedistill.audio.frontend import FrontEnd, build_frontend_model
    from edgedistill.audio.streaming import StreamModel
    from edgedistill.errors import InputError

    frontend = build_frontend_model(FrontEnd(sample_rate=8000, clip_ms=500, num_channels=16))
    model = (models / "two_outputs_int8.tflite").read_bytes()
    with pytest.raises(InputError, match=r"has 2 outputs \(.*\[1, 10\].*\[1, 3\]\)"):
        StreamModel(frontend, model, arena_bytes=64 * 1024, model_source="two.tflite")


def test_standardize_with_the_wrong_number_of_channels(tmp_path, models):
    output = tmp_path / "student.keras"
    result = invoke(
        "distill",
        "--teacher",
        models / "gray.keras",
        "--teacher-preprocessing",
        "standardize:mean=1|2|3,std=1|1|1",
        "--epochs",
        "1",
        "-o",
        output,
    )
    assert_one_line_error(result, 2, "3 per-channel values", "1 channel(s)", "standardize:mean=127.5,std=64")
    assert not output.exists()


def test_standardize_applied_to_data_of_other_channels_is_an_input_error():
    from edgedistill.errors import InputError
    from edgedistill.preprocessing import parse_preprocessing

    preprocessing = parse_preprocessing("standardize:mean=1|2,std=1|1", value_range=(0.0, 255.0))
    with pytest.raises(InputError, match="2 per-channel values.*3 channel"):
        preprocessing.apply(np.zeros((2, 4, 4, 3)))


@pytest.mark.parametrize(
    "reference, fragments",
    [
        ("other_shape.keras", ("reference takes inputs of shape (4, 4, 1)", "(8, 8, 1)")),
        ("three_classes.keras", ("reference has 3 outputs", "up to 9 (10 classes)")),
    ],
    ids=["other-input-shape", "fewer-outputs-than-classes"],
)
def test_verify_reference_that_does_not_fit_the_data(models, int8_file, reference, fragments):
    result = invoke("verify", int8_file, "--reference", models / reference)
    assert_one_line_error(result, 2, *fragments)


# ---------------------------------------------------------------------------------------------------------------
# multi_worker: TF_CONFIG checked, unreachable peers named within a deadline, signals obeyed


@pytest.mark.parametrize(
    "tf_config, fragments",
    [
        ("not json", ("TF_CONFIG is not JSON", "received 'not json'")),
        ('{"task": {"type": "worker", "index": 0}}', ('has no "cluster"',)),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', ('has no "task"',)),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 5}}', ("task.index is 5", "index 0..0")),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}', ("task.type is 'chief'",)),
        ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', ("'localhost', not an address",)),
        ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', ("cluster.worker is []",)),
    ],
    ids=["not-json", "no-cluster", "no-task", "index-out-of-range", "type-not-in-cluster", "no-port", "empty-job"],
)
def test_malformed_tf_config_is_one_error_line(tmp_path, monkeypatch, tf_config, fragments):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    result = invoke("teacher", "--strategy", "multi_worker", "-o", tmp_path / "t.keras", "--epochs", "1")
    assert_one_line_error(result, 2, *fragments)


def test_unreachable_peer_fails_within_the_deadline_naming_it(tmp_path, monkeypatch):
    closed = _free_port()
    monkeypatch.setenv("TF_CONFIG", _tf_config([_free_port(), closed]))
    monkeypatch.setenv("EDGEDISTILL_PEER_TIMEOUT_S", "2")
    started = time.perf_counter()
    result = invoke("teacher", "--strategy", "multi_worker", "-o", tmp_path / "t.keras", "--epochs", "1")
    assert_one_line_error(
        result, 1, f"worker 1 (127.0.0.1:{closed}) did not answer within 2 s", "TF_CONFIG=", "EDGEDISTILL_PEER_TIMEOUT_S"
    )
    assert time.perf_counter() - started < 60 and not (tmp_path / "t.keras").exists()


def test_bad_peer_timeout_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", _tf_config([_free_port(), _free_port()]))
    monkeypatch.setenv("EDGEDISTILL_PEER_TIMEOUT_S", "forever")
    result = invoke("teacher", "--strategy", "multi_worker", "-o", tmp_path / "t.keras", "--epochs", "1")
    assert_one_line_error(result, 2, "EDGEDISTILL_PEER_TIMEOUT_S", "'forever'")


def _sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    "signal_number, exit_codes", [(signal.SIGTERM, (-signal.SIGTERM,)), (signal.SIGINT, (130,))], ids=["SIGTERM", "Ctrl-C"]
)
def test_waiting_for_peers_stops_on_a_signal(tmp_path, signal_number, exit_codes):
    environment = {**os.environ, "TF_CONFIG": _tf_config([_free_port(), _free_port()]), "EDGEDISTILL_PEER_TIMEOUT_S": "600"}
    process = subprocess.Popen(
        [*EDGEDISTILL, "teacher", "--strategy", "multi_worker", "-o", str(tmp_path / "t.keras")],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A suite started in the background by a non-interactive shell (`nohup ... &`) inherits SIGINT ignored, and
        # Python then never turns Ctrl-C into KeyboardInterrupt: the child gets the disposition a terminal gives it.
        preexec_fn=_sigint_as_in_a_terminal,
    )
    try:
        seen = ""
        deadline = time.monotonic() + 180
        while "waiting up to 600 s" not in seen and time.monotonic() < deadline:
            seen += process.stdout.readline()  # type: ignore[union-attr]
        assert "waiting up to 600 s" in seen and "worker 1 (127.0.0.1:" in seen, seen
        process.send_signal(signal_number)
        stopped = time.monotonic()
        output, _ = process.communicate(timeout=120)
        assert process.returncode in exit_codes, output
        # well before the 600 s deadline: the signal stopped it (exiting with TensorFlow loaded takes a few seconds
        # idle; more than 30 s once, in a full suite beside a training on the 2 cores)
        assert time.monotonic() - stopped < 120 and "Traceback" not in output, output
    finally:
        if process.poll() is None:
            process.kill()


def test_two_workers_that_start_apart_find_each_other():
    ports = [_free_port(), _free_port()]
    code = "import sys; from edgedistill.strategy import wait_for_peers; wait_for_peers(sys.argv[1], timeout_s=60)"
    first = subprocess.Popen([PYTHON, "-c", code, _tf_config(ports, 0)], stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # the second worker starts later, as on a real cluster
    second = subprocess.run([PYTHON, "-c", code, _tf_config(ports, 1)], capture_output=True, text=True, timeout=90)
    assert second.returncode == 0, second.stderr
    assert first.wait(timeout=90) == 0, first.stderr.read()  # type: ignore[union-attr]
