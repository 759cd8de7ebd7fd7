"""Streaming keyword spotting (edgedistill.audio.streaming, `edgedistill listen`): smoothing, detection and
matching on hand-made posteriors, the front-end state of the windows, the whole command once, and its bad inputs.

The model is a hand-built int8 FULLY_CONNECTED classifier of tones ("low" 300 Hz, "high" 1400 Hz) on the
real TFLM front end: no TensorFlow, no training, the same answer every time. The FSDD test skips when
../shared/data/fsdd is absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import invoke

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
RATE = 8000
TONES = {"low": 300.0, "high": 1400.0}
# (time the tone starts, label) in the 20-second test recording
TONE_EVENTS = [(2.0, "low"), (5.5, "high"), (9.0, "low"), (12.5, "high"), (16.0, "low")]
LISTEN = ["--class-names", "low,high", "--average-ms", "300", "--minimum-count", "2", "--threshold", "0.8"]


def _write(path: Path, samples: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> Path:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, subtype=subtype)
    return path


def _frontend(channels: int = 16):
    from edgedistill.audio.frontend import FrontEnd

    return FrontEnd(sample_rate=RATE, clip_ms=500, num_channels=channels)


def _tone(frequency: float, seconds: float = 0.35) -> np.ndarray:
    time = np.arange(int(RATE * seconds)) / RATE
    return 9000 * np.sin(2 * np.pi * frequency * time)


def _recording(seconds: float = 20.0, events=TONE_EVENTS) -> np.ndarray:
    """Digital silence with a tone starting at each event's time. (The front end's gain control lifts any noise
    floor to features, which this two-weight classifier cannot tell from its tones.)"""
    signal = np.zeros(int(RATE * seconds))
    for start_s, label in events:
        tone = _tone(TONES[label])
        signal[int(start_s * RATE) : int(start_s * RATE) + len(tone)] += tone
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def _tone_classifier(frontend) -> bytes:
    """int8 features [1, frames, channels, 1] -> FULLY_CONNECTED -> int8 logits [1, 2]: "low" lights channels
    0-1 of this front end, "high" channels 8-9 (measured on the tones); a logit is +-0.27 per feature unit."""
    from edgedistill.audio.frontend import _GraphBuilder

    graph, (frames, channels) = _GraphBuilder(), frontend.feature_shape

    def tensor(name: str, dtype: str, shape: list[int], scale: float, zero_point: int, data=None) -> int:
        index = graph.tensor(name, dtype, shape, data)
        quantization = graph.schema.QuantizationParametersT()
        quantization.scale, quantization.zeroPoint = [scale], [zero_point]
        graph.subgraph.tensors[index].quantization = quantization
        return index

    weights = np.zeros((2, frames, channels), dtype=np.int8)
    weights[0][:, [0, 1]], weights[0][:, [8, 9]] = 127, -127
    weights[1] = -weights[0]
    features = tensor("features", "INT8", [1, frames, channels, 1], 1 / 256, -128)
    kernel = tensor("weights", "INT8", [2, frames * channels], 0.27 / 127, 0, weights.reshape(2, -1))
    bias = tensor("bias", "INT32", [2], 0.27 / 127 / 256, 0, np.zeros(2, dtype=np.int32))
    logits = tensor("logits", "INT8", [1, 2], 8 / 127, 0)
    graph.op("FULLY_CONNECTED", [features, kernel, bias], [logits], options=graph.options("FullyConnectedOptions"))
    return graph.finish([features], [logits], "tone classifier for tests/test_streaming.py")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder as `edgedistill run --data audio:...` leaves it: student_int8.tflite and micro/ with the front end."""
    from edgedistill.audio.frontend import build_frontend_model
    from edgedistill.micro import export_micro
    from edgedistill.micro.frontend import FrontEndExport

    folder = tmp_path_factory.mktemp("listen") / "run"
    model = _tone_classifier(_frontend())
    folder.mkdir(parents=True)
    (folder / "student_int8.tflite").write_bytes(model)
    export_micro(
        model, folder / "micro", front_end=FrontEndExport(build_frontend_model(_frontend())), model_name="student_int8.tflite"
    )
    return folder


@pytest.fixture(scope="module")
def recording(run_dir) -> Path:
    return _write(run_dir.parent / "recording.wav", _recording())


@pytest.fixture(scope="module")
def events_file(run_dir) -> Path:
    path = run_dir.parent / "events.csv"
    path.write_text("time_s,label\n# the tones\n" + "".join(f"{t},{label}\n" for t, label in TONE_EVENTS))
    return path


def _error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


# ---------------------------------------------------------------------------------------
# Smoothing, detection and matching on hand-made posteriors


def _posteriors(first_class: list[float], hop_ms: int = 100, start_s: float = 1.0):
    from edgedistill.audio.streaming import Posteriors

    scores = np.array([[p, 1.0 - p] for p in first_class])
    times = start_s + np.arange(len(first_class)) * hop_ms / 1000.0
    return Posteriors(times_s=times, scores=scores, class_names=("a", "b"), hop_ms=hop_ms, duration_s=3600.0)


def test_moving_average_over_the_last_posteriors():
    from edgedistill.audio.streaming import moving_average

    averaged, counts = moving_average(np.array([[0.5], [0.5], [0.9], [0.9], [0.9], [0.5]]), 3)
    assert np.allclose(averaged[:, 0], [0.5, 0.5, 1.9 / 3, 2.3 / 3, 0.9, 2.3 / 3]) and list(counts) == [1, 2, 3, 3, 3, 3]


def test_detection_threshold_suppression_and_minimum_count():
    from edgedistill.audio.streaming import Detection, Smoothing, detect

    # averaged over 3 (300 ms at a 100 ms hop): 0.5 0.5 0.633 0.767 0.9 0.767 0.633 0.5 ...
    posteriors = _posteriors([0.5, 0.5, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5])
    smoothing = Smoothing(average_ms=300, threshold=0.6, suppression_ms=500, minimum_count=2)
    assert detect(posteriors, smoothing) == [Detection(1.2, "a", round(1.9 / 3, 6))]
    # 400 ms after the first, at a 400 ms suppression: not yet (strictly longer, whatever the float error of 1.6 - 1.2)
    assert len(detect(posteriors, Smoothing(average_ms=300, threshold=0.6, suppression_ms=400, minimum_count=2))) == 1
    again = detect(posteriors, Smoothing(average_ms=300, threshold=0.6, suppression_ms=300, minimum_count=2))
    assert [(d.time_s, d.label) for d in again] == [(1.2, "a"), (1.6, "a")]
    assert [d.time_s for d in detect(posteriors, Smoothing(average_ms=300, threshold=0.85, minimum_count=2))] == [1.4]
    # above, not at, the threshold (0.75 is exact in binary)
    plateau = _posteriors([0.5, 0.75, 0.5])
    assert [d.time_s for d in detect(plateau, Smoothing(average_ms=100, threshold=0.74, minimum_count=1))] == [1.1]
    assert detect(plateau, Smoothing(average_ms=100, threshold=0.75, minimum_count=1)) == []
    # a spike in the first window: only with fewer than minimum_count posteriors averaged
    spike = _posteriors([0.95, 0.5, 0.5])
    assert [d.time_s for d in detect(spike, Smoothing(average_ms=200, threshold=0.8, minimum_count=1))] == [1.0]
    assert detect(spike, Smoothing(average_ms=200, threshold=0.8, minimum_count=2)) == []
    # an ignored class (a model's silence) is never reported
    assert detect(_posteriors([0.1] * 5), Smoothing(threshold=0.8, average_ms=300, minimum_count=1), ignore_labels=["b"]) == []


def test_matching_hits_first_then_wrong_labels_misses_and_false_accepts():
    from edgedistill.audio.streaming import Detection, Event, evaluate

    events = [Event(1.0, "a"), Event(5.0, "b"), Event(9.0, "a"), Event(13.0, "b")]
    detections = [
        Detection(1.8, "a", 0.9),  # hit (0.8 s after the event)
        Detection(2.4, "a", 0.9),  # the same word again: a false accept
        Detection(5.6, "a", 0.9),  # next to the right label: a false accept, not the event's outcome
        Detection(6.2, "b", 0.9),  # hit (1.2 s)
        Detection(10.5, "b", 0.9),  # the last moment (event + tolerance): a wrong label for 9.0 "a"
        Detection(12.9, "b", 0.9),  # before its word: a false accept; 13.0 "b" is missed
    ]
    evaluation = evaluate(detections, events, duration_s=1800.0, tolerance_s=1.5)
    assert evaluation.detection_outcomes == ["hit", "false_accept", "false_accept", "hit", "wrong_label", "false_accept"]
    assert evaluation.event_outcomes == ["hit", "hit", "wrong_label", "miss"]
    summary = evaluation.summary()
    assert (summary["hits"], summary["wrong_labels"], summary["misses"], summary["false_accepts"]) == (2, 1, 1, 3)
    assert summary["hit_rate"] == 0.5 and summary["false_reject_rate"] == 0.5 and summary["false_accepts_per_hour"] == 6.0
    assert evaluation.latencies_s == [0.8, 1.2] and summary["median_latency_s"] == 1.0
    nothing = evaluate([], [], duration_s=3600.0, tolerance_s=1.0).summary()
    assert nothing["hit_rate"] is None and nothing["false_accepts_per_hour"] == 0.0


def test_det_table_trades_false_accepts_for_misses():
    from edgedistill.audio.streaming import Event, Smoothing, det_table

    # a word at 1.0 s (peak 0.9) and a distractor at 3.0 s (peak 0.7); a window every 100 ms
    first = np.full(40, 0.5)
    first[5:8], first[25:28] = 0.9, 0.7
    rows = det_table(
        _posteriors(list(first), start_s=0.5),
        [Event(1.0, "a")],
        Smoothing(average_ms=100, minimum_count=1),
        tolerance_s=1.0,
        thresholds=[0.6, 0.8, 0.95],
    )
    assert [(r["threshold"], r["hits"], r["false_accepts"]) for r in rows] == [(0.6, 1, 1), (0.8, 1, 0), (0.95, 0, 0)]
    assert rows[2]["false_reject_rate"] == 1.0 and rows[0]["false_accepts_per_hour"] == 1.0


def test_events_file_header_comments_and_order(tmp_path):
    from edgedistill.audio.streaming import Event, read_events

    path = tmp_path / "events.csv"
    path.write_text("time_s,label\n\n# comment\n3.5, b\n1.25,a\n")
    assert read_events(path, class_names=("a", "b"), duration_s=4.0) == [Event(1.25, "a"), Event(3.5, "b")]
    path.write_text("time_s,label\n")
    assert read_events(path) == []
    path.write_text("\ufeff2.0,z\n")  # a spreadsheet's byte-order mark; no classes or duration to check against
    assert read_events(path) == [Event(2.0, "z")]


# ---------------------------------------------------------------------------------------
# The windows and the front end's state


def test_reset_windows_are_training_features_and_a_continuous_front_end_is_not():
    """Each window's features equal the features of that stretch as a training clip (a reset front end),
    bit for bit; a front end left running gives other features after the first window (its noise estimate)."""
    from edgedistill.audio.frontend import FrontEndRunner
    from edgedistill.audio.streaming import continuous_features, reset_window_features, window_end_times, window_starts

    frontend = _frontend()
    runner, recording = FrontEndRunner(frontend), _recording(seconds=4.0, events=[(1.0, "low"), (2.5, "high")])
    starts = window_starts(len(recording), frontend, hop_ms=100)
    assert list(starts[:3]) == [0, 5, 10] and starts[-1] * frontend.stride_samples + frontend.clip_samples <= len(recording)
    assert np.isclose(window_end_times(starts[:1], frontend)[0], 0.49)  # 24 frames: 23 strides and a 30 ms window
    windows = reset_window_features(runner, recording, starts)
    clips = np.stack([recording[s * frontend.stride_samples :][: frontend.clip_samples] for s in starts])
    assert np.array_equal(windows, runner.features(clips))  # the loader's path: FrontEndRunner.features
    continuous = continuous_features(runner, recording)
    running = np.stack([continuous[s : s + frontend.num_frames] for s in starts])
    assert np.array_equal(running[0], windows[0]) and not np.array_equal(running[1:], windows[1:])


# ---------------------------------------------------------------------------------------
# The command


def test_listen_detects_the_tones_and_scores_them(run_dir, recording, events_file, tmp_path):
    output = tmp_path / "out" / "detections.json"
    result = invoke("listen", run_dir, recording, "--events", events_file, *LISTEN, "-o", output)
    assert result.exit_code == 0, result.output
    data = json.loads(output.read_text())
    assert [d["label"] for d in data["detections"]] == [label for _, label in TONE_EVENTS]
    assert all(start < d["time_s"] <= start + 0.8 for d, (start, _) in zip(data["detections"], TONE_EVENTS))
    assert data["evaluation"]["hits"] == 5 and data["evaluation"]["false_accepts"] == 0 and data["evaluation"]["misses"] == 0
    assert data["class_names"] == ["low", "high"] and data["settings"]["front_end_state"] == "reset"
    assert data["tolerance_s"] == 0.8 and len(data["det"]) > 10 and data["real_time_factor"] > 0
    assert "hits 5 (100.0 %)" in result.output and "threshold sweep" in result.output
    assert not [p for p in output.parent.iterdir() if p.name != "detections.json"]  # nothing but the result


def _without(run_dir: Path, tmp_path: Path, name: str) -> Path:
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / name).unlink()
    return copy


def _other_front_end(run_dir: Path, tmp_path: Path) -> Path:
    from edgedistill.audio.frontend import build_frontend_model

    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / "micro" / "front_end.tflite").write_bytes(build_frontend_model(_frontend(channels=20)))
    return copy


BAD_INPUTS = {
    # case: (folder, recording, extra options, the error's words); folder/recording None: the good ones
    "not_a_wav": (None, lambda p: p.write_text("hello") and p, [], "Cannot read"),
    "no_recording": (None, lambda p: p.parent / "missing.wav", [], "Recording not found"),
    "wrong_rate": (
        None,
        lambda p: _write(p, _recording(2.0, events=[]), rate=16000),
        [],
        "sampled at 16000 Hz; the run's front end runs at 8000 Hz",
    ),
    "stereo": (None, lambda p: _write(p, np.zeros((RATE, 2), dtype=np.int16)), [], "2 channels; expected mono"),
    "shorter_than_window": (
        None,
        lambda p: _write(p, _recording(0.3, events=[])),
        [],
        "shorter than the model's window (0.500 s)",
    ),
    "no_front_end": (lambda r, t: _without(r, t, "micro/front_end.tflite"), None, [], "has no audio front end"),
    "no_model": (lambda r, t: _without(r, t, "student_int8.tflite"), None, [], "was made from 'student_int8.tflite'"),
    "no_micro_export": (lambda r, t: t, None, [], "has no complete micro export"),
    "shape_mismatch": (_other_front_end, None, [], "gives 24 frames x 20 channels, but"),
    "events_time": (None, None, ["--events", "twelve,low\n"], "time 'twelve' is not a number"),
    "events_label": (None, None, ["--events", "1.0,low\n2.0,middle\n"], "line 2: label 'middle' is not a class"),
    "events_fields": (None, None, ["--events", "1.0,low,extra\n"], "has 3 field(s); expected 2"),
    "events_past_the_end": (None, None, ["--events", "25.0,low\n"], "past the end of the recording (20.000 s)"),
    "hop": (None, None, ["--hop-ms", "50"], "must be a multiple of the front end's stride (20 ms)"),
    "class_names": (None, None, ["--class-names", "a,b,c"], "3 class names were given"),
    "threshold": (None, None, ["--threshold", "1.5"], "`threshold` must be a posterior in (0, 1]"),
    "average": (None, None, ["--average-ms", "100", "--minimum-count", "3"], "fewer than minimum_count=3"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(case, run_dir, recording, tmp_path):
    make_folder, make_recording, extra, message = BAD_INPUTS[case]
    folder = make_folder(run_dir, tmp_path) if make_folder else run_dir
    wav = make_recording(tmp_path / "bad.wav") if make_recording else recording
    if extra[:1] == ["--events"]:
        (tmp_path / "events.csv").write_text(extra[1])
        extra = ["--events", tmp_path / "events.csv"]
    output = tmp_path / "out" / "detections.json"
    result = invoke("listen", folder, wav, *LISTEN, *extra, "-o", output)
    assert result.exit_code == 2, result.output
    errors = _error_lines(result)
    assert len(errors) == 1 and message in errors[0], result.output
    assert not output.parent.exists()


# ---------------------------------------------------------------------------------------
# FSDD (skips without ../shared)


def test_a_window_on_an_fsdd_clip_has_the_loader_s_features_bit_for_bit(tmp_path):
    """An FSDD clip placed in a recording where the loader would centre it: that window's streaming features
    are the training features of the clip (same front end, same reset), bit for bit."""
    if not FSDD.is_dir():
        pytest.skip(f"the Free Spoken Digit Dataset is not at {FSDD} (../shared/data/fsdd/recordings)")
    from edgedistill.audio.frontend import FrontEnd, FrontEndRunner
    from edgedistill.audio.streaming import read_recording, reset_window_features
    from edgedistill.audio.wav import ClipFormat, read_clip

    frontend = FrontEnd(sample_rate=RATE, num_channels=20)
    runner = FrontEndRunner(frontend)
    clip = read_clip(FSDD / "3_theo_0.wav", ClipFormat(RATE, frontend.clip_samples, trim=True))
    stream = np.zeros(3 * RATE, dtype=np.int16)
    start_frame = 60  # the window starts 1.2 s in
    stream[start_frame * frontend.stride_samples :][: frontend.clip_samples] = clip
    samples = read_recording(_write(tmp_path / "stream.wav", stream), frontend)
    window = reset_window_features(runner, samples, np.array([start_frame]))
    assert np.array_equal(window, runner.features(clip[None]))
