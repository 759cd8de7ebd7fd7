"""Keyword spotting from audio: the audio:DIR loader, the TFLM Signal-op front end, augmentation,
the front end exported with the model, and every bad input of issue 11 (exit 2, one line, nothing written).

Data: generated tones and words spoken by espeak-ng (a Debian package, scripts/install-system-deps.sh);
the FSDD tests skip when ../shared/data/fsdd is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import invoke

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
FSDD_PATTERN = "{label}_{speaker}_{index}.wav"
TONES = {"low": 300.0, "high": 1400.0}
# 8 kHz front end, 0.5 s clips: small and fast.
SMALL = ["--audio-sample-rate", "8000", "--audio-clip-ms", "500", "--audio-channels", "16"]


def _write(path: Path, samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, subtype=subtype)
    return path


def _tone(frequency: float, rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    time = np.arange(int(rate * seconds)) / rate
    signal = 9000 * np.sin(2 * np.pi * frequency * (1 + rng.uniform(-0.05, 0.05)) * time) + rng.normal(0, 300, len(time))
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="session")
def tone_dir(tmp_path_factory) -> Path:
    """Two classes of tones, one sub-folder each, 8 kHz (12 clips a class)."""
    folder, rng = tmp_path_factory.mktemp("tones"), np.random.default_rng(1)
    for name, frequency in TONES.items():
        for index in range(12):
            _write(folder / name / f"{name}_{index}.wav", _tone(frequency, 8000, rng.uniform(0.2, 0.45), rng), 8000)
    return folder


@pytest.fixture(scope="session")
def spoken_dir(tmp_path_factory) -> Path:
    """Words spoken by espeak-ng (22,050 Hz) by 4 voices at 3 speeds: {word}_{voice}_{index}.wav."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng; scripts/install-system-deps.sh)")
    folder = tmp_path_factory.mktemp("spoken")
    for word in ("yes", "no", "stop"):
        for voice, variant in enumerate(("en+m1", "en+f2", "en-us+m3", "en-gb+f4")):
            for index, speed in enumerate((120, 150, 180)):
                path = folder / f"{word}_v{voice}_{index}.wav"
                subprocess.run(["espeak-ng", "-v", variant, "-s", str(speed), "-w", str(path), word], check=True)
    return folder


def _load(spec: str, **options):
    from edgedistill.config import DataConfig
    from edgedistill.data import load_dataset

    config = DataConfig(data=spec, **options)
    return load_dataset(spec, options=config, seed=config.seed, validation_fraction=config.validation_fraction)


def _error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


# ---------------------------------------------------------------------------------------
# The front end


def test_front_end_is_tflm_signal_ops_and_runs_on_the_tflm_interpreter():
    from edgedistill.audio.frontend import FrontEnd, FrontEndRunner, build_frontend_model, read_frontend
    from edgedistill.tflite_model import read_model_info

    frontend = FrontEnd(sample_rate=8000, num_channels=20)
    content = build_frontend_model(frontend)
    info = read_model_info(content)
    assert {
        "CUSTOM:SignalWindow",
        "CUSTOM:SignalRfft",
        "CUSTOM:SignalFilterBank",
        "CUSTOM:SignalPCAN",
        "CUSTOM:SignalFilterBankLog",
    } <= set(info.ops)
    assert info.inputs[0].dtype == "int16" and info.inputs[0].shape == [1, 240] and info.outputs[0].shape == [20]
    assert read_frontend(content) == frontend
    clips = np.stack([_tone(f, 8000, 1.0, np.random.default_rng(0)) for f in (300.0, 1400.0)])
    features = FrontEndRunner(frontend).features(clips)
    assert features.shape == (2, 49, 20) and features.dtype == np.int8
    # the two tones light up different channels
    assert np.argmax(features[0].mean(axis=0)) < np.argmax(features[1].mean(axis=0))


def test_each_clip_starts_from_a_reset_front_end():
    """The noise estimate is state: a clip's features do not depend on the clip before it."""
    from edgedistill.audio.frontend import FrontEnd, FrontEndRunner

    rng = np.random.default_rng(3)
    runner = FrontEndRunner(FrontEnd(sample_rate=8000, clip_ms=500, num_channels=16))
    first, second = _tone(300.0, 8000, 0.5, rng), _tone(1400.0, 8000, 0.5, rng)
    alone = runner.features(second[None])[0]
    after = runner.features(np.stack([first, second]))[1]
    assert np.array_equal(alone, after)


def test_int8_feature_table_is_micro_speech_s_scaling_for_every_log_value():
    """The table read by GATHER equals micro_speech's int32 chain clip((f * 256 + 333) // 666 - 128) for
    every value SignalFilterBankLog can give (0..INT16_MAX; MINIMUM clamps to the table's last entry)."""
    from edgedistill.audio.frontend import FEATURE_TABLE_LAST, int8_feature_table

    log_values = np.arange(0, 32768, dtype=np.int64)
    expected = np.clip((log_values * 256 + 333) // 666 - 128, -128, 127)
    table = int8_feature_table()
    assert table.dtype == np.int8 and len(table) == FEATURE_TABLE_LAST + 1
    assert np.array_equal(table[np.minimum(log_values, FEATURE_TABLE_LAST)], expected)
    assert table[FEATURE_TABLE_LAST] == 127 and table[FEATURE_TABLE_LAST - 1] < 127  # the smallest value that saturates


@pytest.mark.tflm_source
def test_micro_speech_parameters_give_tflm_s_own_audio_preprocessor_bit_for_bit():
    """With micro_speech's parameters the builder gives the constants and outputs of TFLM's own
    audio_preprocessor_int8.tflite (tensorflow/lite/micro/examples/micro_speech, TFLM_DIR checkout)."""
    folder = os.environ.get("TFLM_DIR")
    example = Path(folder or "") / "tensorflow/lite/micro/examples/micro_speech"
    if not folder or not (example / "models/audio_preprocessor_int8.tflite").is_file():
        pytest.skip("TFLM_DIR is not set to a tflite-micro checkout with the micro_speech example")
    from edgedistill.audio.frontend import FrontEnd, FrontEndRunner, frame_clips
    from edgedistill.audio.wav import read_wav
    from edgedistill.tflm import TFLMModel

    reference = TFLMModel((example / "models/audio_preprocessor_int8.tflite").read_bytes(), arena_size=64 * 1024)
    for name in ("yes_1000ms.wav", "no_1000ms.wav"):
        samples, rate = read_wav(example / "testdata" / name)
        assert rate == 16000
        expected = reference.raw_sequence_outputs(frame_clips(samples[None, :16000], FrontEnd()))
        assert np.array_equal(FrontEndRunner(FrontEnd()).features(samples[None, :16000]), expected)


# ---------------------------------------------------------------------------------------
# The loader


def test_class_sub_folders_resample_pad_and_features(tone_dir):
    data = _load(f"audio:{tone_dir}", audio_sample_rate=8000, audio_clip_ms=500, audio_channels=16)
    assert data.class_names == ("high", "low") and data.num_classes == 2
    assert data.input_shape == (24, 16, 1) and data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() < 1.0
    assert len(data.x_test) == 4 and len(data.x_train) + len(data.x_val) == 20  # 20 % of each class is test
    clips = data.audio.test_clips
    assert clips.shape == (4, 4000) and clips.dtype == np.int16
    # short clips are centred: zeros at both ends
    assert np.all(clips[:, :100] == 0) and np.all(clips[:, -100:] == 0)


def test_files_at_a_higher_rate_are_resampled_down(tmp_path):
    rng = np.random.default_rng(0)
    for name, frequency in TONES.items():
        for index in range(5):
            _write(tmp_path / name / f"{index}.wav", _tone(frequency, 16000, 0.3, rng), 16000)
    data = _load(f"audio:{tmp_path}", audio_sample_rate=8000, audio_clip_ms=500, audio_channels=16)
    assert data.audio.test_clips.shape[1] == 4000 and len(data.x_test) == 2


def test_label_pattern_speaker_split_and_fsdd_style_index_split(tmp_path):
    rng = np.random.default_rng(0)
    for label, frequency in TONES.items():
        for speaker in ("ann", "bob", "cy"):
            for index in range(6):
                _write(tmp_path / f"{label}_{speaker}_{index}.wav", _tone(frequency, 8000, 0.3, rng), 8000)
    (tmp_path / "README.txt").write_text("not audio")
    common = {"audio_sample_rate": 8000, "audio_clip_ms": 500, "audio_channels": 16, "audio_label_pattern": FSDD_PATTERN}
    held_out = _load(f"audio:{tmp_path}", audio_test_split="speaker=cy", **common)
    assert len(held_out.x_test) == 12 and held_out.audio.test_groups == ("cy",)
    usual = _load(f"audio:{tmp_path}", audio_test_split="index<2", **common)
    assert len(usual.x_test) == 2 * 3 * 2 and len(usual.x_train) + len(usual.x_val) == 24
    assert usual.audio.test_groups == ("ann", "bob", "cy")


def test_augmented_copies_are_training_only_and_the_teacher_sees_them(tone_dir):
    plain = _load(f"audio:{tone_dir}", audio_sample_rate=8000, audio_clip_ms=500, audio_channels=16)
    augmented = _load(
        f"audio:{tone_dir}",
        audio_sample_rate=8000,
        audio_clip_ms=500,
        audio_channels=16,
        audio_augment_copies=2,
        audio_time_mask_frames=4,
        audio_frequency_mask_channels=3,
    )
    num_train = len(plain.x_train)
    assert len(augmented.x_train) == 3 * num_train and augmented.audio.num_augmented == 2 * num_train
    assert np.array_equal(augmented.x_train[:num_train], plain.x_train)
    assert np.array_equal(augmented.x_val, plain.x_val) and np.array_equal(augmented.x_test, plain.x_test)
    assert not np.array_equal(augmented.x_train[num_train : 2 * num_train], plain.x_train)
    assert np.array_equal(augmented.y_train[num_train:], np.tile(plain.y_train, 2))


def test_background_noise_from_a_folder(tone_dir, tmp_path):
    from edgedistill.errors import InputError

    rng = np.random.default_rng(5)
    _write(tmp_path / "noise" / "hum.wav", np.round(rng.normal(0, 2000, 16000)).astype(np.int16), 16000)  # resampled to 8 kHz
    common = {"audio_sample_rate": 8000, "audio_clip_ms": 500, "audio_channels": 16, "audio_augment_copies": 1}
    data = _load(f"audio:{tone_dir}", audio_noise_dir=str(tmp_path / "noise"), audio_noise_probability=1.0, **common)
    assert data.audio.num_augmented == len(data.x_train) // 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no .wav files"):
        _load(f"audio:{tone_dir}", audio_noise_dir=str(tmp_path / "empty"), **common)


def test_noise_mix_reaches_the_requested_snr_and_shift_moves_the_clip():
    from edgedistill.audio.augment import generated_noise, mix_noise, shift

    rng = np.random.default_rng(0)
    clip = _tone(500.0, 8000, 1.0, rng)
    noise = generated_noise(16000, rng)[1]
    mixed = mix_noise(clip, noise, 10.0, rng)
    residual = mixed.astype(np.float64) - clip
    snr = 10 * np.log10(np.mean(clip.astype(np.float64) ** 2) / np.mean(residual**2))
    assert abs(snr - 10.0) < 0.1
    moved = shift(clip, 80)
    assert np.all(moved[:80] == 0) and np.array_equal(moved[80:], clip[:-80])


# ---------------------------------------------------------------------------------------
# The identity: features of the exported front end on TFLM == the features the model trained on


def test_tflm_front_end_features_equal_the_training_features_bit_for_bit(spoken_dir, tmp_path):
    """The front end the data set used, run again by a fresh TFLM interpreter (another process),
    frame by frame, gives exactly the features of x_test; the micro export embeds the same."""
    from edgedistill.audio.frontend import frame_clips, features_to_float
    from edgedistill.tflm import tflm_outputs

    data = _load(
        f"audio:{spoken_dir}", audio_label_pattern="{label}_{speaker}_{index}.wav", audio_test_split="speaker=v3", audio_trim=True
    )
    assert data.audio.frontend.sample_rate == 16000 and data.input_shape == (49, 40, 1)
    frames = frame_clips(data.audio.test_clips[:3], data.audio.frontend)
    for index in range(3):  # a new worker per clip: a fresh (reset) interpreter
        features = tflm_outputs(data.audio.frontend_model, frames[index][:, 0], arena_bytes=64 * 1024, source="front end")
        assert np.array_equal(features_to_float(features[None])[0], data.x_test[index])


def _tiny_int8(input_shape, num_classes: int, x) -> bytes:
    from edgedistill.convert import convert_keras_model
    from edgedistill.models import build_model

    model = build_model("dscnn_kws", input_shape, num_classes, width=0.125)
    return convert_keras_model(model, quantization="int8", representative_data=x, num_calibration_samples=20)


def test_micro_exports_the_front_end_with_the_model(tone_dir, tmp_path):
    from edgedistill.config import MicroConfig
    from edgedistill.micro import load_micro_export
    from edgedistill.micro.export import parse_c_array_rows
    from edgedistill.stages import export_micro_sources
    from edgedistill.tflite_model import quantize_input
    from edgedistill.tflm import TFLMModel

    data = _load(f"audio:{tone_dir}", audio_sample_rate=8000, audio_clip_ms=500, audio_channels=16)
    int8 = _tiny_int8(data.input_shape, data.num_classes, data.x_train)
    export, report = export_micro_sources(MicroConfig(num_test_vectors=3), int8, data, tmp_path / "micro")
    manifest = json.loads((tmp_path / "micro/micro_export.json").read_text())
    front = manifest["front_end"]
    assert front["kFrontEndArenaSize"] > front["arena_bytes_host"] > 0 and front["parameters"]["num_frames"] == 24
    assert "AddWindow" in front["resolver_methods"] and "AddPCAN" in front["resolver_methods"]
    assert (tmp_path / "micro/front_end.tflite").read_bytes() == data.audio.frontend_model
    assert "resolver.AddFilterBankLog()" in (tmp_path / "micro/frontend_op_resolver.h").read_text()
    assert set(load_micro_export(tmp_path / "micro").files) >= {"frontend_data.cc", "audio_test_data.cc"}
    # the device's table maps front-end features to exactly the inputs the host gives the model
    table = np.array(parse_c_array_rows(tmp_path / "micro/audio_test_data.cc", "g_feature_to_input", nested=False)[0])
    features = np.array(parse_c_array_rows(tmp_path / "micro/audio_test_data.cc", "g_test_expected_features"))
    inputs = np.array(parse_c_array_rows(tmp_path / "micro/test_data.cc", "g_test_inputs"))
    assert np.array_equal(table[features.astype(int) + 128], inputs)
    model = TFLMModel(int8, arena_size=export.tensor_arena_size)
    assert np.array_equal(inputs, quantize_input(data.x_test[:3], model.input).reshape(3, -1))
    assert report["front_end"]["num_audio_test_samples"] == 3
    # the device stores the front end compacted (names gone); the same features on TFLM
    from edgedistill.audio.frontend import FrontEndRunner, read_frontend
    from edgedistill.micro.compact import compact_model

    stored = compact_model(data.audio.frontend_model).model_bytes
    assert front["compacted"] and front["size_bytes"] == len(stored) < front["file_size_bytes"] == len(data.audio.frontend_model)
    assert f"g_frontend_data_len = {len(stored)};" in (tmp_path / "micro/frontend_data.cc").read_text()
    clips = np.array(parse_c_array_rows(tmp_path / "micro/audio_test_data.cc", "g_test_audio"), dtype=np.int16)
    runner = FrontEndRunner(read_frontend(stored), tflite_bytes=stored)
    assert np.array_equal(runner.features(clips).reshape(len(clips), -1), features)


def test_micro_accepts_tflm_signal_ops_and_writes_their_resolver_calls(tmp_path):
    from edgedistill.audio.frontend import FrontEnd, build_frontend_model

    path = tmp_path / "front_end.tflite"
    path.write_bytes(build_frontend_model(FrontEnd()))
    result = invoke("micro", path, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    header = (tmp_path / "out/model_op_resolver.h").read_text()
    for method in (
        "AddWindow",
        "AddFftAutoScale",
        "AddRfft",
        "AddEnergy",
        "AddFilterBank",
        "AddFilterBankSquareRoot",
        "AddFilterBankSpectralSubtraction",
        "AddPCAN",
        "AddFilterBankLog",
    ):
        assert f"resolver.{method}()" in header


# ---------------------------------------------------------------------------------------
# Bad input: exit 2, one Error line, nothing written


def _bad_folder(tmp_path: Path, bad_name: str, write_bad) -> Path:
    folder, rng = tmp_path / "clips", np.random.default_rng(0)
    for name, frequency in TONES.items():
        for index in range(3):
            _write(folder / name / f"{index}.wav", _tone(frequency, 8000, 0.3, rng), 8000)
    write_bad(folder / "low" / bad_name)
    return folder


def _stereo(path):
    _write(path, np.zeros((800, 2), dtype=np.int16), 8000)


def _bits24(path):
    _write(path, np.zeros(800, dtype=np.int32), 8000, subtype="PCM_24")


def _rate(path):
    _write(path, np.zeros(800, dtype=np.int16), 4000)


def _long(path):
    _write(path, np.ones(8000, dtype=np.int16), 8000)  # 1 s for a 0.5 s window


BAD_FILES = {
    "not_a_wav": (lambda p: p.write_text("hello, I am text"), "Cannot read", []),
    "empty": (lambda p: p.write_bytes(b""), "is empty", []),
    "no_frames": (lambda p: _write(p, np.zeros(0, dtype=np.int16), 8000), "no samples", []),
    "stereo": (_stereo, "2 channels; expected mono", []),
    "24_bit": (_bits24, "expected 16-bit PCM", []),
    "lower_rate": (_rate, "sampled at 4000 Hz", []),
    "other_rate_resampling_off": (
        lambda p: _write(p, np.zeros(800, dtype=np.int16), 16000),
        "sampled at 16000 Hz",
        ["--audio-resample", "off"],
    ),
    "longer_than_window": (_long, "the window is 0.500 s", []),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_audio_file_is_one_error_line_exit_2_and_nothing_written(case, tmp_path):
    write_bad, message, extra = BAD_FILES[case]
    folder = _bad_folder(tmp_path, "bad.wav", write_bad)
    output = tmp_path / "teacher.keras"
    result = invoke("teacher", "--data", f"audio:{folder}", *SMALL, *extra, "-o", output)
    assert result.exit_code == 2, result.output
    errors = _error_lines(result)
    assert len(errors) == 1 and message in errors[0] and str(folder / "low" / "bad.wav") in errors[0], result.output
    assert not output.exists()


def test_a_folder_with_one_class(tmp_path):
    rng = np.random.default_rng(0)
    for index in range(3):
        _write(tmp_path / "clips" / "only" / f"{index}.wav", _tone(300.0, 8000, 0.3, rng), 8000)
    result = invoke("teacher", "--data", f"audio:{tmp_path / 'clips'}", *SMALL, "-o", tmp_path / "t.keras")
    assert result.exit_code == 2 and len(_error_lines(result)) == 1
    assert "holds 1 class (only)" in _error_lines(result)[0] and not (tmp_path / "t.keras").exists()


def test_a_label_pattern_that_matches_no_file(tone_dir, tmp_path):
    result = invoke(
        "teacher",
        "--data",
        f"audio:{tone_dir / 'low'}",
        *SMALL,
        "--audio-label-pattern",
        FSDD_PATTERN,
        "-o",
        tmp_path / "t.keras",
    )
    assert result.exit_code == 2 and len(_error_lines(result)) == 1
    assert "matches none of the 12 .wav files" in _error_lines(result)[0] and not (tmp_path / "t.keras").exists()


@pytest.mark.parametrize("rule,message", [("speaker=x", "uses field 'speaker'"), ("index~3", "is not a rule")])
def test_a_bad_test_split_rule(tone_dir, tmp_path, rule, message):
    result = invoke("teacher", "--data", f"audio:{tone_dir}", *SMALL, "--audio-test-split", rule, "-o", tmp_path / "t.keras")
    assert result.exit_code == 2 and len(_error_lines(result)) == 1 and message in _error_lines(result)[0]


def test_a_front_end_and_a_model_that_disagree_on_the_feature_shape(tone_dir, tmp_path):
    from edgedistill.audio.frontend import FrontEnd, build_frontend_model

    data = _load(f"audio:{tone_dir}", audio_sample_rate=8000, audio_clip_ms=500, audio_channels=16)
    model = tmp_path / "student_int8.tflite"
    model.write_bytes(_tiny_int8(data.input_shape, data.num_classes, data.x_train))
    other = tmp_path / "front_end.tflite"
    other.write_bytes(build_frontend_model(FrontEnd(sample_rate=8000, clip_ms=500, num_channels=20)))
    result = invoke("micro", model, "-o", tmp_path / "micro", "--front-end", other)
    assert result.exit_code == 2, result.output
    errors = _error_lines(result)
    assert len(errors) == 1 and "gives 24 frames x 20 channels" in errors[0] and "[1, 24, 16, 1]" in errors[0]
    assert not (tmp_path / "micro").exists()


# ---------------------------------------------------------------------------------------
# FSDD (skips without ../shared)


@pytest.fixture(scope="module")
def fsdd() -> Path:
    if not FSDD.is_dir():
        pytest.skip(f"the Free Spoken Digit Dataset is not at {FSDD} (../shared/data/fsdd/recordings)")
    return FSDD


def test_fsdd_usual_and_held_out_speaker_splits(fsdd):
    common = {"audio_label_pattern": FSDD_PATTERN, "audio_sample_rate": 8000, "audio_trim": True, "audio_channels": 20}
    usual = _load(f"audio:{fsdd}", audio_test_split="index<5", **common)
    assert len(usual.x_test) == 300 and len(usual.x_train) + len(usual.x_val) == 2700
    assert usual.class_names == tuple(str(d) for d in range(10)) and usual.input_shape == (49, 20, 1)
    held_out = _load(f"audio:{fsdd}", audio_test_split="speaker=theo", **common)
    assert len(held_out.x_test) == 500 and held_out.audio.test_groups == ("theo",)


def test_fsdd_has_clips_longer_than_a_second(fsdd, tmp_path):
    result = invoke(
        "teacher",
        "--data",
        f"audio:{fsdd}",
        "--audio-label-pattern",
        FSDD_PATTERN,
        "--audio-sample-rate",
        "8000",
        "-o",
        tmp_path / "t.keras",
    )
    assert result.exit_code == 2 and "--audio-trim" in _error_lines(result)[0]


# ---------------------------------------------------------------------------------------
# The whole run on spoken words


@pytest.mark.slow
def test_run_on_spoken_words_exports_front_end_and_model(spoken_dir, tmp_path):
    result = invoke(
        "run",
        "--data",
        f"audio:{spoken_dir}",
        "--audio-label-pattern",
        "{label}_{speaker}_{index}.wav",
        "--audio-test-split",
        "speaker=v3",
        "--audio-channels",
        "20",
        "--teacher-preset",
        "dscnn_kws",
        "--teacher-width",
        "0.25",
        "--student-preset",
        "dscnn_kws",
        "--student-width",
        "0.125",
        "--teacher-epochs",
        "2",
        "--epochs",
        "2",
        "--qat-epochs",
        "1",
        "--no-bench",
        "--verbose",
        "0",
        "--audio-augment-copies",
        "1",
        "--audio-trim",
        "--no-chance-gate",
        "--output-dir",
        tmp_path,
        "--run-name",
        "kws",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "kws/report.json").read_text())
    assert report["data"]["audio"]["front_end"]["feature_shape"] == [49, 20]
    assert report["micro"]["front_end"]["kFrontEndArenaSize"] > 0
    assert "int8_tflm" in report["verify"]["accuracy"]


# ---------------------------------------------------------------------------------------
# The chain on the microcontroller (needs TFLM_DIR, arm-none-eabi and QEMU; the TFLM library
# of each board and kernels is built once, minutes, then cached)


@pytest.mark.tflm_source
@pytest.mark.slow
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-mps3-an547"])
@pytest.mark.parametrize("kernels", ["reference", "cmsis_nn"])
def test_front_end_and_model_on_the_microcontroller_match_the_host(board, kernels, tone_dir, tmp_path_factory):
    """Raw test audio -> front end (TFLM Signal ops) -> table -> model in QEMU: the features equal the
    host TFLM interpreter's bit for bit and the class scores the host's; the front end's cost is reported."""
    from firmware_helpers import CROSS_TOOLS

    if not os.environ.get("TFLM_DIR") or any(shutil.which(tool) is None for tool in (*CROSS_TOOLS, "qemu-system-arm")):
        pytest.skip("needs a TFLite Micro checkout in TFLM_DIR, the arm-none-eabi toolchain and qemu-system-arm")
    from edgedistill.config import MicroConfig
    from edgedistill.stages import export_micro_sources

    run_dir = tmp_path_factory.mktemp(f"audio_run_{board}_{kernels}")
    data = _load(f"audio:{tone_dir}", audio_sample_rate=8000, audio_clip_ms=500, audio_channels=16)
    int8 = _tiny_int8(data.input_shape, data.num_classes, data.x_train)
    (run_dir / "student_int8.tflite").write_bytes(int8)
    export_micro_sources(MicroConfig(num_test_vectors=3), int8, data, run_dir / "micro", model_name="student_int8.tflite")
    result = invoke("firmware", "run", run_dir, "--board", board, "--kernels", kernels, "--json")
    assert result.exit_code == 0, result.output
    run = json.loads(result.output[result.output.index("{") :])
    front = run["front_end"]
    assert run["status"] == "pass" and front["num_clips"] == 3
    assert front["feature_mismatches"] == 0 and front["output_mismatches"] == 0
    assert front["invokes_per_clip"] == 24 and front["instructions_per_clip"] > 10_000
    assert 0 < front["arena_used_bytes"] <= front["arena_size_bytes"]
