"""``edgedistill listen``: keyword spotting over a long recording with a run's front end and int8 model.

A thin click command over :mod:`edgedistill.audio.streaming` (the design, the smoothing rule and
the matching rule are described there). Every input is checked before the recording is processed,
and the JSON output is written atomically at the end, so a bad input leaves nothing behind.
Importing this module does not import TensorFlow (the TFLM interpreter runs both models).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import click

from edgedistill.audio.streaming import FRONT_END_STATES, Detection, Event, Posteriors, Smoothing, StreamModel, StreamSettings
from edgedistill.commands.options import config_options
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)


def _parse_labels(text: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


def _load_models(folder: str, class_names: tuple[str, ...] | None) -> tuple[Any, dict[str, str]]:
    """The checked :class:`StreamModel` of a run or micro folder, and where its two files are. Without
    ``class_names``, the class names the run's report recorded (its ``_silence_``/``_unknown_`` too) or the indices."""
    from edgedistill.audio.streaming import StreamModel, class_names_of_run
    from edgedistill.micro import load_micro_export

    export = load_micro_export(folder)  # a folder without a complete micro export: one InputError with its fix
    front_end_path = export.micro_dir / str(export.metadata.get("front_end", {}).get("file", "front_end.tflite"))
    if "front_end" not in export.metadata or not front_end_path.is_file():
        raise InputError(
            f"{folder} has no audio front end ({front_end_path} is missing): `listen` needs the micro/ folder of a run on "
            "--data audio:DIR, which holds front_end.tflite beside the model."
        )
    model_path = export.model_path
    if not model_path.is_file():
        raise InputError(
            f"{folder}: the micro export was made from {export.metadata.get('model_file')!r}, which is neither in "
            f"{export.micro_dir} nor in {export.run_dir}. Put the int8 model there, or pass the run folder that holds it."
        )
    model_bytes, arena_bytes = model_path.read_bytes(), export.tensor_arena_size
    if export.metadata.get("memory_plan", {}).get("used_plan"):
        # kTensorArenaSize is the arena of the export's offline-planned copy (in model_data.cc); the .tflite
        # read here keeps TFLM's greedy placement, which may need more: measure its own.
        from edgedistill.tflm import smallest_arena

        arena_bytes = smallest_arena(model_bytes, source=str(model_path)).arena_bytes
    model = StreamModel(
        front_end_path.read_bytes(),
        model_bytes,
        arena_bytes=arena_bytes,
        class_names=class_names,
        frontend_source=str(front_end_path),
        model_source=str(model_path),
        recorded_class_names=class_names_of_run(export.run_dir) if class_names is None else None,
    )
    return model, {"front_end": str(front_end_path), "model": str(model_path)}


def _print_detections(detections: list, smoothing: Smoothing) -> None:
    click.echo(
        f"{len(detections)} detection(s) (threshold {smoothing.threshold:g}, average {smoothing.average_ms:g} ms, "
        f"suppression {smoothing.suppression_ms:g} ms, minimum count {smoothing.minimum_count}):"
    )
    for detection in detections:
        click.echo(f"  {detection.time_s:10.2f} s  {detection.label:<12} {detection.score:.3f}")


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100.0 * rate:.1f} %"


def _print_evaluation(summary: dict[str, Any], det: list[dict[str, Any]]) -> None:
    click.echo(
        f"events: {summary['num_events']}: hits {summary['hits']} ({_percent(summary['hit_rate'])}), wrong label "
        f"{summary['wrong_labels']}, misses {summary['misses']}; false accepts {summary['false_accepts']} "
        f"({summary['false_accepts_per_hour']:.1f} per hour)"
    )
    click.echo("threshold sweep (DET): threshold | hit rate | false-reject rate | false accepts per hour")
    for row in det:
        click.echo(
            f"  {row['threshold']:<5g} | {_percent(row['hit_rate']):>7} | {_percent(row['false_reject_rate']):>7} "
            f"| {row['false_accepts_per_hour']:8.1f}"
        )


def _check_tolerance_and_output(tolerance_ms: float | None, output: str | None) -> None:
    """Before the recording is processed: a usable --tolerance-ms, and a folder -o/--output can be written to."""
    from edgedistill.fileio import ensure_writable_dir

    if tolerance_ms is not None and not (tolerance_ms >= 0 and tolerance_ms != float("inf")):
        raise InputError(f"--tolerance-ms must be a finite number >= 0. Received: {tolerance_ms!r}.")
    if output:
        ensure_writable_dir(Path(output).expanduser().absolute().parent, what="the folder of -o/--output")


def _evaluate_events(
    detections: list[Detection],
    posteriors: Posteriors,
    events: list[Event],
    events_path: str | None,
    model: StreamModel,
    smoothing: Smoothing,
    tolerance_ms: float | None,
    ignored: tuple[str, ...],
    duration_s: float,
) -> dict[str, Any]:
    """Score the detections against the ground-truth events and print it: the tolerance, the evaluation and the
    threshold sweep (DET table), as the JSON output's entries."""
    from edgedistill.audio import streaming

    tolerance_s = streaming.default_tolerance_s(model.frontend, smoothing) if tolerance_ms is None else tolerance_ms / 1000
    summary = streaming.evaluate(detections, events, duration_s=duration_s, tolerance_s=tolerance_s).summary()
    det = streaming.det_table(posteriors, events, smoothing, tolerance_s=tolerance_s, ignore_labels=ignored)
    _print_evaluation(summary, det)
    return {"events": events_path, "tolerance_s": tolerance_s, "evaluation": summary, "det": det}


@click.command("listen")
@click.argument("folder", type=click.Path())
@click.argument("recording", type=click.Path())
@click.option(
    "--events",
    "events_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Ground truth: a CSV of time_s,label rows (time_s: when the word starts). Adds hits, wrong labels, "
    "misses, false accepts per hour and a threshold sweep (DET table).",
)
# --hop-ms, --front-end-state, --average-ms, --threshold, --suppression-ms, --minimum-count: the fields of
# StreamSettings and Smoothing (one definition each: default, help, check).
@config_options([StreamSettings, Smoothing], overrides={"front_end_state": {"metavar": "|".join(FRONT_END_STATES)}})
@click.option(
    "--tolerance-ms",
    type=float,
    default=None,
    help="A detection matches an event up to this long after the event's time. Unset: the model's window plus --average-ms.",
)
@click.option(
    "--class-names",
    default=None,
    help="The model's classes in output order (comma-separated, or a labels file). Unset: the names the "
    "run's report.json recorded, else the output index (FSDD's digits are their index).",
)
@click.option(
    "--ignore-labels",
    default="",
    help="Further classes never reported (comma-separated); classes named _like_this_ (_silence_, _unknown_) never are.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON file of the detections (and, with --events, the evaluation and the sweep).",
)
def listen(
    folder: str,
    recording: str,
    events_path: str | None,
    threshold: float,
    average_ms: float,
    suppression_ms: float,
    minimum_count: int,
    hop_ms: int,
    front_end_state: str,
    tolerance_ms: float | None,
    class_names: str | None,
    ignore_labels: str,
    output: str | None,
) -> None:
    """Keyword spotting over a long RECORDING with the front end and int8 model of FOLDER (a run or its micro/).

    Slides the model over the recording, smooths its posteriors and prints the detections; with
    --events, also hits, wrong labels, misses and false accepts per hour, and a threshold sweep.
    """
    from edgedistill.audio import streaming
    from edgedistill.fileio import write_json_atomic
    from edgedistill.images import parse_class_names

    smoothing = Smoothing(average_ms=average_ms, threshold=threshold, suppression_ms=suppression_ms, minimum_count=minimum_count)
    settings = StreamSettings(hop_ms=hop_ms, front_end_state=front_end_state)
    _check_tolerance_and_output(tolerance_ms, output)
    model, files = _load_models(folder, parse_class_names(class_names))
    samples = streaming.read_recording(recording, model.frontend)
    duration_s = len(samples) / model.frontend.sample_rate
    events = streaming.read_events(events_path, class_names=model.class_names, duration_s=duration_s) if events_path else None
    started = time.perf_counter()
    posteriors = streaming.stream_posteriors(model, samples, settings)
    seconds = time.perf_counter() - started
    ignored = _parse_labels(ignore_labels)
    detections = streaming.detect(posteriors, smoothing, ignore_labels=ignored)
    click.echo(
        f"{recording}: {duration_s:.1f} s, {len(posteriors.times_s)} windows every {hop_ms} ms (front end "
        f"{front_end_state}), {seconds:.1f} s on TFLM: real-time factor {seconds / duration_s:.3f}"
    )
    _print_detections(detections, smoothing)
    result: dict[str, Any] = {
        "recording": str(recording),
        "duration_s": duration_s,
        **files,
        "class_names": list(model.class_names),
        "keyword_classes": list(streaming.keyword_classes(model.class_names)),
        "settings": {**vars(settings), **vars(smoothing), "ignore_labels": list(ignored)},
        "processing_seconds": seconds,
        "real_time_factor": seconds / duration_s,
        "detections": [vars(detection) for detection in detections],
    }
    if events is not None:
        result.update(
            _evaluate_events(detections, posteriors, events, events_path, model, smoothing, tolerance_ms, ignored, duration_s)
        )
    if output:
        write_json_atomic(output, result)
        click.echo(f"wrote {output}")


__all__ = ["listen"]
