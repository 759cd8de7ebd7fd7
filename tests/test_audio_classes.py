"""The _silence_ and _unknown_ classes of audio:DIR (edgedistill.audio.extra_classes, --audio-silence-fraction,
--audio-unknown-dir): class order and counts per split, quiet silence from the noise folder, the seeded 80/20
unknown split, bad inputs (exit 2, one line, nothing written), streaming that never detects them, one whole run.

Data: the tone folders of tests/test_audio.py (8 kHz, 0.5 s clips: fast); "unknown words" are tones of other
pitches; the streaming test uses the hand-built tone classifier of tests/test_streaming.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import invoke
from tests.test_audio import SMALL, _error_lines, _load, _tone, _write, tone_dir  # noqa: F401  (tone_dir: a fixture)

SMALL_OPTIONS = {"audio_sample_rate": 8000, "audio_clip_ms": 500, "audio_channels": 16}
UNKNOWN_TONES = (550.0, 800.0, 2200.0)  # "other words": neither the low (300 Hz) nor the high (1400 Hz) keyword


@pytest.fixture(scope="session")
def unknown_dir(tmp_path_factory) -> Path:
    """15 tone clips of other pitches, some in sub-folders, and a text file that is skipped."""
    folder, rng = tmp_path_factory.mktemp("unknown"), np.random.default_rng(2)
    for index in range(15):
        sub = ("", "more", "more/deeper")[index % 3]
        _write(folder / sub / f"word_{index}.wav", _tone(UNKNOWN_TONES[index % 3], 8000, rng.uniform(0.2, 0.45), rng), 8000)
    (folder / "README.txt").write_text("not audio: skipped")
    return folder


def _silence_index(data) -> int:
    return data.class_names.index("_silence_")


def _dbfs(clips: np.ndarray) -> np.ndarray:
    return 20 * np.log10(np.sqrt(np.mean(clips.astype(np.float64) ** 2, axis=1)) / 32768.0)


# ---------------------------------------------------------------------------------------
# Classes, counts, splits


def test_class_order_counts_per_split_and_keyword_splits_unchanged(tone_dir, unknown_dir):  # noqa: F811
    plain = _load(f"audio:{tone_dir}", **SMALL_OPTIONS)
    data = _load(f"audio:{tone_dir}", audio_silence_fraction=0.5, audio_unknown_dir=str(unknown_dir), **SMALL_OPTIONS)
    assert data.class_names == ("high", "low", "_silence_", "_unknown_") and data.num_classes == 4
    keyword_counts = {"train": len(plain.x_train), "validation": len(plain.x_val), "test": len(plain.x_test)}  # 18 / 2 / 4
    added = data.audio.summary()["added_classes"]
    assert {split: added["_silence_"][split] for split in keyword_counts} == {
        s: round(0.5 * n) for s, n in keyword_counts.items()
    }
    # 15 files: 3 test (20 %), 12 left: 1 validation (10 %), 11 train
    assert added["_unknown_"] == {"train": 11, "validation": 1, "test": 3, "files_available": 15}
    for y, split in ((data.y_train, "train"), (data.y_val, "validation"), (data.y_test, "test")):
        assert np.bincount(y, minlength=4)[2:].tolist() == [added["_silence_"][split], added["_unknown_"][split]]
    # the keyword clips come first and are those of a run without the new classes, bit for bit
    for x, y, base_x, base_y in (
        (data.x_train, data.y_train, plain.x_train, plain.y_train),
        (data.x_val, data.y_val, plain.x_val, plain.y_val),
        (data.x_test, data.y_test, plain.x_test, plain.y_test),
    ):
        assert np.array_equal(x[: len(base_x)], base_x) and np.array_equal(y[: len(base_y)], base_y)
    # the raw test audio (the micro export's test vectors) holds the new clips too, in the order of x_test
    assert len(data.audio.test_clips) == len(data.x_test) == 4 + 2 + 3
    assert data.audio.summary()["class_names"] == ["high", "low", "_silence_", "_unknown_"]


def test_augmented_copies_include_the_new_classes(tone_dir, unknown_dir):  # noqa: F811
    data = _load(
        f"audio:{tone_dir}",
        audio_silence_fraction=0.5,
        audio_unknown_dir=str(unknown_dir),
        audio_augment_copies=2,
        **SMALL_OPTIONS,
    )
    originals = len(data.x_train) // 3
    assert data.audio.num_augmented == 2 * originals
    assert np.array_equal(data.y_train[originals:], np.tile(data.y_train[:originals], 2))
    assert set(data.y_train[originals:].tolist()) == {0, 1, 2, 3}


def test_silence_is_quiet_seeded_and_from_the_noise_folder(tone_dir, tmp_path):  # noqa: F811
    """With --audio-noise-dir (a 1 kHz hum at 16 kHz, resampled) every non-zero silence clip is that hum,
    at -70 to -30 dBFS; the same seed gives the same clips, another seed others."""
    hum = 12000 * np.sin(2 * np.pi * 1000.0 * np.arange(16000) / 16000)
    _write(tmp_path / "noise" / "hum.wav", np.round(hum).astype(np.int16), 16000)
    options = {"audio_silence_fraction": 1.0, "audio_noise_dir": str(tmp_path / "noise"), **SMALL_OPTIONS}
    data = _load(f"audio:{tone_dir}", **options)
    clips = data.audio.test_clips[data.y_test == _silence_index(data)]
    loud = clips[np.abs(clips).max(axis=1) > 0]
    assert len(clips) == 4 and len(loud) >= 2
    assert np.all((_dbfs(loud) > -70.5) & (_dbfs(loud) < -29.5))
    spectrum = np.abs(np.fft.rfft(loud.astype(np.float64), axis=1))
    assert np.all(np.argmax(spectrum, axis=1) * 8000 / clips.shape[1] == 1000.0)  # the hum, not white or pink noise
    again, other = _load(f"audio:{tone_dir}", **options), _load(f"audio:{tone_dir}", seed=1, **options)
    assert np.array_equal(again.x_train, data.x_train)
    assert not np.array_equal(other.audio.test_clips[other.y_test == 2], clips)


def test_silence_levels_and_digital_zeros():
    from edgedistill.audio.augment import generated_noise
    from edgedistill.audio.extra_classes import silence_clips

    rng = np.random.default_rng(0)
    clips = silence_clips(2000, generated_noise(8000, rng), 800, rng)
    zeros = ~np.any(clips, axis=1)
    assert clips.dtype == np.int16 and 0.07 < zeros.mean() < 0.13
    levels = _dbfs(clips[~zeros])
    assert -70.5 < levels.min() < -68 and -32 < levels.max() < -29.5  # log-uniform: the whole range is used
    assert abs(np.median(levels) + 50) < 2


def test_unknown_files_split_80_20_seeded_and_deterministic():
    from edgedistill.audio.extra_classes import split_unknown_files

    paths = [Path(f"word_{index:02d}.wav") for index in range(50)]
    split = split_unknown_files(paths, fraction=1.0, validation_fraction=0.1, seed=0)
    assert {name: len(files) for name, files in split.items()} == {"train": 36, "validation": 4, "test": 10}
    assert sorted(sum(split.values(), [])) == paths  # disjoint, and every file used
    assert split == split_unknown_files(paths, fraction=1.0, validation_fraction=0.1, seed=0)
    assert split["test"] != split_unknown_files(paths, fraction=1.0, validation_fraction=0.1, seed=1)["test"]
    half = split_unknown_files(paths, fraction=0.5, validation_fraction=0.1, seed=0)
    assert sum(map(len, half.values())) == 25 and len(half["test"]) == 5
    assert split_unknown_files(paths, fraction=0.5, validation_fraction=0.1, seed=0) == half


def test_unknown_folder_is_searched_recursively(tone_dir, unknown_dir):  # noqa: F811
    from edgedistill.audio.extra_classes import find_unknown_files

    files = find_unknown_files(unknown_dir)
    assert len(files) == 15 and {p.parent.name for p in files} == {unknown_dir.name, "more", "deeper"}
    data = _load(f"audio:{tone_dir}", audio_unknown_dir=str(unknown_dir), audio_unknown_fraction=0.4, **SMALL_OPTIONS)
    assert data.class_names == ("high", "low", "_unknown_")
    assert data.audio.summary()["added_classes"]["_unknown_"] == {"train": 4, "validation": 1, "test": 1, "files_available": 15}


# ---------------------------------------------------------------------------------------
# Bad input: exit 2, one Error line, nothing written


def _keyword_named(tmp_path: Path, name: str) -> Path:
    rng, folder = np.random.default_rng(0), tmp_path / "keywords"
    for label, frequency in (("low", 300.0), (name, 1400.0)):
        for index in range(3):
            _write(folder / label / f"{index}.wav", _tone(frequency, 8000, 0.3, rng), 8000)
    return folder


def _unknown_with(tmp_path: Path, write) -> Path:
    folder = tmp_path / "other_words"
    _write(folder / "good.wav", _tone(550.0, 8000, 0.3, np.random.default_rng(0)), 8000)
    write(folder / "sub" / "bad.wav")
    return folder


def _text(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("hello, I am text")


def test_a_data_class_named_silence_is_kept_as_it_is_without_the_option(tmp_path):
    """A folder prepared as speech_commands' (its own _silence_ clips) loads as is: nothing added, nothing refused."""
    data = _load(f"audio:{_keyword_named(tmp_path, '_silence_')}", **SMALL_OPTIONS)
    assert data.class_names == ("_silence_", "low") and "added_classes" not in data.audio.summary()


BAD_INPUTS = {
    # case: (keyword folder or None for tone_dir, options, the error's words)
    "missing_unknown_dir": (None, lambda t: ["--audio-unknown-dir", t / "nowhere"], "is not a folder"),
    "empty_unknown_dir": (None, lambda t: ["--audio-unknown-dir", (t / "empty").mkdir() or t / "empty"], "holds no .wav files"),
    "keyword_named_unknown": (
        lambda t: _keyword_named(t, "_unknown_"),
        lambda t: ["--audio-unknown-dir", _unknown_with(t, _text)],
        "already have a class '_unknown_'",
    ),
    "keyword_named_silence": (
        lambda t: _keyword_named(t, "_silence_"),
        lambda t: ["--audio-silence-fraction", "0.1"],
        "already have a class '_silence_'",
    ),
    "not_a_wav_in_unknown_dir": (None, lambda t: ["--audio-unknown-dir", _unknown_with(t, _text)], "Cannot read"),
    "stereo_in_unknown_dir": (
        None,
        lambda t: ["--audio-unknown-dir", _unknown_with(t, lambda p: _write(p, np.zeros((800, 2), dtype=np.int16), 8000))],
        "2 channels; expected mono",
    ),
    "silence_fraction_above_1": (None, lambda t: ["--audio-silence-fraction", "1.5"], "must be in [0, 1]"),
    "silence_fraction_negative": (None, lambda t: ["--audio-silence-fraction", "-0.1"], "must be in [0, 1]"),
    "unknown_fraction_0": (None, lambda t: ["--audio-unknown-fraction", "0"], "must be in (0, 1]"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(case, tone_dir, tmp_path):  # noqa: F811
    make_folder, options, message = BAD_INPUTS[case]
    folder = make_folder(tmp_path) if make_folder else tone_dir
    output = tmp_path / "out" / "teacher.keras"
    result = invoke("teacher", "--data", f"audio:{folder}", *SMALL, *options(tmp_path), "-o", output)
    assert result.exit_code == 2, result.output
    errors = _error_lines(result)
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output and not output.parent.exists()
    if case.endswith("in_unknown_dir"):
        assert str(tmp_path / "other_words" / "sub" / "bad.wav") in errors[0]


# ---------------------------------------------------------------------------------------
# Streaming: a winning _silence_ or _unknown_ is never a detection


def test_winning_silence_or_unknown_is_never_detected_nor_a_false_accept():
    from edgedistill.audio.streaming import Event, Posteriors, Smoothing, det_table, detect, evaluate

    # a window every 100 ms: _silence_ wins, then the keyword "a" (1.5-1.9 s), then _unknown_ (a distractor word)
    rows = [[0.02, 0.02, 0.94, 0.02]] * 5 + [[0.95, 0.01, 0.02, 0.02]] * 5 + [[0.01, 0.01, 0.02, 0.96]] * 10
    rows += [[0.01, 0.01, 0.97, 0.01]] * 10
    names = ("a", "b", "_silence_", "_unknown_")
    posteriors = Posteriors(
        times_s=1.0 + 0.1 * np.arange(len(rows)), scores=np.array(rows), class_names=names, hop_ms=100, duration_s=3600.0
    )
    smoothing = Smoothing(average_ms=300, threshold=0.5, suppression_ms=500, minimum_count=2)
    detections = detect(posteriors, smoothing)
    assert [d.label for d in detections] == ["a"]
    summary = evaluate(detections, [Event(1.2, "a")], duration_s=3600.0, tolerance_s=1.0).summary()
    assert summary["hits"] == 1 and summary["false_accepts"] == 0
    assert all(row["false_accepts"] == 0 for row in det_table(posteriors, [Event(1.2, "a")], smoothing, tolerance_s=1.0))
    # the same posteriors under keyword names: the distractor and the noise become false accepts
    keywords = Posteriors(
        times_s=posteriors.times_s, scores=posteriors.scores, class_names=("a", "b", "c", "d"), hop_ms=100, duration_s=3600.0
    )
    assert [d.label for d in detect(keywords, smoothing)] == ["c", "a", "d", "d", "c"]


def test_events_name_keywords_only(tmp_path):
    from edgedistill.audio.streaming import Event, keyword_classes, read_events
    from edgedistill.errors import InputError

    names = ("a", "b", "_silence_", "_unknown_")
    assert keyword_classes(names) == ("a", "b")
    path = tmp_path / "events.csv"
    path.write_text("time_s,label\n1.0,a\n")
    assert read_events(path, class_names=names) == [Event(1.0, "a")]
    path.write_text("time_s,label\n1.0,a\n2.0,_unknown_\n")
    with pytest.raises(InputError, match="line 3: label '_unknown_' is not a keyword"):
        read_events(path, class_names=names)


@pytest.fixture(scope="module")
def listen_run(tmp_path_factory) -> Path:
    """A run folder of the 2-output tone classifier of tests/test_streaming.py whose report names its
    outputs low and _unknown_ (as a run with --audio-unknown-dir records them)."""
    from edgedistill.audio.frontend import build_frontend_model
    from edgedistill.micro import export_micro
    from edgedistill.micro.frontend import FrontEndExport
    from tests.test_streaming import _frontend, _tone_classifier

    folder = tmp_path_factory.mktemp("listen_classes") / "run"
    folder.mkdir()
    model = _tone_classifier(_frontend())
    (folder / "student_int8.tflite").write_bytes(model)
    export_micro(
        model, folder / "micro", front_end=FrontEndExport(build_frontend_model(_frontend())), model_name="student_int8.tflite"
    )
    (folder / "report.json").write_text(json.dumps({"data": {"audio": {"class_names": ["low", "_unknown_"]}}}))
    return folder


def test_listen_takes_the_class_names_of_the_run_and_never_reports_unknown(listen_run, tmp_path):
    from tests.test_streaming import LISTEN, TONE_EVENTS, _recording
    from tests.test_streaming import _write as write_recording

    recording = write_recording(tmp_path / "recording.wav", _recording())
    events = tmp_path / "events.csv"
    events.write_text("".join(f"{t},{label}\n" for t, label in TONE_EVENTS if label == "low"))
    options = list(LISTEN[2:])  # without --class-names: the report's
    result = invoke("listen", listen_run, recording, "--events", events, *options, "-o", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["class_names"] == ["low", "_unknown_"] and data["keyword_classes"] == ["low"]
    assert [d["label"] for d in data["detections"]] == ["low"] * 3  # the "high" tones win _unknown_: no detection
    assert data["evaluation"]["hits"] == 3 and data["evaluation"]["false_accepts"] == 0
    events.write_text("2.0,low\n5.5,_unknown_\n")
    result = invoke("listen", listen_run, recording, "--events", events, *options)
    assert result.exit_code == 2 and "label '_unknown_' is not a keyword" in _error_lines(result)[0]


# ---------------------------------------------------------------------------------------
# The whole flow


def test_run_with_silence_and_unknown_exports_a_model_with_two_more_outputs(tone_dir, unknown_dir, tmp_path):  # noqa: F811
    from edgedistill.tflite_model import read_model_info

    result = invoke(
        "run",
        "--data",
        f"audio:{tone_dir}",
        *SMALL,
        "--audio-silence-fraction",
        "0.2",
        "--audio-unknown-dir",
        unknown_dir,
        "--teacher-preset",
        "dscnn_kws",
        "--teacher-width",
        "0.125",
        "--student-preset",
        "dscnn_kws",
        "--student-width",
        "0.125",
        "--teacher-epochs",
        "1",
        "--epochs",
        "1",
        "--qat-epochs",
        "0",
        "--no-bench",
        "--verbose",
        "0",
        "--no-chance-gate",
        "--num-test-vectors",
        "2",
        "--output-dir",
        tmp_path,
        "--run-name",
        "kws",
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "kws"
    report = json.loads((run / "report.json").read_text())
    assert report["data"]["num_classes"] == 4
    assert report["data"]["audio"]["class_names"] == ["high", "low", "_silence_", "_unknown_"]
    assert report["data"]["audio"]["added_classes"]["_silence_"]["test"] == 1  # round(0.2 x 4)
    manifest = json.loads((run / "micro" / "micro_export.json").read_text())
    assert manifest["output_shape"][-1] == 4 and (run / "micro" / "front_end.tflite").is_file()
    assert read_model_info((run / manifest["model_file"]).read_bytes()).outputs[0].shape[-1] == 4
