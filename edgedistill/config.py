"""The configuration of a run: one frozen dataclass per stage, nested in :class:`RunConfig`.

Every option is defined once, as a field of a section below: its default, its help text and
its check live in the field (:func:`option`). The command line (``run``, each stage command,
``search``) is generated from these sections (:mod:`edgedistill.commands.options`), so an
option has one name, one default and one check everywhere. Field names are unique across
sections, so they are also the YAML keys and the ``--option-names``.

The other commands' options are made the same way, by :func:`option` on a :class:`Section`:
``bench``'s are :class:`MeasureConfig` (the run's benchmark takes three of them with its own
defaults, through :func:`same_option`), ``listen``'s are ``edgedistill.audio.streaming``'s
``StreamSettings`` and ``Smoothing``, ``firmware``/``flash``'s ``edgedistill.firmware.options``, and
``--scheme-options`` are each scheme's options dataclass. Library functions take their defaults from
these fields (``export_micro(memory_plan=MicroConfig.memory_plan)``), so a default is stated once.

Precedence (click's ``default_map``): command line > ``--config`` YAML > defaults.

Example::

    config = RunConfig.from_options({"temperature": 2.0, "epochs": 5})
    config.distill.temperature      # 2.0
    config.to_options()["epochs"]   # 5: the flat view, as YAML and on the command line
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from edgedistill.errors import InputError

# tf.distribute strategies training accepts: none (the default device), mirrored (every local
# GPU, or the CPU), multi_worker (the workers in TF_CONFIG; one worker without it).
STRATEGIES: tuple[str, ...] = ("none", "mirrored", "multi_worker")
IO_TYPES: tuple[str, ...] = ("int8", "float32")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
COSINE_FINAL_FRACTION = 0.01  # a cosine decay ends at 1 % of its start rate
QAT_LEARNING_RATE = 5e-4  # QAT's rate when --qat-learning-rate is unset after a constant schedule
# Tensor placement in the TFLM arena (edgedistill.micro.memory_plan): an offline plan, or TFLM's greedy planner.
MEMORY_PLANS: tuple[str, ...] = ("offline", "greedy")
# Upper bounds of counts and sizes, checked at the option: far above any real use, low enough that a
# typo (`--epochs 100000000000000000000000`) stops before the teacher trains, not in the stage after it.
MAX_EPOCHS = 100_000
MAX_COUNT = 10_000_000  # batch size, calibration samples, benchmark runs
MAX_THREADS = 1024
MAX_TEST_VECTORS = 10_000  # embedded in the firmware's flash as C arrays
MAX_WIDTH = 16.0  # a preset at width 16 has ~256x the parameters of width 1
WIDTH_RANGE = f"> 0 and <= {MAX_WIDTH:g}"


def option(
    default: Any,
    help: str,
    *,
    check: Callable[[Any], bool] | None = None,
    expected: str = "",
    choices: tuple[str, ...] | None = None,
    names: str | None = None,
    flag: str | None = None,
) -> Any:
    """A config field: its default, its ``--help`` text and its validation, in one place.

    ``check`` is called on set values (``None`` means unset and is always allowed); a value
    it rejects is an :class:`InputError` saying ``expected``. ``choices`` lists valid strings.
    ``names`` is the registry (``"module:attribute"``) whose names replace ``{names}`` in the help
    text: the command line lists what is registered (resolved only when ``--help`` is shown, by
    :mod:`edgedistill.commands.options`, because this module sits below the registries). ``flag`` is the
    command line's spelling when it is not ``--field-name`` (e.g. ``--timeout`` for ``timeout_s``).
    """
    metadata = {"help": help, "check": check, "expected": expected, "choices": choices, "names": names, "flag": flag}
    return dataclasses.field(default=default, metadata=metadata)


def _finite(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    # NaN compares False with everything, but infinity passes `> 0`: refuse both.
    return lambda value: isinstance(value, (int, float)) and math.isfinite(value) and check(value)


def positive(value: Any) -> bool:
    return _finite(lambda v: v > 0)(value)


def at_least(low: float) -> Callable[[Any], bool]:
    return _finite(lambda v: v >= low)


def between(low: float, high: float, *, closed: bool = True) -> Callable[[Any], bool]:
    return _finite((lambda v: low <= v <= high) if closed else (lambda v: low < v < high))


def whole(low: int, high: int | None = None) -> Callable[[Any], bool]:
    """A whole number (not a bool, not 2.5) in [low, high]."""
    return lambda value: (
        isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    )


def _width_ok(value: Any) -> bool:
    return _finite(lambda v: 0 < v <= MAX_WIDTH)(value)


def _image_size_ok(value: Any) -> bool:
    parts = str(value).lower().replace(",", "x").split("x")
    return 1 <= len(parts) <= 2 and all(p.strip().isdigit() and 1 <= int(p) <= 4096 for p in parts)


class Section:
    """Base of every config section: validates each field against its :func:`option` metadata."""

    if TYPE_CHECKING:  # every subclass is a dataclass (dataclasses.fields() accepts it)
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_value(field, getattr(self, field.name))

    @classmethod
    def option_names(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls)]


def same_option(section: type, name: str, *, default: Any) -> Any:
    """The option ``name`` of ``section`` (help text, check) with another default: one definition, the difference
    stated where this is called."""
    field = next(field for field in dataclasses.fields(section) if field.name == name)
    return dataclasses.field(default=default, metadata=field.metadata)


def check_value(field: dataclasses.Field, value: Any) -> None:
    """Raise :class:`InputError` when ``value`` breaks the field's choices or check."""
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        raise InputError(f"`{field.name}` must be one of: {', '.join(choices)}. Received: {field.name}={value!r}.")
    check = field.metadata.get("check")
    if check is not None and value is not None and not check(value):
        expected = field.metadata.get("expected") or "valid"
        raise InputError(f"`{field.name}` must be {expected}. Received: {field.name}={value!r}.")


# ---------------------------------------------------------------------------------------
# The sections, in flow order


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
    data: str = option(
        "digits",
        "Data set, by loader ({names}): digits (embedded default), fashion_mnist[:DIR], mnist:DIR, npz:PATH, images:DIR or audio:DIR.",
        names="edgedistill.data:LOADERS",
    )
    validation_fraction: float = option(
        0.1, "Fraction of the training split held out for validation.", check=between(0, 1, closed=False), expected="in (0, 1)"
    )
    max_train_samples: int | None = option(
        None, "Use at most this many training samples (quick runs).", check=at_least(1), expected=">= 1 (or unset)"
    )
    seed: int = option(
        0, "Random seed (data split, initialisation, shuffling).", check=between(0, 2**32 - 1), expected="in [0, 2**32 - 1]"
    )
    # images:DIR (edgedistill.images): size, colour and class order of image folders.
    image_size: str | None = option(
        None,
        "images:DIR: size the images are brought to, HxW (e.g. 32x32). Unset: the teacher's input size when "
        "--teacher is a file, else the most common size among the images.",
        check=lambda v: _image_size_ok(v),
        expected="HxW in pixels, e.g. 32x32",
    )
    color_mode: str | None = option(
        None,
        "images:DIR: rgb or grayscale. Unset: rgb when any image is colour, else grayscale.",
        check=lambda v: v in ("rgb", "grayscale"),
        expected="rgb or grayscale (or unset)",
    )
    class_names: str | None = option(
        None,
        "images:DIR: class order, as the teacher's outputs are ordered: a comma-separated list, or a labels "
        "file (one name per line). Unset: folder names in alphabetical order.",
    )
    # audio:DIR (edgedistill.audio): files, split, the device front end (TFLM Signal ops), augmentation.
    audio_label_pattern: str | None = option(
        None,
        "audio:DIR: labels from file names, a pattern of {label} and other {fields}, one of them {speaker} or "
        "{group} (e.g. {label}_{speaker}_{index}.wav). Unset: one sub-folder per class.",
    )
    audio_test_split: str = option(
        "random",
        "audio:DIR: the test split: random (20 %), FIELD=V1,V2 (e.g. speaker=theo: held-out speakers) or "
        "FIELD<N (e.g. index<5: FSDD's usual split). DIR/train and DIR/test sub-folders, when present, are the split.",
    )
    audio_sample_rate: int = option(
        16000, "Sample rate (Hz) of the audio front end and the model.", check=between(1000, 384000), expected="in [1000, 384000]"
    )
    audio_resample: str = option(
        "down",
        "Audio files at another rate: down (resample higher rates, refuse lower), any (resample every rate) or off (refuse).",
        choices=("down", "any", "off"),
    )
    audio_clip_ms: int = option(
        1000,
        "Audio window of the model (ms); shorter clips are zero-padded.",
        check=between(10, 600_000),
        expected="in [10, 600000]",
    )
    audio_align: str = option(
        "centre",
        "Where a shorter clip sits in the window, and what --audio-trim keeps of a longer one.",
        choices=("start", "centre"),
    )
    audio_trim: bool = option(False, "Trim clips longer than --audio-clip-ms (by default a longer clip is an error).")
    audio_window_ms: int = option(30, "Audio front end: frame length (ms).", check=at_least(1), expected=">= 1")
    audio_stride_ms: int = option(20, "Audio front end: frame step (ms).", check=at_least(1), expected=">= 1")
    audio_channels: int = option(
        40, "Audio front end: mel filter bank channels.", check=between(2, 1024), expected="in [2, 1024]"
    )
    audio_lower_hz: float = option(
        125.0, "Audio front end: lower edge of the filter bank (Hz).", check=at_least(0), expected=">= 0"
    )
    audio_upper_hz: float | None = option(
        None,
        "Audio front end: upper edge of the filter bank (Hz); unset: min(7500, 15/16 of the Nyquist frequency).",
        check=positive,
        expected="> 0 (or unset)",
    )
    audio_augment_copies: int = option(
        0,
        "Augmented copies of each training clip (time shift, background noise, SpecAugment masks), added after the "
        "validation split; the teacher is trained and queried on the same copies.",
        check=between(0, 1000),
        expected="in [0, 1000]",
    )
    audio_time_shift_ms: float = option(
        100.0, "Augmentation: largest random time shift (ms).", check=at_least(0), expected=">= 0"
    )
    audio_noise_dir: str | None = option(
        None, "Augmentation: folder of background-noise WAVs (mono 16-bit); unset: generated white and pink noise."
    )
    audio_noise_probability: float = option(
        0.8, "Augmentation: fraction of copies mixed with background noise.", check=between(0, 1), expected="in [0, 1]"
    )
    audio_min_snr_db: float = option(
        5.0, "Augmentation: lowest signal-to-noise ratio of the noise mix (dB).", check=at_least(-30), expected=">= -30"
    )
    audio_max_snr_db: float = option(
        20.0, "Augmentation: highest signal-to-noise ratio of the noise mix (dB).", check=at_least(-30), expected=">= -30"
    )
    audio_time_mask_frames: int = option(
        0, "SpecAugment: widest time mask (frames) on augmented copies; 0: no time mask.", check=at_least(0), expected=">= 0"
    )
    audio_frequency_mask_channels: int = option(
        0,
        "SpecAugment: widest frequency mask (channels) on augmented copies; 0: no frequency mask.",
        check=at_least(0),
        expected=">= 0",
    )
    audio_silence_fraction: float = option(
        0.0,
        "Keyword spotting: add a _silence_ class with this fraction of the keyword clips of each split (train, "
        "validation, test): clips cut at random from background noise (--audio-noise-dir, else generated white and "
        "pink noise) at a random level (-70 to -30 dBFS RMS; 10 % digital zeros), seeded by --seed. 0: no _silence_ class.",
        check=between(0, 1),
        expected="in [0, 1]",
    )
    audio_unknown_dir: str | None = option(
        None,
        "Keyword spotting: folder (searched recursively) of mono 16-bit WAVs of other words, the _unknown_ class "
        "(read as the keyword clips). A seeded random 20 % of its files are test clips, whatever --audio-test-split; "
        "validation is taken from the rest as for keywords. Unset: no _unknown_ class.",
    )
    audio_unknown_fraction: float = option(
        1.0,
        "Keyword spotting: fraction of the --audio-unknown-dir files used (a seeded random choice).",
        check=_finite(lambda v: 0 < v <= 1),
        expected="in (0, 1]",
    )


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Section):
    """How every training stage (teacher, distill, QAT) trains."""

    batch_size: int = option(
        64, "Batch size of every training stage.", check=between(1, MAX_COUNT), expected=f">= 1 and <= {MAX_COUNT:,}"
    )
    learning_rate: float = option(
        3e-3, "Adam learning rate of teacher training and distillation.", check=positive, expected="> 0"
    )
    # Measured (benchmarks/kd_defaults.py, MNIST in Hinton's set-up, 3 seeds): a cosine decay over all the epochs
    # raised the distilled students (DIST 0.40 -> 0.54 of the gap, logits T 20 0.64 -> 0.70) and not the scratch one.
    # Not the default: on digits, Fashion-MNIST and FSDD it did not raise the distilled student (Fashion-MNIST -0.56
    # point, 3 seeds); it lowered the scratch students more, which inflates the reported gain, not the student.
    lr_schedule: str = option(
        "constant",
        "Learning-rate schedule of teacher training and distillation: constant, or cosine (per epoch, from "
        "--learning-rate to 1 % of it at the last of --epochs; QAT then continues at that final rate unless "
        "--qat-learning-rate is set).",
        choices=LR_SCHEDULES,
    )
    patience: int = option(
        8, "Early-stopping patience in epochs (0 disables).", check=between(0, MAX_EPOCHS), expected=f">= 0 and <= {MAX_EPOCHS:,}"
    )
    strategy: str = option(
        "none",
        "tf.distribute strategy of the training stages: none, mirrored (all local GPUs, or the CPU) or multi_worker (the "
        "workers in TF_CONFIG).",
        choices=STRATEGIES,
    )
    verbose: int = option(
        2,
        "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.",
        check=lambda v: v in (0, 1, 2),
        expected="0, 1 or 2",
    )
    augment: bool = option(
        False,
        "Augment training images (teacher training, distillation, QAT): random crop after padding by 1/8 of "
        "the size and horizontal flip (no flip for digits; nothing for feature vectors or audio). Teacher and student "
        "see the same augmented batch.",
    )
    augment_views: int = option(
        0,
        "With --augment: 0 runs the teacher on every augmented batch; N > 0 computes the teacher's outputs once on "
        "N fixed augmented views of each training image (cached, memory-mapped on disk when large) and trains on them.",
        check=between(0, 64),
        expected="in [0, 64]",
    )


@dataclasses.dataclass(frozen=True)
class TeacherConfig(Section):
    teacher: str | None = option(
        None,
        "Teacher model file (.keras, .h5, SavedModel; Keras 2 or 3). Trained from --teacher-preset when absent. "
        "A plain TensorFlow SavedModel runs its graph when it is used.",
    )
    teacher_preset: str = option(
        "cnn",
        "Teacher architecture when no --teacher is given, one of: {names} (dscnn_kws_large: a keyword spotting teacher).",
        names="edgedistill.models:PRESETS",
    )
    teacher_width: float = option(1.0, "Width multiplier of the teacher preset.", check=_width_ok, expected=WIDTH_RANGE)
    teacher_epochs: int = option(
        30,
        "Epochs to train the teacher (early stopping may end sooner).",
        check=between(1, MAX_EPOCHS),
        expected=f">= 1 and <= {MAX_EPOCHS:,}",
    )
    calibrate_teacher: bool = option(
        False, "Temperature-scale the teacher on the validation split before distilling (ECE before/after in the report)."
    )
    teacher_preprocessing: str | None = option(
        None,
        "What the --teacher file expects of the data's raw values: unit (x/255), raw (0..255 as stored), "
        "symmetric (x/127.5-1), standardize (per-channel mean/std of the training split, or "
        "standardize:mean=M1|M2|M3,std=S1|S2|S3) or SCALE,OFFSET (x*SCALE+OFFSET). Unset: detected (the convention "
        "under which the teacher scores best on the validation split).",
    )
    min_teacher_accuracy: float | None = option(
        None,
        "Stop (exit 2) before training when the teacher's validation accuracy (%) is below this. "
        "A teacher near chance always stops the run.",
        check=between(0, 100),
        expected="in [0, 100] (or unset)",
    )


@dataclasses.dataclass(frozen=True)
class StudentConfig(Section):
    student: str | None = option(
        None, "Student model file (tf_keras, or Keras 3 .keras). Built from --student-preset when absent."
    )
    student_preset: str = option(
        "dscnn",
        "Student architecture, one of: {names}. resnet8, mobilenet_v1 (at width 0.25) and dscnn_kws are MLPerf Tiny's "
        "image classification, visual wake words and keyword spotting models; mobilenet_v2 takes inputs >= 32x32.",
        names="edgedistill.models:PRESETS",
    )
    student_width: float = option(0.5, "Width multiplier of the student preset.", check=_width_ok, expected=WIDTH_RANGE)
    max_flash_kb: float | None = option(
        None,
        "Budget: pick the largest --student-preset width whose untrained int8 model is at most this many KB.",
        check=positive,
        expected="> 0 (or unset)",
    )
    max_arena_kb: float | None = option(
        None, "Budget: ... whose TFLM tensor arena (measured) is at most this many KB.", check=positive, expected="> 0 (or unset)"
    )
    max_latency_ms: float | None = option(
        None,
        "Budget: ... whose mean latency on the host LiteRT interpreter is at most this many ms.",
        check=positive,
        expected="> 0 (or unset)",
    )
    keras: str | None = option(
        None,
        "Keras of the student: 3 (Keras 3, with edgedistill's own int8 QAT) or 2 (tf_keras + tfmot). "
        "Default: the --student file's; 2 for presets.",
        check=lambda value: str(value) in ("2", "3"),
        expected="2 or 3 (or unset)",
    )


# `--distillation-loss auto`: the losses its probe compares, as the options each sets. Measured in
# benchmarks/kd_defaults.py, each wins where the other loses: DIST (the default, first) on a 1/52 MLP student of
# Fashion-MNIST (logits at T 20 there: -4 points), Hinton's logits at T 20 with hard-label weight 0.1 on MNIST in
# Hinton's set-up (0.70 of the gap against DIST's 0.54). A 5-epoch probe picked the better of the two in 6 of 6 runs.
AUTO_LOSS = "auto"
LOSS_CANDIDATES: dict[str, dict[str, Any]] = {
    "dist_t4": {"distillation_loss": "dist:beta=2,gamma=2", "temperature": 4.0, "student_loss_weight": 0.5},
    "logits_t20": {"distillation_loss": "logits", "temperature": 20.0, "student_loss_weight": 0.1},
}
AUTO_PROBE_EPOCHS = 5  # at most; a quarter of --epochs when that is fewer


@dataclasses.dataclass(frozen=True)
class DistillConfig(Section):
    # The default is measured (benchmarks/kd_defaults.py, issue 21): vanilla logits at T 4 fell below training the
    # student alone on two of five tasks (-1.14 and -2.69 points int8, 3 seeds); DIST at its CIFAR-100 setting
    # (beta = gamma = 2, T = --temperature 4) was above or within seed noise of scratch on every task measured.
    distillation_loss: str = option(
        "dist:beta=2,gamma=2",
        "Distillation loss, one of: {names} (dkd: decoupled KD; dist: DIST), with arguments as NAME:KEY=VALUE,... "
        "(e.g. dkd:beta=8, attention:teacher_layer_name=block2_relu,student_layer_name=block2_pw_relu). The logit "
        "losses get --temperature. auto[:epochs=N]: distill a few epochs (N; default 5, at most a quarter of "
        "--epochs) with each of dist (beta=gamma=2, T 4, hard-label weight 0.5) and logits (T 20, weight 0.1), "
        "keep the loss with the better validation accuracy and train with it in full.",
        names="edgedistill.distill.losses:LOSSES",
    )
    temperature: float = option(
        4.0, "Softmax temperature T of logit distillation (the loss is scaled by T^2).", check=positive, expected="> 0"
    )
    final_temperature: float | None = option(
        None,
        "Anneal the logits temperature linearly from --temperature to this over the epochs (unset: constant).",
        check=positive,
        expected="> 0 (or unset)",
    )
    student_loss_weight: float = option(
        0.5, "Weight of the hard-label loss; the distillation loss gets 1 - this.", check=between(0, 1), expected="in [0, 1]"
    )
    epochs: int = option(
        40,
        "Distillation epochs (early stopping on validation accuracy may end sooner).",
        check=between(1, MAX_EPOCHS),
        expected=f">= 1 and <= {MAX_EPOCHS:,}",
    )
    # Written out, not {names}: the scheme registry imports TensorFlow, which `run --help` must not (a test checks
    # that this list names every registered scheme).
    scheme: str = option(
        "standard", "Distillation scheme: standard, multi_teacher, self, mutual, teacher_assistant, patient or data_free."
    )
    scheme_options: str = option(
        "",
        "Options of the scheme as KEY=VALUE,... (e.g. assistant_widths=0.5 ; teachers=a.keras|b.keras ; mode=ema ; "
        "mixup_alpha=1).",
    )
    prune_sparsity: float = option(
        0.0,
        "Prune the student's kernels to this sparsity while distilling (tfmot, gradual), kept through QAT; 0 disables.",
        check=_finite(lambda v: 0 <= v < 1),
        expected="in [0, 1) (0 disables pruning)",
    )


@dataclasses.dataclass(frozen=True)
class QatConfig(Section):
    qat_epochs: int = option(
        10,
        "Quantization-aware distillation epochs (0: post-training quantization only).",
        check=between(0, MAX_EPOCHS),
        expected=f">= 0 and <= {MAX_EPOCHS:,}",
    )
    qat_learning_rate: float | None = option(
        None,
        f"Adam learning rate of quantization-aware distillation (unset: {QAT_LEARNING_RATE:g}, or after "
        "--lr-schedule cosine the rate the decay ended at).",
        check=positive,
        expected="> 0",
    )


@dataclasses.dataclass(frozen=True)
class ConvertConfig(Section):
    io_type: str = option("int8", "Input/output type of the int8 model: int8 or float32.", choices=IO_TYPES)
    num_calibration_samples: int = option(
        200, "Training samples used to calibrate int8 ranges.", check=between(1, MAX_COUNT), expected=f">= 1 and <= {MAX_COUNT:,}"
    )


@dataclasses.dataclass(frozen=True)
class MicroConfig(Section):
    arena_margin: float = option(
        0.10,
        "Fraction added to the measured TFLM arena for kTensorArenaSize (at least 1 KiB).",
        check=between(0, 10),
        expected="in [0, 10]",
    )
    num_test_vectors: int = option(
        5,
        "Test samples embedded in the micro export for on-device checks.",
        check=between(1, MAX_TEST_VECTORS),
        expected=f">= 1 and <= {MAX_TEST_VECTORS:,}",
    )
    memory_plan: str = option(
        "offline",
        "Tensor placement in the arena: offline (an optimal plan solved with CP-SAT, written into the model and "
        "verified on TFLM; used only when it needs less arena with identical outputs, else the model is kept) or "
        "greedy (TFLM's own planner).",
        choices=MEMORY_PLANS,
    )
    compact: bool = option(
        True,
        "Store the exported model without what TFLM never reads (tensor names, signatures, per-channel zero "
        "points that are all 0: often a quarter of a small model's flash); used only when TFLM gives identical outputs. "
        "--no-compact keeps the flatbuffer as converted.",
    )
    front_end: str | None = option(
        None,
        "Audio front end (.tflite of TFLM Signal ops, front_end.tflite of an audio run) to export with the model; "
        "an audio:DIR --data brings its own.",
    )


@dataclasses.dataclass(frozen=True)
class VerifyConfig(Section):
    max_int8_drop: float = option(
        1.0,
        "Fail when int8 accuracy is more than this many points below the QAT student.",
        check=between(0, 100),
        expected="in [0, 100]",
    )
    chance_gate: bool = option(
        True,
        "Fail when the teacher, a student or the int8 model scores at most 5 points above chance on the test "
        "split (chance: guessing the most frequent label). --no-chance-gate for plumbing runs on too little data.",
    )


BASELINES = ("scratch", "none")


@dataclasses.dataclass(frozen=True)
class BaselineConfig(Section):
    """Did distillation help? The same student trained without the teacher, measured beside the distilled one."""

    baseline: str = option(
        "scratch",
        "scratch: also train the same student from scratch (hard labels only; the same epochs, schedule, augmentation, "
        "QAT epochs and int8 conversion) and report its float and int8 accuracy beside the distilled one; none: skip it. "
        "Skipped with a line saying why where it would cost far more than the distillation (a data-free scheme, whose "
        "student never trains on the data) or would not be the same student (a pruned one).",
        choices=BASELINES,
    )


@dataclasses.dataclass(frozen=True)
class MeasureConfig(Section):
    """How a target measures one model, with TFLite ``benchmark_model``'s flag names and defaults (50 timed runs
    after 1 warmup run): the options of ``edgedistill bench`` and the fields of ``targets.BenchConfig``. The run's
    own benchmark (:class:`BenchStageConfig`) takes three of them with its own defaults."""

    num_runs: int = option(
        50,
        "Timed invokes per model and target.",
        check=whole(1, MAX_COUNT),
        expected=f"a whole number >= 1 and <= {MAX_COUNT:,}",
    )
    warmup_runs: int = option(
        1,
        "Untimed invokes before timing (the first is reported as first inference).",
        check=whole(0, MAX_COUNT),
        expected=f"a whole number >= 0 and <= {MAX_COUNT:,}",
    )
    num_threads: int = option(
        1, "Interpreter threads.", check=whole(1, MAX_THREADS), expected=f"a whole number >= 1 and <= {MAX_THREADS}"
    )
    min_secs: float = option(
        0.0, "Keep invoking for at least this long, even past --num-runs.", check=at_least(0), expected="a finite number >= 0"
    )
    use_xnnpack: bool = option(True, "Use the XNNPACK delegate.", flag="--use-xnnpack/--no-xnnpack")
    timeout_s: float | None = option(
        600.0,
        "Seconds allowed per (model, target) pair; the pair is marked failed past it.",
        check=positive,
        expected="a finite number > 0",
        flag="--timeout",
    )
    inputs: str | None = option(None, ".npy/.npz inputs (default: random data of each input's dtype and shape).")
    seed: int = option(0, "Seed of the random inputs.", check=whole(0), expected="a whole number >= 0")
    profile: bool = option(
        False,
        "Per-operator profile too: <results stem>.<model>.<target>.profile.csv (benchmark_model's columns) and "
        ".trace.json (Chrome trace, opens in Perfetto) beside --results.",
        flag="--profile",
    )


@dataclasses.dataclass(frozen=True)
class BenchStageConfig(Section):
    """The run's own benchmark: the int8 and float models on the host LiteRT interpreter."""

    bench: bool = option(True, "Benchmark the int8 and float models on the host LiteRT interpreter.")
    # The measuring options of `edgedistill bench` (MeasureConfig), with the one difference stated here: the run
    # measures its own two small models with 100 timed runs after 10 warmup runs (the whole bench stage of the
    # default run takes 0.3 s, README); `bench` keeps benchmark_model's 50 / 1 and has --min-secs for longer runs.
    num_runs: int = same_option(MeasureConfig, "num_runs", default=100)
    warmup_runs: int = same_option(MeasureConfig, "warmup_runs", default=10)
    num_threads: int = same_option(MeasureConfig, "num_threads", default=1)
    bench_target: str = option(
        "local",
        "Where the run's benchmark measures: local (this host's LiteRT), ssh://user@host[:port] (a Raspberry Pi, "
        "or the emulated one of `edgedistill devices start-pi`), adb[:serial], qemu-aarch64 or tflm.",
    )
    bench_ssh_config: str | None = option(
        None, "ssh client configuration file for an ssh:// --bench-target (e.g. the emulated Pi's image/ssh_config)."
    )
    bench_profile: bool = option(
        False,
        "Also a per-operator profile of the int8 model (CSV and Chrome trace beside bench.jsonl; the five costliest "
        "ops and a bar chart in report.md).",
    )


@dataclasses.dataclass(frozen=True)
class TrustConfig(Section):
    """What a model file may do when it is loaded."""

    trust_model_code: bool = option(
        False,
        "Load model files whose layers carry Python code (Lambda layers): that code runs with your rights. "
        "Off by default; pass it only for files you trust. (A plain TensorFlow SavedModel always runs its graph.)",
    )


@dataclasses.dataclass(frozen=True)
class OutputConfig(Section):
    output_dir: str = option("runs", "Folder that holds run folders.")
    run_name: str | None = option(
        None,
        "Name of the run folder (default: UTC timestamp).",
        check=lambda v: (
            isinstance(v, str)
            and v.strip() == v
            and v not in ("", ".", "..")
            and not set(v) & set("/\\\0")
            and len(v.encode("utf-8", "surrogateescape")) <= 200
            and v.isprintable()
        ),
        expected="one folder name of printable characters, at most 200 bytes (no /, no .., not empty)",
    )


# ---------------------------------------------------------------------------------------
# The whole run


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything `edgedistill run` needs: one section per stage (plus shared training and output)."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    teacher: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)
    student: StudentConfig = dataclasses.field(default_factory=StudentConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    qat: QatConfig = dataclasses.field(default_factory=QatConfig)
    convert: ConvertConfig = dataclasses.field(default_factory=ConvertConfig)
    micro: MicroConfig = dataclasses.field(default_factory=MicroConfig)
    verify: VerifyConfig = dataclasses.field(default_factory=VerifyConfig)
    baseline: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)
    bench: BenchStageConfig = dataclasses.field(default_factory=BenchStageConfig)
    trust: TrustConfig = dataclasses.field(default_factory=TrustConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        """Section name -> its dataclass, in flow order."""
        return {field.name: field.default_factory for field in dataclasses.fields(cls)}  # type: ignore[misc]

    @classmethod
    def option_names(cls) -> list[str]:
        return [name for section in cls.sections().values() for name in section.option_names()]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "RunConfig":
        """Build from flat option names (CLI / YAML keys, ``-`` or ``_``); unknown names are errors."""
        values = {str(key).replace("-", "_"): value for key, value in options.items()}
        check_known(values, source="options")
        parts: dict[str, Any] = {
            name: section(**{key: values[key] for key in section.option_names() if key in values})
            for name, section in cls.sections().items()
        }
        return cls(**parts)

    def to_options(self) -> dict[str, Any]:
        """The flat view: option name -> value (the YAML keys and the command line's options)."""
        return {key: value for section in self.to_dict().values() for key, value in section.items()}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The nested view: section -> option -> value."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in self.sections()}

    def replace(self, **options: Any) -> "RunConfig":
        """A copy with some options changed (flat names)."""
        return RunConfig.from_options({**self.to_options(), **options})


# Options that existed under another name, with their replacement.
RENAMED_OPTIONS: dict[str, str] = {}


def check_known(values: Mapping[str, Any], *, source: str) -> None:
    """Unknown option names are errors listing the valid ones (renamed ones name their replacement)."""
    known = set(RunConfig.option_names())
    unknown = sorted(set(values) - known)
    for name in unknown:
        if name in RENAMED_OPTIONS:
            raise InputError(f"{source}: option {name!r} is now {RENAMED_OPTIONS[name]!r}; rename it.")
    if unknown:
        raise InputError(
            f"{source}: unknown option(s) {', '.join(unknown)}. Expected some of: {', '.join(RunConfig.option_names())}."
        )


MAX_CONFIG_BYTES = 1 << 20  # a run configuration is a few KB; a larger file is not one


def load_yaml(text: str, *, source: str) -> Any:
    """``yaml.safe_load`` without aliases and without duplicate keys.

    Aliases (``*name``) are refused: a "billion laughs" file of nested aliases expands to gigabytes
    (and an error message quoting it would too); no option needs them. A key given twice is refused
    (PyYAML silently keeps the last one).
    """
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise InputError(
                    f"{source} line {mark.line + 1}: YAML aliases (*name) are not accepted in this file. Write the value out."
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            keys = [self.construct_object(key, deep=True) for key, _ in node.value if isinstance(key, yaml.ScalarNode)]
            duplicates = sorted({str(k) for k in keys if keys.count(k) > 1})
            if duplicates:
                raise InputError(f"{source}: key(s) {', '.join(duplicates)} given twice in one mapping. Keep one.")
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise InputError(f"{source} is not valid YAML: {str(error).splitlines()[0][:200]}") from None


def _read_yaml_file(path: Path) -> Any:
    import stat

    try:
        info = path.stat()
    except OSError as error:
        raise InputError(f"Config file not found: {path} ({error.strerror}). Expected a YAML file of run options.") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"Config file {path} is not a regular file (a folder, device or FIFO). Expected a YAML file.")
    if info.st_size > MAX_CONFIG_BYTES:
        raise InputError(
            f"Config file {path} is {info.st_size:,} bytes; a run configuration is at most "
            f"{MAX_CONFIG_BYTES:,}. Pass the YAML file of run options."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"Config file {path} is not UTF-8 text. Expected a YAML file of run options.") from None
    return load_yaml(text, source=str(path))


def _section_options(path: Path, section: str, value: dict) -> dict[str, Any]:
    """The options of one ``section: {...}`` block; a key of another section is an error naming it."""
    owners = {name: owner for owner, cls in RunConfig.sections().items() for name in cls.option_names()}
    own = RunConfig.sections()[section].option_names()
    options: dict[str, Any] = {}
    for key, item in value.items():
        key = str(key).replace("-", "_")
        if key not in own:
            owner = owners.get(key)
            hint = f" The {section} option is `{section}_{key}`." if f"{section}_{key}" in own else ""
            where = f"it is an option of section `{owner}:`; move it there" if owner else "it is not an option"
            raise InputError(
                f"{path}: `{key}` under `{section}:` does not belong to that section ({where}).{hint} "
                f"Options of `{section}:` are: {', '.join(own)}."
            )
        options[key] = item
    return options


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML run configuration as flat options.

    Keys are option names (``-`` or ``_``), at the top level or grouped under the section they
    belong to (``distill: {temperature: 2}``); unknown keys, a key under another section, and a
    key given twice are errors. ``trust_model_code`` is never taken from a file (only the command
    line grants it): a file that sets it is warned about and the value ignored.
    """
    path = Path(path).expanduser()
    content = _read_yaml_file(path) or {}
    if not isinstance(content, dict):
        raise InputError(f"{path} must hold a mapping of option: value; received a {type(content).__name__}.")
    values: dict[str, Any] = {}
    for key, value in content.items():
        key = str(key).replace("-", "_")
        if key in RunConfig.sections() and not isinstance(value, dict) and key not in RunConfig.option_names():
            raise InputError(
                f"{path}: `{key}:` is a section; it holds a mapping of its options (e.g. {key}: "
                f"{{{RunConfig.sections()[key].option_names()[0]}: ...}}). Received: {value!r:.60}."
            )
        found = _section_options(path, key, value) if key in RunConfig.sections() and isinstance(value, dict) else {key: value}
        twice = sorted(set(found) & set(values))
        if twice:
            raise InputError(f"{path}: {', '.join(twice)} given twice (at the top level and in a section). Keep one.")
        values.update(found)
    check_known(values, source=str(path))
    check_types(values, source=str(path))
    _drop_file_trust(values, path)
    return values


def _drop_file_trust(values: dict[str, Any], path: Path) -> None:
    """A file cannot switch the model-code check off: a run folder or a shared YAML is not the user's consent."""
    import logging

    if "trust_model_code" not in values:
        return
    if str(values.pop("trust_model_code")).lower() in ("true", "yes", "on", "1"):
        logging.getLogger(__name__).warning(
            "%s sets trust_model_code: true; IGNORED: only --trust-model-code on the command line lets model files "
            "run their code. Pass it if you trust the model files.",
            path,
        )


def _field_hints() -> dict[str, tuple[dataclasses.Field, Any]]:
    import typing

    found = {}
    for section in RunConfig.sections().values():
        hints = typing.get_type_hints(section)
        found.update({field.name: (field, hints[field.name]) for field in dataclasses.fields(section)})
    return found


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a text value"}


def _converts(value: Any, kind: type) -> bool:
    """Whether a YAML value can stand for an option of type ``kind`` (the command line converts it)."""
    if kind is bool:
        return isinstance(value, bool) or (
            isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0")
        )
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        return False
    if kind is str:
        return isinstance(value, (str, int, float))
    if kind is int and isinstance(value, float):
        return False  # 2.5 epochs: refuse rather than round
    try:
        kind(value)
    except (TypeError, ValueError):
        return False
    return True


def check_types(values: Mapping[str, Any], *, source: str) -> None:
    """Each value fits its option's type, choices and range; errors name ``source`` (the YAML file) and the key."""
    import typing

    for name, value in values.items():
        field, hint = _field_hints()[name]
        kinds = typing.get_args(hint) or (hint,)
        kind = next(k for k in kinds if k is not type(None))
        if value is None:
            if type(None) in kinds:
                continue
            raise InputError(
                f"{source}: `{name}` has no value; expected {_TYPE_NAMES.get(kind, kind.__name__)}. "
                f"Give one (default: {field.default!r}) or remove the key."
            )
        if not _converts(value, kind):
            raise InputError(
                f"{source}: `{name}` must be {_TYPE_NAMES.get(kind, kind.__name__)}. Received: {value!r} "
                f"({type(value).__name__}). Fix it in that file."
            )
        if kind in (int, float) and not isinstance(value, (int, float)):
            value = kind(value)
        try:
            check_value(field, value)
        except InputError as error:
            raise InputError(f"{source}: {error} Fix it in that file.") from None


def number_type(kind: type, check: Callable[[Any], bool], expected: str) -> Any:
    """A click type for a number option that is not a config field: converts, then applies a check of
    this module (``at_least(1)``, ``positive``...), so ``nan``, ``inf`` and out-of-range values stop at the option."""
    import click

    base = click.INT if kind is int else click.FLOAT

    class CheckedNumber(click.ParamType):
        name = base.name

        def convert(self, value: Any, param: Any, ctx: Any) -> Any:
            number = base.convert(value, param, ctx)
            if not check(number):
                self.fail(f"`{param.name if param else 'value'}` must be {expected}. Received: {value!r}.", param, ctx)
            return number

    return CheckedNumber()


def render_config(config: RunConfig) -> str:
    """YAML of the resolved configuration: flat option names, one commented block per section."""
    import yaml

    sections = {name: values for name, values in config.to_dict().items() if name != "trust"}
    blocks = [f"# {name}\n" + yaml.safe_dump(values, sort_keys=False) for name, values in sections.items()]
    # Trust is not written: a file never grants it (read_config_file ignores it), the command line does.
    blocks.append("# trust: not saved; pass --trust-model-code on the command line (also with run --resume)\n")
    return "\n".join(blocks)


def save_config(config: RunConfig, path: str | Path) -> None:
    from edgedistill.fileio import write_text_atomic

    write_text_atomic(path, render_config(config))


__all__ = [
    "RunConfig",
    "DataConfig",
    "TrainingConfig",
    "TeacherConfig",
    "StudentConfig",
    "DistillConfig",
    "QatConfig",
    "ConvertConfig",
    "MicroConfig",
    "VerifyConfig",
    "BaselineConfig",
    "BASELINES",
    "MeasureConfig",
    "BenchStageConfig",
    "TrustConfig",
    "OutputConfig",
    "Section",
    "STRATEGIES",
    "IO_TYPES",
    "MEMORY_PLANS",
    "option",
    "read_config_file",
    "load_yaml",
    "check_types",
    "number_type",
    "render_config",
    "save_config",
]
