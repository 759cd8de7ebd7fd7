"""Streaming keyword spotting on FSDD (issue 11, item 6): a distilled int8 student slid over long
recordings of held-out digits among distractor words and background noise, with the device front end.

The student is trained by the project's own flow (`edgedistill run --data audio:FSDD`, FSDD's usual
split `index<5` held out), unless --run-dir gives a finished run. The recordings use held-out clips
only, in two disjoint parts: a *development* recording (clips with index 0-1) on which the operating
threshold is picked, and an *evaluation* recording (index 2-4, >= 10 minutes) on which everything is
reported. Each recording: the digit clips and distractor words (non-digit words spoken by espeak-ng
with several voices, resampled to 8 kHz, at the digits' median loudness) in random order, each after
a random gap, at known start times; generated pink noise under everything at --snr-db relative to
the RMS of the speech (digits and distractors, over their extent). The recordings and their events
files are written next to the run, so `edgedistill listen` can be run on them by hand.

For both front-end states (reset per window, the default; continuous) it reports detections, hit
rate, wrong labels, misses, false accepts per hour, the DET sweep and the real-time factor on this
host (TFLM interpreter, one thread); it also measures how far continuous features are from
per-window-reset features, whether LiteRT agrees with TFLM bit for bit on the windows, and the
student's accuracy on FSDD's 300 usual test clips (index < 5; argmax over all its outputs, so a digit
taken for _silence_ or _unknown_ is an error).

With --silence-fraction F and --unknown-words N the student is trained with a _silence_ class
(F x the keyword clips of each split, from generated noise) and an _unknown_ class: N words of
UNKNOWN_WORDS (disjoint from the evaluation's DISTRACTOR_WORDS) spoken by espeak-ng with each of the
UNKNOWN_VOICES (other voice variants than the distractors'), at 8 kHz, written to
benchmarks/.external/streaming_kws/unknown_words_n{N}_seed{seed}/. Streaming never detects either
class. The recordings do not depend on these options (their own random stream), so runs with and
without them are measured on the same audio.

    nice -n 10 .venv/bin/python benchmarks/streaming_kws.py [--run-dir DIR] [--snr-db 20] [--seed 0]
        [--silence-fraction 0.1 --unknown-words 60] [--output PATH]

Writes benchmarks/results/streaming_kws.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / ".external" / "streaming_kws"  # git-ignored: the run, the recordings
DEFAULT_FSDD = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
RATE = 8000
DISTRACTOR_WORDS = (
    "hello",
    "weather",
    "music",
    "kitchen",
    "morning",
    "window",
    "table",
    "yellow",
    "garden",
    "coffee",
    "travel",
    "computer",
    "orange",
    "river",
    "happy",
    "basket",
    "dinner",
    "pencil",
    "summer",
    "rocket",
    "bottle",
    "camera",
    "forest",
    "jacket",
    "ladder",
    "monkey",
    "pocket",
    "purple",
    "silver",
    "blanket",
)  # no digit and no digit homophone (to, for, won, ate)
VOICES = ("en-us+m3", "en-us+f2", "en-gb+m1", "en-gb+f4", "en-gb-scotland+m2", "en-029+f3")
# The _unknown_ class's training words (--unknown-words): none of the evaluation's distractors, no digit or digit
# homophone; spoken by voice variants the distractors do not use (espeak-ng remains one synthesizer, though).
UNKNOWN_WORDS = (
    "apple",
    "banana",
    "bicycle",
    "bridge",
    "butter",
    "candle",
    "carpet",
    "castle",
    "chicken",
    "circle",
    "cloud",
    "doctor",
    "dragon",
    "engine",
    "family",
    "finger",
    "flower",
    "guitar",
    "hammer",
    "island",
    "jungle",
    "kettle",
    "lemon",
    "letter",
    "lizard",
    "magnet",
    "marble",
    "meadow",
    "mirror",
    "ocean",
    "paper",
    "parrot",
    "pepper",
    "picture",
    "planet",
    "potato",
    "puzzle",
    "rabbit",
    "ribbon",
    "saddle",
    "salad",
    "shadow",
    "shoulder",
    "sister",
    "spider",
    "station",
    "sugar",
    "teacher",
    "thunder",
    "tiger",
    "tomato",
    "tunnel",
    "turtle",
    "valley",
    "velvet",
    "village",
    "violin",
    "wagon",
    "walrus",
    "water",
    "wizard",
    "zebra",
    "anchor",
    "button",
    "cactus",
    "dolphin",
    "feather",
    "glacier",
    "harbor",
    "honey",
    "insect",
    "lantern",
    "mountain",
    "noodle",
    "pillow",
    "rainbow",
    "sandwich",
    "tractor",
    "umbrella",
    "whistle",
)
UNKNOWN_VOICES = ("en-us+m1", "en-us+f4", "en-gb-x-rp+m4", "en-gb-x-gbclan+f1", "en-gb-x-gbcwmd+m6", "en-029+f5")
UNKNOWN_SEED_OFFSET = 7_777_777  # the unknown words' own random stream: the recordings do not move
assert not set(UNKNOWN_WORDS) & set(DISTRACTOR_WORDS) and not set(UNKNOWN_VOICES) & set(VOICES)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsdd", type=Path, default=DEFAULT_FSDD, help="FSDD's recordings/ folder.")
    parser.add_argument("--run-dir", type=Path, default=None, help="A finished `edgedistill run` on FSDD (skip training).")
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=30, help="Distillation epochs of the student.")
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--augment-copies", type=int, default=1)
    parser.add_argument("--snr-db", type=float, default=20.0, help="Speech RMS over background-noise RMS (dB).")
    parser.add_argument("--distractors-per-digit", type=float, default=0.5)
    parser.add_argument("--gap-s", type=float, nargs=2, default=(1.5, 3.0), help="Silence between words: uniform in [a, b] s.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hop-ms", type=int, default=100)
    parser.add_argument("--average-ms", type=float, default=500.0)
    parser.add_argument("--suppression-ms", type=float, default=1000.0)
    parser.add_argument("--minimum-count", type=int, default=3)
    parser.add_argument(
        "--target-false-accepts-per-hour",
        type=float,
        default=10.0,
        help="The operating threshold: the lowest whose false accepts per hour on the development recording are at most this.",
    )
    parser.add_argument(
        "--max-digits", type=int, default=0, help="Quick runs: at most this many digit clips a recording (0: all)."
    )
    parser.add_argument("--litert-windows", type=int, default=1000, help="Windows on which LiteRT is compared with TFLM.")
    parser.add_argument(
        "--silence-fraction",
        type=float,
        default=0.0,
        help="Train the student with a _silence_ class of this fraction of the keyword clips (0: none).",
    )
    parser.add_argument(
        "--unknown-words",
        type=int,
        default=0,
        help=f"Train the student with an _unknown_ class of this many words (at most {len(UNKNOWN_WORDS)}), "
        f"each spoken by the {len(UNKNOWN_VOICES)} UNKNOWN_VOICES (0: none).",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "streaming_kws.json")
    return parser.parse_args()


# ---------------------------------------------------------------------------------------
# The student: the project's own flow


def run_name(args: argparse.Namespace) -> str:
    name = f"fsdd_student_seed{args.seed}"
    if args.silence_fraction:
        name += f"_silence{args.silence_fraction:g}"
    return name + (f"_unknown{args.unknown_words}" if args.unknown_words else "")


def train_student(args: argparse.Namespace) -> tuple[Path, dict]:
    """`edgedistill run` on FSDD's usual split; its CPU time is that of the child processes."""
    extra = ["--audio-silence-fraction", str(args.silence_fraction)] if args.silence_fraction else []
    if args.unknown_words:
        extra += ["--audio-unknown-dir", str(unknown_words(args))]
    command = [
        str(ROOT / ".venv" / "bin" / "edgedistill"),
        "run",
        "--data",
        f"audio:{args.fsdd}",
        "--audio-label-pattern",
        "{label}_{speaker}_{index}.wav",
        "--audio-test-split",
        "index<5",
        "--audio-sample-rate",
        str(RATE),
        "--audio-channels",
        "20",
        "--audio-trim",
        "--audio-augment-copies",
        str(args.augment_copies),
        "--teacher-preset",
        "dscnn_kws_large",
        "--teacher-width",
        "0.5",
        "--teacher-epochs",
        str(args.teacher_epochs),
        "--student-preset",
        "dscnn_kws",
        "--student-width",
        "0.5",
        "--epochs",
        str(args.epochs),
        "--qat-epochs",
        str(args.qat_epochs),
        "--no-bench",
        "--verbose",
        "0",
        "--output-dir",
        str(WORK),
        "--run-name",
        run_name(args),
        "--seed",
        str(args.seed),
        *extra,
    ]
    print("training:", " ".join(command), flush=True)
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cost = {
        "wall_seconds": time.perf_counter() - started,
        "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "command": command,
    }
    return WORK / run_name(args), cost


def student_summary(run_dir: Path) -> dict:
    report = json.loads((run_dir / "report.json").read_text())
    stages = report.get("stages", {})
    return {
        "run_dir": str(run_dir),
        "accuracy": report.get("verify", {}).get("accuracy", {}),
        "student": report.get("student", {}).get("source"),
        "teacher": report.get("teacher", {}).get("source"),
        "stage_wall_seconds": {name: stage.get("seconds") for name, stage in stages.items()},
        "model_flash_bytes": (run_dir / "student_int8.tflite").stat().st_size,
        "kTensorArenaSize": report.get("micro", {}).get("kTensorArenaSize"),
        "class_names": report.get("data", {}).get("audio", {}).get("class_names"),
        "added_classes": report.get("data", {}).get("audio", {}).get("added_classes"),
    }


# ---------------------------------------------------------------------------------------
# The recordings


def trim_silence(samples: np.ndarray, fraction: float = 0.02) -> np.ndarray:
    """espeak-ng pads its words with silence: keep from the first to the last sample above 2 % of the peak."""
    loud = np.flatnonzero(np.abs(samples.astype(np.float64)) > fraction * np.abs(samples).max())
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples


def distractor_clips(count: int, rng: np.random.Generator, folder: Path) -> list[tuple[np.ndarray, str]]:
    """``count`` non-digit words spoken by espeak-ng (random word, voice, speed), at 8 kHz."""
    from edgedistill.audio.wav import read_wav, resample

    clips = []
    for index in range(count):
        word, voice = DISTRACTOR_WORDS[rng.integers(len(DISTRACTOR_WORDS))], VOICES[rng.integers(len(VOICES))]
        path = folder / f"distractor_{index}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(int(rng.integers(130, 185))), "-w", str(path), word], check=True)
        samples, rate = read_wav(path)
        clips.append((trim_silence(resample(samples, rate, RATE)), f"{word}/{voice}"))
    return clips


def unknown_words(args: argparse.Namespace) -> Path:
    """The _unknown_ class's training clips: ``args.unknown_words`` words x UNKNOWN_VOICES, espeak-ng at a random
    speed, trimmed, at 8 kHz, at the FSDD training digits' median RMS +-6 dB (made once per N and seed)."""
    import soundfile

    from edgedistill.audio.wav import read_wav, resample

    if not 0 < args.unknown_words <= len(UNKNOWN_WORDS):
        sys.exit(f"--unknown-words must be in 1..{len(UNKNOWN_WORDS)}; received {args.unknown_words}.")
    folder = WORK / f"unknown_words_n{args.unknown_words}_seed{args.seed}"
    done = folder / "done.json"
    if done.is_file():
        return folder
    rng = np.random.default_rng(args.seed + UNKNOWN_SEED_OFFSET)
    words = [UNKNOWN_WORDS[i] for i in sorted(rng.permutation(len(UNKNOWN_WORDS))[: args.unknown_words])]
    loudness = float(np.median([rms(clip) for clip, _ in digit_clips(args.fsdd, tuple(range(5, 50)))]))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="espeak-") as scratch:
        for word in words:
            for voice in UNKNOWN_VOICES:
                raw = Path(scratch) / "word.wav"
                subprocess.run(
                    ["espeak-ng", "-v", voice, "-s", str(int(rng.integers(120, 190))), "-w", str(raw), word], check=True
                )
                samples, rate = read_wav(raw)
                clip = trim_silence(resample(samples, rate, RATE)).astype(np.float64)
                clip *= loudness / max(rms(clip), 1e-9) * 10 ** (rng.uniform(-6, 6) / 20)
                soundfile.write(
                    str(folder / f"{word}_{voice.replace('+', '_')}.wav"),
                    np.clip(np.round(clip), -32768, 32767).astype(np.int16),
                    RATE,
                    subtype="PCM_16",
                )
    done.write_text(json.dumps({"words": words, "voices": list(UNKNOWN_VOICES), "target_rms": loudness}))
    print(f"unknown words: {len(words)} words x {len(UNKNOWN_VOICES)} voices -> {folder}", flush=True)
    return folder


def digit_clips(fsdd: Path, indices: tuple[int, ...]) -> list[tuple[np.ndarray, str]]:
    """FSDD's held-out clips (``index < 5``) with the given indices, every digit and speaker; label = the digit."""
    from edgedistill.audio.wav import read_wav

    paths = sorted(p for p in fsdd.glob("*_*_*.wav") if int(p.stem.split("_")[2]) in indices)
    if not paths:
        sys.exit(f"No FSDD clips with index in {indices} in {fsdd}.")
    return [(read_wav(path)[0], path.stem.split("_")[0]) for path in paths]


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def build_recording(
    digits: list, distractors: list, args: argparse.Namespace, rng: np.random.Generator
) -> tuple[np.ndarray, list, list, dict]:
    """The words in random order after random gaps, pink noise at ``snr_db``: (int16 audio, events, word placements
    ``(start_s, end_s, label, is_digit)``, description)."""
    from edgedistill.audio.augment import generated_noise
    from edgedistill.audio.streaming import Event

    loudness = float(np.median([rms(clip) for clip, _ in digits]))
    items = [(clip, label, True) for clip, label in digits] + [
        (clip.astype(np.float64) * loudness / max(rms(clip), 1e-9), label, False) for clip, label in distractors
    ]
    order = rng.permutation(len(items))
    placed, time_s = [], 1.0
    for index in order:
        clip, label, is_digit = items[index]
        placed.append((time_s, clip, label, is_digit))
        time_s += len(clip) / RATE + float(rng.uniform(*args.gap_s))
    signal = np.zeros(int((time_s + 1.0) * RATE))
    for start_s, clip, _, _ in placed:
        signal[int(round(start_s * RATE)) :][: len(clip)] += clip
    speech = np.concatenate([np.asarray(clip, dtype=np.float64) for _, clip, _, _ in placed])
    noise = generated_noise(len(signal), rng)[1]  # pink, unit RMS
    noise_rms = rms(speech) / 10 ** (args.snr_db / 20)
    audio = np.clip(np.round(signal + noise * noise_rms), -32768, 32767).astype(np.int16)
    events = [Event(round(int(round(start_s * RATE)) / RATE, 4), label) for start_s, _, label, is_digit in placed if is_digit]
    placements = [(start_s, start_s + len(clip) / RATE, label, is_digit) for start_s, clip, label, is_digit in placed]
    description = {
        "duration_s": len(audio) / RATE,
        "num_digits": len(digits),
        "num_distractors": len(distractors),
        "speech_rms": rms(speech),
        "noise_rms": noise_rms,
        "snr_db": args.snr_db,
        "noise": "generated pink noise",
        "gap_s": list(args.gap_s),
        "distractor_words": sorted({label.split("/")[0] for _, _, label, d in placed if not d}),
        "voices": list(VOICES),
    }
    return audio, events, placements, description


def write_recording(name: str, audio: np.ndarray, events: list, folder: Path) -> tuple[Path, Path]:
    import soundfile

    from edgedistill.audio.streaming import write_events

    wav, csv = folder / f"{name}.wav", folder / f"{name}_events.csv"
    soundfile.write(str(wav), audio, RATE, subtype="PCM_16")
    write_events(csv, events)
    return wav, csv


def recordings(args: argparse.Namespace) -> dict[str, dict]:
    """The development (index 0-1) and evaluation (index 2-4) recordings, written to WORK."""
    rng = np.random.default_rng(args.seed)
    made = {}
    with tempfile.TemporaryDirectory(prefix="espeak-") as scratch:
        for name, indices in (("development", (0, 1)), ("evaluation", (2, 3, 4))):
            digits = digit_clips(args.fsdd, indices)
            if args.max_digits:
                digits = [digits[i] for i in sorted(rng.permutation(len(digits))[: args.max_digits])]
            distractors = distractor_clips(int(round(len(digits) * args.distractors_per_digit)), rng, Path(scratch))
            audio, events, placements, description = build_recording(digits, distractors, args, rng)
            wav, csv = write_recording(f"{name}_snr{args.snr_db:g}_seed{args.seed}", audio, events, WORK)
            made[name] = {
                "audio": audio,
                "events": events,
                "placements": placements,
                "wav": wav,
                "csv": csv,
                "description": description,
            }
            print(
                f"{name}: {description['duration_s'] / 60:.1f} min, {len(digits)} digits, {len(distractors)} distractors "
                f"-> {wav}",
                flush=True,
            )
    return made


# ---------------------------------------------------------------------------------------
# Listening


def load_model(run_dir: Path):
    """The run's front end and int8 model, as `edgedistill listen` loads them (class names: the run's report, else
    the index, which FSDD's digits are)."""
    from edgedistill.audio.streaming import StreamModel, class_names_of_run
    from edgedistill.micro import load_micro_export

    export = load_micro_export(run_dir)
    return StreamModel(
        (export.micro_dir / "front_end.tflite").read_bytes(),
        export.model_path.read_bytes(),
        arena_bytes=export.tensor_arena_size,
        model_source=str(export.model_path),
        recorded_class_names=class_names_of_run(export.run_dir),
    )


def keyword_test_accuracy(model, fsdd: Path) -> dict:
    """The int8 student (TFLM) on FSDD's 300 usual test clips (index < 5), argmax over all its outputs: a digit
    taken for _silence_ or _unknown_ is an error (and counted as rejected)."""
    from edgedistill.audio.extra_classes import is_keyword
    from edgedistill.audio.wav import ClipFormat, read_clip

    paths = sorted(p for p in fsdd.glob("*_*_*.wav") if int(p.stem.split("_")[2]) < 5)
    clip_format = ClipFormat(RATE, model.frontend.clip_samples, trim=True)
    clips = np.stack([read_clip(path, clip_format) for path in paths])
    predicted = [model.class_names[i] for i in model.posteriors(model.runner.features(clips)).argmax(axis=1)]
    labels = [p.stem.split("_")[0] for p in paths]
    return {
        "num_clips": len(paths),
        "accuracy": float(np.mean([p == y for p, y in zip(predicted, labels)])),
        "rejected_as_non_keyword": float(np.mean([not is_keyword(p) for p in predicted])),
    }


def listen(model, recording: dict, state: str, args: argparse.Namespace) -> dict:
    """Posteriors (timed), the DET sweep and what the recording's events make of them."""
    from edgedistill.audio.streaming import Smoothing, StreamSettings, default_tolerance_s, det_table, stream_posteriors

    smoothing = Smoothing(average_ms=args.average_ms, suppression_ms=args.suppression_ms, minimum_count=args.minimum_count)
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    posteriors = stream_posteriors(model, recording["audio"], StreamSettings(hop_ms=args.hop_ms, front_end_state=state))
    after = resource.getrusage(resource.RUSAGE_SELF)
    seconds, cpu = time.perf_counter() - started, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    tolerance_s = default_tolerance_s(model.frontend, smoothing)
    thresholds = [round(0.30 + 0.02 * step, 2) for step in range(35)] + [0.99, 0.995, 0.998, 0.999]
    det = [
        {key: row[key] for key in DET_KEYS}
        for row in det_table(posteriors, recording["events"], smoothing, tolerance_s=tolerance_s, thresholds=thresholds)
    ]
    duration = recording["description"]["duration_s"]
    return {
        "posteriors": posteriors,
        "smoothing": smoothing,
        "tolerance_s": tolerance_s,
        "det": det,
        "wall_seconds": seconds,
        "cpu_seconds": cpu,
        "real_time_factor_wall": seconds / duration,
        "real_time_factor_cpu": cpu / duration,
        "num_windows": len(posteriors.times_s),
    }


def average_sweep(heard: dict, recording: dict) -> dict[str, list[dict]]:
    """The DET excerpt for other averaging windows (the posteriors do not depend on smoothing)."""
    import dataclasses

    from edgedistill.audio.streaming import det_table

    sweep = {}
    for average_ms in (300.0, 500.0, 800.0, 1000.0):
        smoothing = dataclasses.replace(heard["smoothing"], average_ms=average_ms)
        tolerance_s = heard["tolerance_s"] + (average_ms - heard["smoothing"].average_ms) / 1000  # the window + this average
        rows = det_table(heard["posteriors"], recording["events"], smoothing, tolerance_s=tolerance_s, thresholds=DET_EXCERPT)
        sweep[f"{average_ms:g}"] = [
            {key: row[key] for key in ("threshold", "false_reject_rate", "false_accepts_per_hour")} for row in rows
        ]
    return sweep


def operating_threshold(det: list[dict], target: float) -> float:
    """The lowest threshold whose false accepts per hour are at most ``target`` (the development recording's)."""
    usable = [row["threshold"] for row in det if row["false_accepts_per_hour"] <= target]
    return min(usable) if usable else max(row["threshold"] for row in det)


def false_accept_sources(detections: list, outcomes: list[str], placements: list, tolerance_s: float) -> dict[str, int]:
    """What was in the audio a false accept rests on: a distractor word, a digit (detected again, or as it
    started), or only noise; a word counts from its start to ``tolerance_s`` after its end."""
    from collections import Counter

    sources: Counter = Counter()
    for detection, outcome in zip(detections, outcomes):
        if outcome != "false_accept":
            continue
        near = [digit for start, end, _, digit in placements if start - 1e-9 <= detection.time_s <= end + tolerance_s]
        sources["distractor word" if not all(near) else "digit" if near else "noise only"] += 1
    return dict(sources)


def at_threshold(heard: dict, recording: dict, threshold: float) -> dict:
    """Detections and their evaluation at one threshold, with the wrong labels spelled out."""
    import dataclasses
    from collections import Counter

    from edgedistill.audio.streaming import detect, evaluate

    smoothing = dataclasses.replace(heard["smoothing"], threshold=threshold)
    detections = detect(heard["posteriors"], smoothing)
    evaluation = evaluate(
        detections, recording["events"], duration_s=recording["description"]["duration_s"], tolerance_s=heard["tolerance_s"]
    )
    detections = sorted(detections, key=lambda d: d.time_s)
    wrong = Counter(d.label for d, o in zip(detections, evaluation.detection_outcomes) if o == "wrong_label")
    sources = false_accept_sources(detections, evaluation.detection_outcomes, recording["placements"], heard["tolerance_s"])
    return {
        "threshold": threshold,
        **evaluation.summary(),
        "wrong_label_detected_as": dict(wrong),
        "false_accepts_on": sources,
        "detections": [dataclasses.asdict(d) | {"outcome": o} for d, o in zip(detections, evaluation.detection_outcomes)],
    }


def feature_difference(model, audio: np.ndarray, hop_ms: int) -> dict:
    """How far a continuous front end's window features are from per-window-reset (training) features."""
    from edgedistill.audio.streaming import continuous_features, reset_window_features, window_starts

    frontend = model.frontend
    starts = window_starts(len(audio), frontend, hop_ms)[::10]  # every 10th window: enough for the statistics
    reset = reset_window_features(model.runner, audio, starts).astype(np.int64)
    continuous = continuous_features(model.runner, audio)
    running = np.stack([continuous[s : s + frontend.num_frames] for s in starts]).astype(np.int64)
    difference = np.abs(running - reset)
    return {
        "num_windows_compared": len(starts),
        "fraction_of_values_differing": float(np.mean(difference != 0)),
        "mean_abs_difference_int8_steps": float(difference.mean()),
        "mean_abs_difference_by_frame": [round(float(v), 1) for v in difference.mean(axis=(0, 2))],
        "first_window_identical": bool(np.array_equal(running[0], reset[0])),
    }


def litert_agreement(model, run_dir: Path, audio: np.ndarray, args: argparse.Namespace) -> dict:
    """Whether LiteRT (builtin kernels, no delegate; and its default XNNPACK) gives TFLM's int8 outputs, and how fast."""
    from edgedistill.audio.frontend import features_to_float
    from edgedistill.audio.streaming import reset_window_features, window_starts
    from edgedistill.tflite_model import LiteRTModel

    starts = window_starts(len(audio), model.frontend, args.hop_ms)[: args.litert_windows]
    inputs = features_to_float(reset_window_features(model.runner, audio, starts))
    started = time.perf_counter()
    tflm = model.model.raw_outputs(inputs)
    result = {"num_windows": len(starts), "tflm_seconds": time.perf_counter() - started}
    model_bytes = (run_dir / "student_int8.tflite").read_bytes()
    for kernels in ("builtin", "default"):
        litert = LiteRTModel(model_bytes, kernels=kernels)
        started = time.perf_counter()
        outputs = litert.raw_outputs(inputs)
        seconds = time.perf_counter() - started
        difference = np.abs(outputs.astype(np.int64) - tflm.astype(np.int64))
        result[kernels] = {
            "seconds": seconds,
            "speedup_over_tflm": result["tflm_seconds"] / seconds,
            "fraction_of_windows_differing": float(np.mean(difference.max(axis=1) > 0)),
            "max_difference_int8_steps": int(difference.max()),
            "argmax_differs_fraction": float(np.mean(outputs.argmax(1) != tflm.argmax(1))),
        }
    return result


# ---------------------------------------------------------------------------------------
# The run and its report


STATES = ("reset", "continuous")
DET_KEYS = (
    "threshold",
    "hits",
    "wrong_labels",
    "misses",
    "false_accepts",
    "hit_rate",
    "false_reject_rate",
    "false_accepts_per_hour",
)
DET_EXCERPT = (0.5, 0.6, 0.7, 0.8, 0.9, 0.96, 0.99, 0.995, 0.998, 0.999)


def evaluate_states(model, made: dict, args: argparse.Namespace) -> dict:
    """Per front-end state: the operating threshold from the development recording, then both recordings."""
    from edgedistill.audio.streaming import Smoothing

    results = {}
    for state in STATES:
        heard = {name: listen(model, recording, state, args) for name, recording in made.items()}
        threshold = operating_threshold(heard["development"]["det"], args.target_false_accepts_per_hour)
        results[state] = {"operating_threshold": threshold}
        for name, recording in made.items():
            entry = {key: value for key, value in heard[name].items() if key not in ("posteriors", "smoothing")}
            entry["at_operating_threshold"] = at_threshold(heard[name], recording, threshold)
            entry["at_default_threshold"] = at_threshold(heard[name], recording, Smoothing.threshold)
            for key in ("at_operating_threshold", "at_default_threshold"):
                entry[key].pop("detections")  # `edgedistill listen ... -o` writes them; here the counts suffice
            if state == "reset":
                entry["average_ms_sweep"] = average_sweep(heard[name], recording)
            results[state][name] = entry
            row = entry["at_operating_threshold"]
            print(
                f"[{state}] {name}: threshold {threshold:g}: hits {row['hits']}/{row['num_events']}, wrong "
                f"{row['wrong_labels']}, misses {row['misses']}, false accepts {row['false_accepts']} "
                f"({row['false_accepts_per_hour']:.1f}/h); real-time factor {entry['real_time_factor_wall']:.3f}",
                flush=True,
            )
    return results


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def table(results: dict) -> str:
    lines = [
        "| front end | recording | threshold | hits | wrong label | misses | false accepts | per hour "
        "| on distractor / digit / noise "
        "| median latency | real-time factor (wall, CPU) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for state in STATES:
        for name in ("development", "evaluation"):
            entry = results["states"][state][name]
            for key, how in (("at_operating_threshold", "dev-picked"), ("at_default_threshold", "default")):
                row = entry[key]
                lines.append(
                    f"| {state} | {name} | {row['threshold']:g} ({how}) "
                    f"| {row['hits']}/{row['num_events']} ({percent(row['hit_rate'])}) "
                    f"| {row['wrong_labels']} | {row['misses']} | {row['false_accepts']} | {row['false_accepts_per_hour']:.1f} "
                    f"| {' / '.join(str(row['false_accepts_on'].get(k, 0)) for k in ('distractor word', 'digit', 'noise only'))} "
                    f"| {'-' if row['median_latency_s'] is None else format(row['median_latency_s'], '.2f') + ' s'} "
                    f"| {entry['real_time_factor_wall']:.3f}, {entry['real_time_factor_cpu']:.3f} |"
                )
    return "\n".join(lines)


def det_excerpt(results: dict) -> str:
    lines = [
        "| threshold | " + " | ".join(f"{state}: false-reject rate, false accepts / h" for state in STATES) + " |",
        "|---:|" + "---:|" * len(STATES),
    ]
    for threshold in DET_EXCERPT:
        cells = []
        for state in STATES:
            row = next(r for r in results["states"][state]["evaluation"]["det"] if abs(r["threshold"] - threshold) < 1e-9)
            cells.append(f"{percent(row['false_reject_rate'])}, {row['false_accepts_per_hour']:.1f}")
        lines.append(f"| {threshold:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(results: dict, path: Path) -> None:
    from edgedistill.fileio import write_json_atomic

    write_json_atomic(path, results)


def main() -> None:
    args = arguments()
    if not args.fsdd.is_dir():
        sys.exit(f"FSDD not found at {args.fsdd}; pass --fsdd DIR (the recordings/ folder).")
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed (apt-get install espeak-ng): it speaks the distractor words.")
    started = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    from edgedistill.tflite_model import runtime_versions

    training = None
    run_dir = args.run_dir
    if run_dir is None:
        run_dir, training = train_student(args)
    results = {
        "benchmark": "streaming_kws",
        "command": " ".join(["python", *sys.argv]),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "host": {
            "machine": platform.machine(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "load_average_at_start": list(os.getloadavg()),
        },
        "versions": runtime_versions(),
        "student": {**student_summary(run_dir), "training": training},
    }
    made = recordings(args)
    results["recordings"] = {
        name: {**r["description"], "wav": str(r["wav"]), "events": str(r["csv"])} for name, r in made.items()
    }
    model = load_model(run_dir)
    results["keyword_test_accuracy_tflm"] = keyword_test_accuracy(model, args.fsdd)
    print(f"keyword accuracy on FSDD's usual test split (TFLM): {results['keyword_test_accuracy_tflm']}", flush=True)
    results["states"] = evaluate_states(model, made, args)
    results["feature_difference_continuous_vs_reset"] = feature_difference(model, made["evaluation"]["audio"], args.hop_ms)
    results["litert_vs_tflm"] = litert_agreement(model, run_dir, made["evaluation"]["audio"], args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results["seconds"], results["cpu_seconds_streaming_process"] = time.perf_counter() - started, usage.ru_utime + usage.ru_stime
    write(results, args.output)
    print(table(results))
    print(det_excerpt(results))
    print(f"wrote {args.output} ({results['seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
