"""Streaming keyword spotting: a run's front end and int8 model slid over a long recording.

In order:

1. The recording (16-bit PCM mono WAV at the front end's rate, :mod:`edgedistill.audio.wav`'s
   checks) is cut into windows of the model's clip length, one every ``hop_ms`` (a multiple of the
   front end's stride, so every window starts on a feature frame). Samples after the last full hop
   are not looked at.
2. Each window's features come from the run's own ``front_end.tflite`` on the TFLM interpreter
   (see *Front end state* below); the device table ``(q + 128) / 256`` -> int8 input is the one of
   :func:`~edgedistill.audio.frontend.feature_to_input_table`.
3. The int8 model runs on the TFLM interpreter (:class:`edgedistill.tflm.TFLMModel`, the one runner);
   its logits become softmax posteriors. LiteRT was measured and not used: its builtin kernels were
   ~14x faster on this host but gave another int8 output (one step) on 13 % of the windows (its
   default XNNPACK delegate: up to 10 steps on nearly all), so its detections would not be the
   device's (benchmarks/results/streaming_kws.json, ``litert_vs_tflm``).
4. Posterior smoothing as TensorFlow's ``RecognizeCommands`` ("Hello Edge", micro_speech): the
   posteriors of the last ``average_ms`` are averaged; a detection is reported when the averaged
   top score is above ``threshold``, at least ``minimum_count`` posteriors were averaged, and
   ``suppression_ms`` have passed since the previous detection. Unlike RecognizeCommands, the
   suppression holds for every label (RecognizeCommands lets another label fire at once): without a
   silence class the top label flickers between digits in a word's tail, and each flicker would
   be a detection.
5. Against ground-truth events ``(time_s, label)`` (``time_s``: when the word starts): a detection
   ``d`` may match an event ``e`` when ``e <= d <= e + tolerance`` (default: the window plus the
   averaging window, all the audio a decision rests on); same label: a hit, else a wrong label;
   detections that match no event are false accepts (counted per hour of recording); events
   without a detection are misses. A threshold sweep gives the DET table (false-reject rate vs
   false accepts per hour) that wake-word users pick an operating point from.

Front end state. The front end has state: spectral subtraction's noise estimate and the PCAN gain
that follows it start at zero after a reset and adapt over ~1-2 s. Training features come from a
front end reset before each clip, so a training clip is seen in that warm-up. A streaming device
could run the front end continuously (one invoke per stride, a ring of feature frames, as TFLM's
micro_speech does), but then its features are in the adapted state the model never saw. Measured on
a 12-minute FSDD recording in noise (benchmarks/streaming_kws.py): 73 % of a window's continuous
features differ from its per-window-reset features (mean |difference| 86 int8 steps: 196 in a
window's first frame, 30 in its last), and the distilled student found 64 % of the digits instead
of 86 % at the default threshold; along the threshold sweep its false-reject rate is higher than
``reset``'s at the same false-accept rate (equal once, with twice the false accepts). So the
default (``reset``) resets the front end before every
window and computes its frames from scratch, exactly as a training clip and as the exported
firmware's per-clip routine (``frontend_settings.h``): host, device and training see bit-identical
features, at the cost of recomputing every frame of the window each hop (``clip/hop`` times the
front-end work of a continuous front end) and of a window of raw audio in RAM instead of a ring of
features. ``continuous`` is kept, for measuring and for models trained on continuous features.

Silence and unknown classes. A model trained on FSDD's ten digits alone has no "nothing said"
output: its softmax always sums to one over the digits, so background noise and non-digit words
still give some digit a high posterior, and the only rejection is the threshold on the smoothed top
posterior. Measured (benchmarks/README.md): noise alone at 20 dB SNR never fired, but non-digit
words did: every false accept was on a distractor word, and a threshold of 0.998 was needed for ~10
per hour, which misses more than half of the digits. A model trained with ``_silence_`` and
``_unknown_`` classes (``--audio-silence-fraction``, ``--audio-unknown-dir``;
:mod:`edgedistill.audio.extra_classes`) can say "none of these": any class whose name starts and
ends with ``_`` takes part in the smoothing like every class, but when it wins the smoothed top
posterior nothing is detected (so it is never a false accept), and an events file may not name it
(events are keywords). ``ignore_labels`` leaves further classes out of the detections.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from edgedistill.audio.extra_classes import is_keyword
from edgedistill.audio.frontend import (
    FrontEnd,
    FrontEndRunner,
    check_feature_shape,
    features_to_float,
    frame_clips,
    read_frontend,
)
from edgedistill.audio.wav import missing_bytes, read_wav
from edgedistill.config import Section, at_least, option, whole
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)

FRONT_END_STATES = ("reset", "continuous")
# Windows featurized and classified per TFLM call: bounds memory on long recordings (256 one-second
# 8 kHz windows are 4 MB of audio) and paces the progress lines.
CHUNK_WINDOWS = 256
# Finer near 1: a softmax without a "none of these" class saturates, so false accepts fall off late.
DEFAULT_THRESHOLDS = tuple(round(0.30 + 0.05 * step, 2) for step in range(14)) + (0.97, 0.99, 0.995, 0.998, 0.999)


# ---------------------------------------------------------------------------------------
# Settings and results


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


@dataclasses.dataclass(frozen=True)
class StreamSettings(Section):
    """How the model slides over the recording: a window every ``hop_ms``, its front end reset or continuous.

    Each field is an option of ``edgedistill listen`` (its default, help text and check, in one place)."""

    hop_ms: int = option(
        100,
        "Run the model on a window every this many ms (a multiple of the front end's stride).",
        check=whole(1),
        expected="a whole number of milliseconds >= 1",
    )
    front_end_state: str = option(
        "reset",
        "reset: each window's features from a reset front end, as in training and in the exported firmware; "
        "continuous: one front end over the whole recording (features the model did not train on).",
        choices=FRONT_END_STATES,
    )


@dataclasses.dataclass(frozen=True)
class Smoothing(Section):
    """Posterior smoothing and detection (TF's RecognizeCommands; see the module docstring).

    Each field is an option of ``edgedistill listen`` (its default, help text and check, in one place)."""

    average_ms: float = option(
        500.0,
        "Posterior smoothing: average the posteriors of the last this many ms.",
        check=at_least(0),
        expected="a finite number >= 0",
    )
    threshold: float = option(
        0.8,
        "Detect when the smoothed top posterior is above this (and is a keyword's: a winning _silence_ or "
        "_unknown_ class is never a detection).",
        check=lambda value: at_least(0)(value) and 0 < value <= 1,
        expected="a posterior in (0, 1] (e.g. 0.8)",
    )
    suppression_ms: float = option(
        1000.0,
        "No detection within this long after the previous one (any label).",
        check=at_least(0),
        expected="a finite number >= 0",
    )
    minimum_count: int = option(
        3, "Detect only when at least this many posteriors were averaged.", check=whole(1), expected="a whole number >= 1"
    )

    def averaged_count(self, hop_ms: float) -> int:
        """How many posteriors (one per hop) the average spans; checked against ``minimum_count``."""
        count = max(1, int(round(self.average_ms / hop_ms)))
        _require(
            count >= self.minimum_count,
            f"An average over {self.average_ms:g} ms holds {count} posterior(s) at a {hop_ms:g} ms hop, fewer than "
            f"minimum_count={self.minimum_count}: nothing could ever be detected. Raise --average-ms to at least "
            f"{self.minimum_count * hop_ms:g} or lower --minimum-count.",
        )
        return count


@dataclasses.dataclass(frozen=True)
class Detection:
    time_s: float  # when it fired: the end of the audio the decision rests on
    label: str
    score: float  # the smoothed posterior of ``label``


@dataclasses.dataclass(frozen=True)
class Event:
    time_s: float  # when the word starts
    label: str


@dataclasses.dataclass
class Posteriors:
    """One row of class posteriors per window; ``times_s``: the end of each window's audio."""

    times_s: np.ndarray
    scores: np.ndarray
    class_names: tuple[str, ...]
    hop_ms: int
    duration_s: float


# ---------------------------------------------------------------------------------------
# The front end and the model


def class_names_for(names: Sequence[str] | None, num_classes: int, *, model_source: str = "the model") -> tuple[str, ...]:
    """The given names (one per output), else the class indices as text (``"0"``, ``"1"``, ...)."""
    if names is None:
        return tuple(str(index) for index in range(num_classes))
    _require(
        len(names) == num_classes,
        f"{len(names)} class names were given ({', '.join(names)}), but {model_source} has {num_classes} outputs. "
        "Give one name per output, in the order the model was trained with.",
    )
    return tuple(names)


def class_names_of_run(run_dir: str | Path) -> tuple[str, ...] | None:
    """The class names an audio run recorded (``report.json``: ``data.audio.class_names``), or None."""
    try:
        names = json.loads((Path(run_dir) / "report.json").read_text())["data"]["audio"]["class_names"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return tuple(str(name) for name in names) if isinstance(names, list) and names else None


def keyword_classes(class_names: Sequence[str]) -> tuple[str, ...]:
    """The classes that may be detected: all but ``_silence_``, ``_unknown_`` and other ``_name_`` classes."""
    return tuple(name for name in class_names if is_keyword(name))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class StreamModel:
    """A run's front end and int8 model, checked to fit each other, both on the TFLM interpreter.

    ``arena_bytes``: an arena the model is known to run in (a micro export's ``kTensorArenaSize``,
    or :func:`edgedistill.tflm.smallest_arena`); a too small one can crash TFLM. ``recorded_class_names``
    (a run's report, :func:`class_names_of_run`) name the outputs when ``class_names`` is None and
    there is one per output; otherwise the outputs are named by their index.
    """

    def __init__(
        self,
        frontend_bytes: bytes,
        model_bytes: bytes,
        *,
        arena_bytes: int,
        class_names: Sequence[str] | None = None,
        frontend_source: str = "front_end.tflite",
        model_source: str = "the model",
        recorded_class_names: Sequence[str] | None = None,
    ) -> None:
        from edgedistill.tflite_model import read_model_info
        from edgedistill.tflm import TFLMModel

        self.frontend = read_frontend(frontend_bytes, source=frontend_source)
        info = read_model_info(model_bytes, source=model_source)
        _require(
            len(info.inputs) == 1,
            f"{model_source} has {len(info.inputs)} inputs; a keyword spotting model takes one (the features).",
        )
        _require(
            len(info.outputs) == 1,  # a second output would be ignored: its scores are no posteriors of the classes
            f"{model_source} has {len(info.outputs)} outputs ({', '.join(f'{t.name} {list(t.shape)}' for t in info.outputs)}); "
            "a keyword spotting model gives one (the class scores). Use the int8 model of a run.",
        )
        check_feature_shape(
            self.frontend,
            info.inputs[0].shape,
            frontend_source=frontend_source,
            model_source=model_source,
            fix="Use the front end and the model of one run (its micro/ folder).",
        )
        num_outputs = int(np.prod(info.outputs[0].shape[1:]))
        if class_names is None and recorded_class_names is not None and len(recorded_class_names) == num_outputs:
            class_names = recorded_class_names
        self.class_names = class_names_for(class_names, num_outputs, model_source=model_source)
        # The presets output logits; a model that ends in SOFTMAX already gives posteriors.
        self.outputs_posteriors = "SOFTMAX" in info.ops
        self.runner = FrontEndRunner(self.frontend, tflite_bytes=frontend_bytes)
        self.model = TFLMModel(model_bytes, arena_size=arena_bytes, source=model_source)

    def posteriors(self, features: np.ndarray) -> np.ndarray:
        """int8 front-end features ``(N, frames, channels)`` -> class posteriors ``(N, classes)`` (float64)."""
        from edgedistill.tflite_model import dequantize_output

        outputs = dequantize_output(self.model.raw_outputs(features_to_float(features)), self.model.output)
        outputs = np.asarray(outputs, dtype=np.float64).reshape(len(features), -1)
        return outputs if self.outputs_posteriors else _softmax(outputs)


# ---------------------------------------------------------------------------------------
# The recording, its windows and their features


def _check_length(num_samples: int, frontend: FrontEnd, source: str) -> None:
    _require(
        num_samples >= frontend.clip_samples,
        f"{source} is {num_samples / frontend.sample_rate:.3f} s long, shorter than the model's window "
        f"({frontend.clip_ms / 1000:.3f} s): there is no window to classify. Give a recording of at least "
        f"{frontend.clip_ms} ms.",
    )


def read_recording(path: str | Path, frontend: FrontEnd) -> np.ndarray:
    """The int16 samples of a 16-bit PCM mono WAV at the front end's rate, at least one window long."""
    path = Path(path)
    _require(path.is_file(), f"Recording not found: {path}. Expected a 16-bit PCM mono WAV file.")
    samples, rate = read_wav(path)  # not a WAV, empty, stereo, not 16-bit: one InputError each
    _require(
        rate == frontend.sample_rate,
        f"{path} is sampled at {rate} Hz; the run's front end runs at {frontend.sample_rate} Hz. Resample it, e.g. "
        f"`sox {path.name} -r {frontend.sample_rate} resampled.wav`.",
    )
    _check_length(len(samples), frontend, str(path))
    missing = missing_bytes(path)
    if missing:
        logger.warning(
            "%s is truncated: its header announces %.1f s more audio than it holds; only the %.1f s it holds are processed.",
            path,
            missing / 2 / frontend.sample_rate,
            len(samples) / frontend.sample_rate,
        )
    return samples


def window_starts(num_samples: int, frontend: FrontEnd, hop_ms: int) -> np.ndarray:
    """The first feature frame of every window, one every ``hop_ms``, that fits inside the recording."""
    _require(
        hop_ms % frontend.stride_ms == 0,
        f"The hop ({hop_ms} ms) must be a multiple of the front end's stride ({frontend.stride_ms} ms), so that "
        f"windows start on feature frames. E.g. --hop-ms {max(1, round(hop_ms / frontend.stride_ms)) * frontend.stride_ms}.",
    )
    _check_length(num_samples, frontend, "The recording")
    last_start = (num_samples - frontend.clip_samples) // frontend.stride_samples
    return np.arange(0, last_start + 1, hop_ms // frontend.stride_ms)


def window_end_times(starts: np.ndarray, frontend: FrontEnd) -> np.ndarray:
    """When each window's last frame ends (s): the moment a device could decide on it."""
    end_samples = (starts + frontend.num_frames - 1) * frontend.stride_samples + frontend.window_samples
    return end_samples / frontend.sample_rate


def continuous_features(runner: FrontEndRunner, recording: np.ndarray) -> np.ndarray:
    """int8 features ``(frames, channels)`` of the whole recording from a front end reset once, at its start."""
    frontend = runner.frontend
    frames = np.lib.stride_tricks.sliding_window_view(recording, frontend.window_samples)[:: frontend.stride_samples]
    return runner.model.raw_sequence_outputs(frames[None, :, None, :])[0]


def reset_window_features(runner: FrontEndRunner, recording: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """int8 features ``(windows, frames, channels)``, each window from a reset front end: a training clip's features."""
    frontend = runner.frontend
    first_samples = starts * frontend.stride_samples
    clips = recording[first_samples[:, None] + np.arange(frontend.clip_samples)[None, :]]
    return runner.model.raw_sequence_outputs(frame_clips(clips, frontend))


def stream_posteriors(model: StreamModel, recording: np.ndarray, settings: StreamSettings) -> Posteriors:
    """The model's posteriors on a window every ``settings.hop_ms`` of the int16 ``recording``."""
    frontend = model.frontend
    starts = window_starts(len(recording), frontend, settings.hop_ms)
    duration_s = len(recording) / frontend.sample_rate
    logger.info(
        "listening to %.1f s of audio: %d windows of %d ms every %d ms, front end %s ...",
        duration_s,
        len(starts),
        frontend.clip_ms,
        settings.hop_ms,
        settings.front_end_state,
    )
    started = time.perf_counter()
    continuous = continuous_features(model.runner, recording) if settings.front_end_state == "continuous" else None
    rows = []
    for first in range(0, len(starts), CHUNK_WINDOWS):
        chunk = starts[first : first + CHUNK_WINDOWS]
        if continuous is None:
            features = reset_window_features(model.runner, recording, chunk)
        else:
            features = continuous[chunk[:, None] + np.arange(frontend.num_frames)[None, :]]
        rows.append(model.posteriors(features))
        logger.debug("   %d of %d windows", first + len(chunk), len(starts))
    seconds = time.perf_counter() - started
    logger.info("   %d windows in %.1f s (%.3f s per second of audio)", len(starts), seconds, seconds / duration_s)
    return Posteriors(
        times_s=window_end_times(starts, frontend),
        scores=np.concatenate(rows),
        class_names=model.class_names,
        hop_ms=settings.hop_ms,
        duration_s=duration_s,
    )


# ---------------------------------------------------------------------------------------
# Smoothing and detection


def moving_average(scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean of each row and the ``count - 1`` before it (fewer at the start), and how many were averaged."""
    scores = np.asarray(scores, dtype=np.float64)
    cumulative = np.concatenate([np.zeros((1, scores.shape[1])), np.cumsum(scores, axis=0)])
    index = np.arange(len(scores))
    lower = np.maximum(0, index + 1 - count)
    averaged_count = index + 1 - lower
    return (cumulative[index + 1] - cumulative[lower]) / averaged_count[:, None], averaged_count


def _detections(
    averaged: np.ndarray,
    counts: np.ndarray,
    posteriors: Posteriors,
    threshold: float,
    smoothing: Smoothing,
    ignored: Iterable[str],
) -> list[Detection]:
    top = averaged.argmax(axis=1)
    score = averaged[np.arange(len(averaged)), top]
    ignored_index = [posteriors.class_names.index(name) for name in ignored]
    candidates = np.flatnonzero((counts >= smoothing.minimum_count) & (score > threshold) & ~np.isin(top, ignored_index))
    detections: list[Detection] = []
    last_s = -math.inf
    for index in candidates:
        # In ms rounded to a microsecond: hop multiples must not fall on either side of the suppression by float error.
        if round((posteriors.times_s[index] - last_s) * 1000.0, 3) > smoothing.suppression_ms:
            detections.append(
                Detection(
                    round(float(posteriors.times_s[index]), 6), posteriors.class_names[top[index]], round(float(score[index]), 6)
                )
            )
            last_s = posteriors.times_s[index]
    return detections


def _check_ignored(posteriors: Posteriors, ignore_labels: Iterable[str]) -> tuple[str, ...]:
    """``ignore_labels`` (checked) and the model's non-keyword classes (``_silence_``, ``_unknown_``): never detected."""
    ignored = tuple(ignore_labels)
    unknown = [name for name in ignored if name not in posteriors.class_names]
    _require(
        not unknown,
        f"Labels to ignore {', '.join(unknown)} are not classes of the model ({', '.join(posteriors.class_names)}). "
        "Name classes of the model, e.g. _silence_ or _unknown_.",
    )
    return ignored + tuple(name for name in posteriors.class_names if not is_keyword(name) and name not in ignored)


def detect(posteriors: Posteriors, smoothing: Smoothing, *, ignore_labels: Iterable[str] = ()) -> list[Detection]:
    """Detections (time, label, smoothed score) of TF's RecognizeCommands rule (module docstring).

    A winning ``_silence_``, ``_unknown_`` (any ``_name_`` class) or ``ignore_labels`` class is never reported.
    """
    averaged, counts = moving_average(posteriors.scores, smoothing.averaged_count(posteriors.hop_ms))
    return _detections(averaged, counts, posteriors, smoothing.threshold, smoothing, _check_ignored(posteriors, ignore_labels))


# ---------------------------------------------------------------------------------------
# Ground truth: matching detections to events


HIT, WRONG_LABEL, FALSE_ACCEPT, MISS = "hit", "wrong_label", "false_accept", "miss"


@dataclasses.dataclass
class Evaluation:
    """What each detection and each event became; rates per event, false accepts per hour of recording."""

    detection_outcomes: list[str]  # per detection: hit, wrong_label or false_accept
    event_outcomes: list[str]  # per event: hit, wrong_label or miss
    duration_s: float
    latencies_s: list[float]  # detection time minus event time, of the hits

    def count(self, outcome: str) -> int:
        outcomes = self.detection_outcomes if outcome == FALSE_ACCEPT else self.event_outcomes
        return outcomes.count(outcome)

    def _rate(self, numerator: int) -> float | None:
        return numerator / len(self.event_outcomes) if self.event_outcomes else None

    def summary(self) -> dict[str, Any]:
        hits, wrong, misses, false_accepts = (self.count(o) for o in (HIT, WRONG_LABEL, MISS, FALSE_ACCEPT))
        hours = self.duration_s / 3600.0
        return {
            "num_events": len(self.event_outcomes),
            "num_detections": len(self.detection_outcomes),
            "hits": hits,
            "wrong_labels": wrong,
            "misses": misses,
            "false_accepts": false_accepts,
            "hit_rate": self._rate(hits),
            "wrong_label_rate": self._rate(wrong),
            "miss_rate": self._rate(misses),
            # a wrong label fails its event too: the false-reject rate of a DET curve counts both
            "false_reject_rate": self._rate(misses + wrong),
            "false_accepts_per_hour": false_accepts / hours,
            "duration_s": self.duration_s,
            "median_latency_s": float(np.median(self.latencies_s)) if self.latencies_s else None,
            "max_latency_s": float(np.max(self.latencies_s)) if self.latencies_s else None,
        }


def _assign(
    detections: Sequence[Detection],
    events: Sequence[Event],
    tolerance_s: float,
    matched_event: list[int | None],
    event_taken: list[bool],
    *,
    same_label: bool,
) -> None:
    """Greedy in time: each unmatched detection takes the earliest untaken event it may match
    (``e <= d <= e + tolerance``); with one tolerance for all, earliest-first gives a maximum matching."""
    import bisect

    times = [event.time_s for event in events]
    for d_index, detection in enumerate(detections):
        if matched_event[d_index] is not None:
            continue
        first = bisect.bisect_left(times, detection.time_s - tolerance_s - 1e-9)
        last = bisect.bisect_right(times, detection.time_s + 1e-9)
        for e_index in range(first, last):
            if not event_taken[e_index] and (not same_label or events[e_index].label == detection.label):
                matched_event[d_index], event_taken[e_index] = e_index, True
                break


def evaluate(detections: Sequence[Detection], events: Sequence[Event], *, duration_s: float, tolerance_s: float) -> Evaluation:
    """Hits first (same label), then wrong labels among what is left; the rest are false accepts and misses.

    Taking hits first means a wrong-label detection next to a correct one counts as a false
    accept, not as the event's outcome.
    """
    detections = sorted(detections, key=lambda d: d.time_s)
    events = sorted(events, key=lambda e: e.time_s)
    matched_event: list[int | None] = [None] * len(detections)
    event_taken = [False] * len(events)
    for same_label in (True, False):
        _assign(detections, events, tolerance_s, matched_event, event_taken, same_label=same_label)
    detection_outcomes, event_outcomes, latencies = [], [MISS] * len(events), []
    for detection, e_index in zip(detections, matched_event):
        if e_index is None:
            detection_outcomes.append(FALSE_ACCEPT)
            continue
        outcome = HIT if events[e_index].label == detection.label else WRONG_LABEL
        detection_outcomes.append(outcome)
        event_outcomes[e_index] = outcome
        if outcome == HIT:
            latencies.append(round(detection.time_s - events[e_index].time_s, 6))
    return Evaluation(
        detection_outcomes=detection_outcomes, event_outcomes=event_outcomes, duration_s=duration_s, latencies_s=latencies
    )


def default_tolerance_s(frontend: FrontEnd, smoothing: Smoothing) -> float:
    """All the audio a decision rests on: the model's window plus the averaging window."""
    return (frontend.clip_ms + smoothing.average_ms) / 1000.0


def det_table(
    posteriors: Posteriors,
    events: Sequence[Event],
    smoothing: Smoothing,
    *,
    tolerance_s: float,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    ignore_labels: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """One row per threshold (the other settings as ``smoothing``): false-reject rate vs false accepts per hour."""
    averaged, counts = moving_average(posteriors.scores, smoothing.averaged_count(posteriors.hop_ms))
    ignored = _check_ignored(posteriors, ignore_labels)
    rows = []
    for threshold in thresholds:
        detections = _detections(averaged, counts, posteriors, float(threshold), smoothing, ignored)
        summary = evaluate(detections, events, duration_s=posteriors.duration_s, tolerance_s=tolerance_s).summary()
        rows.append({"threshold": float(threshold), **summary})
    return rows


# ---------------------------------------------------------------------------------------
# The events file


def _event(cells: list[str], where: str, class_names: Sequence[str] | None, duration_s: float | None) -> Event:
    _require(len(cells) == 2, f"{where} has {len(cells)} field(s); expected 2: time_s,label (e.g. 12.5,three).")
    try:
        time_s = float(cells[0])
    except ValueError:
        raise InputError(f"{where}: time {cells[0]!r} is not a number; expected seconds from the start, e.g. 12.5.") from None
    _require(math.isfinite(time_s) and time_s >= 0, f"{where}: time {cells[0]!r} must be a finite number of seconds >= 0.")
    if duration_s is not None and time_s > duration_s:
        raise InputError(
            f"{where}: the event at {time_s:g} s is past the end of the recording ({duration_s:.3f} s). "
            "Is it the events file of this recording?"
        )
    label = cells[1]
    if class_names is not None and label in class_names and not is_keyword(label):
        raise InputError(
            f"{where}: label {label!r} is not a keyword: the model's {label} class is never detected, so "
            "an event of it could only be missed. List keywords only; remove the row."
        )
    if class_names is not None and label not in class_names:
        raise InputError(
            f"{where}: label {label!r} is not a class of the model ({', '.join(keyword_classes(class_names))}). "
            "Fix the label, or pass --class-names with the model's class order."
        )
    return Event(time_s, label)


def read_events(path: str | Path, *, class_names: Sequence[str] | None = None, duration_s: float | None = None) -> list[Event]:
    """Ground truth from a CSV of ``time_s,label`` rows (``time_s``: when the word starts), sorted by time.

    Labels are keyword classes of ``class_names`` (when given): not ``_silence_``, ``_unknown_``.

    An optional header row (``time_s,label``), blank lines and ``#`` comments are skipped; a file
    with a header and no rows is a recording with no keyword (every detection is then a false accept);
    an empty file is refused (more likely an unfinished export than a statement).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet may start it with a BOM
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise InputError(f"Cannot read the events file {path} ({reason}). Expected a CSV of time_s,label rows.") from None
    if not text.strip():  # an unfinished export or the wrong file, more likely than "no keyword" said by nothing
        raise InputError(
            f"The events file {path} is empty ({path.stat().st_size} bytes). Expected a CSV of time_s,label rows; for a "
            "recording with no keyword, write the header line `time_s,label` alone."
        )
    if "\x00" in text:
        raise InputError(f"The events file {path} holds binary data (NUL bytes); expected a text CSV of time_s,label rows.")
    events, seen_row = [], False
    for line_number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not seen_row and cells[0].lower() in ("time_s", "time"):
            seen_row = True  # the header
            continue
        seen_row = True
        events.append(_event(cells, f"{path} line {line_number}", class_names, duration_s))
    return sorted(events, key=lambda event: event.time_s)


def write_events(path: str | Path, events: Sequence[Event]) -> None:
    """The events as the CSV :func:`read_events` reads (written atomically)."""
    from edgedistill.fileio import write_text_atomic

    write_text_atomic(path, "time_s,label\n" + "".join(f"{event.time_s:.4f},{event.label}\n" for event in events))


__all__ = [
    "CHUNK_WINDOWS",
    "DEFAULT_THRESHOLDS",
    "FRONT_END_STATES",
    "Detection",
    "Evaluation",
    "Event",
    "Posteriors",
    "Smoothing",
    "StreamModel",
    "StreamSettings",
    "class_names_for",
    "class_names_of_run",
    "continuous_features",
    "default_tolerance_s",
    "det_table",
    "detect",
    "evaluate",
    "keyword_classes",
    "moving_average",
    "read_events",
    "read_recording",
    "reset_window_features",
    "stream_posteriors",
    "window_end_times",
    "window_starts",
    "write_events",
]
