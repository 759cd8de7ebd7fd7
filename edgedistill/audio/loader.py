"""``audio:DIR``: a folder of WAV clips -> train / validation / test features of the device front end.

Layouts:

- one sub-folder per class (``DIR/yes/*.wav``, ``DIR/no/*.wav``), or ``DIR/train/<class>/`` and
  ``DIR/test/<class>/`` (then that is the test split);
- labels from file names (``--audio-label-pattern '{label}_{speaker}_{index}.wav'``, files in
  ``DIR``): ``{label}`` is the class, ``{speaker}`` or ``{group}`` the group a held-out split
  uses, other ``{fields}`` are kept for split rules.

The test split (``--audio-test-split``): ``random`` (20 % of each class, always the same files),
``FIELD=V1,V2`` (e.g. ``speaker=theo``: those speakers are the test set, the others train) or
``FIELD<N`` (e.g. ``index<5``: FSDD's usual split, indices 0-4 of each speaker and digit).
The validation split is then taken from the training files (``validation_fraction``, ``seed``);
augmented copies (:mod:`edgedistill.audio.augment`) are made of the remaining training files only.

Optional ``_silence_`` (background noise at a low level) and ``_unknown_`` (other words) classes come
after the keyword classes (:mod:`edgedistill.audio.extra_classes`: how they are made and split).

Every clip goes through :class:`~edgedistill.audio.frontend.FrontEndRunner` (the TFLM
interpreter running the front-end flatbuffer that is exported to the device). The raw int16 test
clips stay with the data (:class:`AudioData`) for the device's test vectors.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.audio.augment import Augmentation, augment_clips, generated_noise, spec_augment
from edgedistill.audio.extra_classes import (
    SILENCE_SEED_OFFSET,
    ExtraClips,
    class_names_with,
    find_unknown_files,
    make_extra_clips,
    split_unknown_files,
)
from edgedistill.audio.frontend import FrontEnd, FrontEndRunner, features_to_float
from edgedistill.audio.wav import ClipFormat, missing_bytes, read_clip, read_noise
from edgedistill.config import DataConfig
from edgedistill.dataset import Dataset
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)

RANDOM_TEST_FRACTION = 0.2
GROUP_FIELDS = ("speaker", "group")
_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclasses.dataclass(frozen=True)
class AudioFile:
    path: Path
    label: str
    fields: dict[str, str]
    folder_split: str | None = None  # "train" / "test" from DIR/train and DIR/test


@dataclasses.dataclass
class AudioData:
    """What an audio data set carries besides its features: the front end and the raw test clips."""

    frontend: FrontEnd
    frontend_model: bytes  # the .tflite the features were computed with (exported to the device)
    test_clips: np.ndarray  # int16 (num_test, clip_samples): the audio of x_test, in the same order
    test_split: str
    num_augmented: int = 0
    test_groups: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()  # the model's outputs, in order (``listen`` reads them from the report)
    # _silence_ / _unknown_ (edgedistill.audio.extra_classes): class -> clips per split (before augmentation)
    added_classes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    truncated_files: tuple[str, ...] = ()  # cut files (the header announces more audio): zero-padded, said in a warning

    def summary(self) -> dict[str, Any]:
        return {
            "front_end": self.frontend.to_dict(),
            "front_end_bytes": len(self.frontend_model),
            "test_split": self.test_split,
            "test_groups": list(self.test_groups),
            "num_augmented_train": self.num_augmented,
            "class_names": list(self.class_names),
            **({"added_classes": self.added_classes} if self.added_classes else {}),
            **({"truncated_files": list(self.truncated_files)} if self.truncated_files else {}),
        }


# ---------------------------------------------------------------------------------------
# Options


def _option(options: Any, name: str) -> Any:
    """The ``audio_*`` option ``name`` of ``options`` (a DataConfig, or any object with some of its fields);
    DataConfig's default when it has none (one definition of each default)."""
    return getattr(options, name) if hasattr(options, name) else getattr(DataConfig, name)


def settings(options: Any) -> tuple[ClipFormat, FrontEnd, Augmentation]:
    """The clip format, front end and augmentation of the ``audio_*`` options (``DataConfig``; None: defaults)."""
    rate = int(_option(options, "audio_sample_rate"))
    frontend = FrontEnd(
        sample_rate=rate,
        clip_ms=int(_option(options, "audio_clip_ms")),
        window_ms=int(_option(options, "audio_window_ms")),
        stride_ms=int(_option(options, "audio_stride_ms")),
        num_channels=int(_option(options, "audio_channels")),
        lower_hz=float(_option(options, "audio_lower_hz")),
        upper_hz=_option(options, "audio_upper_hz"),
    )
    clip_format = ClipFormat(
        sample_rate=rate,
        clip_samples=frontend.clip_samples,
        resample=_option(options, "audio_resample"),
        align=_option(options, "audio_align"),
        trim=bool(_option(options, "audio_trim")),
    )
    min_snr, max_snr = float(_option(options, "audio_min_snr_db")), float(_option(options, "audio_max_snr_db"))
    if min_snr > max_snr:
        raise InputError(f"--audio-min-snr-db ({min_snr:g}) is above --audio-max-snr-db ({max_snr:g}); swap them.")
    augmentation = Augmentation(
        copies=int(_option(options, "audio_augment_copies")),
        max_shift_samples=int(float(_option(options, "audio_time_shift_ms")) * rate / 1000),
        noise_probability=float(_option(options, "audio_noise_probability")),
        min_snr_db=min_snr,
        max_snr_db=max_snr,
        time_mask_frames=int(_option(options, "audio_time_mask_frames")),
        frequency_mask_channels=int(_option(options, "audio_frequency_mask_channels")),
    )
    return clip_format, frontend, augmentation


# ---------------------------------------------------------------------------------------
# Finding the files and their labels


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``{label}_{speaker}_{index}.wav`` -> a regular expression with one named group per field."""
    names = _FIELD.findall(pattern)
    if "label" not in names:
        raise InputError(
            f"--audio-label-pattern {pattern!r} has no {{label}} field. Expected e.g. '{{label}}_{{speaker}}_{{index}}.wav'."
        )
    bad = [name for name in names if not name.isidentifier()]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if bad or duplicated:
        raise InputError(
            f"--audio-label-pattern {pattern!r}: fields must be distinct names like {{label}} or {{speaker}}; "
            f"received {', '.join(repr('{' + n + '}') for n in bad + duplicated)}."
        )
    parts = _FIELD.split(pattern)  # literal, name, literal, name, ..., literal
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts))
    return re.compile(regex, re.IGNORECASE)


def _wav_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".wav")


def _files_by_pattern(folder: Path, pattern: str) -> list[AudioFile]:
    regex, candidates = compile_pattern(pattern), _wav_files(folder)
    files = []
    for path in candidates:
        match = regex.fullmatch(path.name)
        if match:
            fields = match.groupdict()
            files.append(AudioFile(path, fields["label"], fields))
    if not files:
        folders = sorted(p.name for p in folder.iterdir() if p.is_dir() and _wav_files(p))
        if not candidates and folders:
            raise InputError(
                f"--audio-label-pattern {pattern!r} reads labels from the names of .wav files directly in {folder}, but it "
                f"holds none: its .wav files are in sub-folders ({', '.join(folders[:5])}). Leave --audio-label-pattern "
                "out to take each sub-folder as a class, or pass the folder that holds the files."
            )
        examples = ", ".join(p.name for p in candidates[:3]) or "no .wav files"
        raise InputError(
            f"--audio-label-pattern {pattern!r} matches none of the {len(candidates)} .wav files in {folder} "
            f"(e.g. {examples}). Fix the pattern, e.g. '{{label}}_{{speaker}}_{{index}}.wav'."
        )
    if len(files) < len(candidates):
        logger.info("   %d of %d .wav files match the label pattern; the others are skipped", len(files), len(candidates))
    nested = sum(len(_wav_files(p)) for p in folder.iterdir() if p.is_dir())
    if nested:
        logger.warning(
            "--audio-label-pattern reads the .wav files directly in %s; the %d in its sub-folders are not read "
            "(leave the pattern out to take sub-folders as classes).",
            folder,
            nested,
        )
    return files


def _files_by_folder(folder: Path, split: str | None = None) -> list[AudioFile]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    return [AudioFile(path, name, {"label": name}, split) for name in classes for path in _wav_files(folder / name)]


def find_files(folder: Path, pattern: str | None) -> list[AudioFile]:
    """Every labelled clip under ``folder`` (see the module docstring for the layouts)."""
    if pattern:
        return _files_by_pattern(folder, pattern)
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        files = _files_by_folder(folder / "train", "train") + _files_by_folder(folder / "test", "test")
    else:
        files = _files_by_folder(folder)
    if not files:
        raise InputError(
            f"No .wav files in class sub-folders of {folder}. Expected DIR/<class>/*.wav (or DIR/train and DIR/test so), "
            "or pass --audio-label-pattern to take labels from file names."
        )
    return files


# ---------------------------------------------------------------------------------------
# The test split


def _field_values(files: list[AudioFile], field: str, rule: str) -> list[str]:
    missing = [f for f in files if field not in f.fields]
    if missing:
        available = sorted(set().union(*(f.fields for f in files)))
        raise InputError(
            f"--audio-test-split {rule!r} uses field {field!r}, but the files have only: {', '.join(available)}. "
            "Name a field of --audio-label-pattern (e.g. speaker=theo or index<5)."
        )
    return [f.fields[field] for f in files]


def _random_test_mask(files: list[AudioFile]) -> np.ndarray:
    """20 % of each class, the same files in every run (a fixed seed, as the other loaders)."""
    rng, labels = np.random.default_rng(0), np.array([f.label for f in files])
    mask = np.zeros(len(files), dtype=bool)
    for label in sorted(set(labels)):
        index = np.flatnonzero(labels == label)
        mask[rng.permutation(index)[: int(round(len(index) * RANDOM_TEST_FRACTION))]] = True
    return mask


def test_mask(files: list[AudioFile], rule: str) -> np.ndarray:
    """Which files are the test set under ``rule`` (random, FIELD=V1,V2, FIELD<N, or the train/test folders)."""
    rule = rule.strip()
    if any(f.folder_split for f in files):
        if rule != "random":
            raise InputError(
                f"--audio-test-split {rule!r} cannot apply: the folder has train/ and test/ sub-folders, which are the split."
            )
        return np.array([f.folder_split == "test" for f in files])
    if rule == "random":
        return _random_test_mask(files)
    match = re.fullmatch(r"(\w+)\s*(=|<)\s*(.+)", rule)
    if not match:
        raise InputError(
            f"--audio-test-split {rule!r} is not a rule. Expected random, FIELD=V1,V2 (e.g. speaker=theo) or FIELD<N (e.g. "
            f"index<5)."
        )
    field, operator, operand = match.groups()
    values = _field_values(files, field, rule)
    if operator == "=":
        chosen = {v.strip() for v in operand.split(",") if v.strip()}
        return np.array([value in chosen for value in values])
    try:
        limit = int(operand)
        return np.array([int(value) < limit for value in values])
    except ValueError:
        raise InputError(
            f"--audio-test-split {rule!r}: {field!r} < N needs integer values and an integer N; "
            f"received values like {values[0]!r}. Use {field}=V1,V2 instead."
        ) from None


def _check_classes(files: list[AudioFile], folder: Path) -> None:
    labels = sorted({f.label for f in files})
    if len(labels) < 2:
        raise InputError(
            f"{folder} holds {len(labels)} class ({', '.join(labels) or 'none'}); keyword spotting needs at least 2 "
            "(one sub-folder per class, or labels from --audio-label-pattern)."
        )


def _check_split(files: list[AudioFile], is_test: np.ndarray, rule: str) -> None:
    if is_test.all() or not is_test.any():
        raise InputError(
            f"--audio-test-split {rule!r} puts {int(is_test.sum())} of {len(files)} files in the test set; "
            "both the training and the test split need files. Choose another rule."
        )


# ---------------------------------------------------------------------------------------
# Loading


def _noise_sources(options: Any, frontend: FrontEnd, rng: np.random.Generator) -> list[np.ndarray]:
    folder = _option(options, "audio_noise_dir")
    if not folder:
        return generated_noise(10 * frontend.sample_rate, rng)
    folder = Path(folder).expanduser()
    paths = _wav_files(folder) if folder.is_dir() else []
    if not paths:
        raise InputError(f"--audio-noise-dir {folder} holds no .wav files. Expected a folder of background-noise WAVs.")
    return [read_noise(path, frontend.sample_rate) for path in paths]


def _warn_truncated(files: list[AudioFile]) -> tuple[str, ...]:
    """The files cut short (their header announces more audio than they hold), counted in one warning."""
    truncated = tuple(str(f.path) for f in files if missing_bytes(f.path))
    if truncated:
        shown = ", ".join(truncated[:3]) + (f" and {len(truncated) - 3} more" if len(truncated) > 3 else "")
        logger.warning(
            "%d of %d .wav files are truncated (their header announces more audio than they hold): %s. "
            "They were zero-padded to the window; copy or record them again.",
            len(truncated),
            len(files),
            shown,
        )
    return truncated


def _augmented(clips, labels, options, frontend, augmentation, runner, seed) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` augmented copies of the training clips, as features."""
    rng = np.random.default_rng(seed + 7919)  # its own stream: the split does not move with augmentation
    noises = _noise_sources(options, frontend, rng)
    logger.info(
        "   augmenting: %d cop%s of %d training clips",
        augmentation.copies,
        "y" if augmentation.copies == 1 else "ies",
        len(clips),
    )
    copies = [augment_clips(clips, noises, augmentation, rng) for _ in range(augmentation.copies)]
    features = features_to_float(runner.features(np.concatenate(copies)))
    if augmentation.time_mask_frames or augmentation.frequency_mask_channels:
        features = spec_augment(features, augmentation, rng)
    return features, np.tile(labels, augmentation.copies)


def _added_classes(keywords: tuple[str, ...], options: Any) -> tuple[tuple[str, ...], list[Path]]:
    """The class names with ``_silence_`` / ``_unknown_`` when asked, and the unknown files: checked before any clip is read."""
    unknown_dir = _option(options, "audio_unknown_dir")
    silence = float(_option(options, "audio_silence_fraction")) > 0
    class_names = class_names_with(keywords, silence=silence, unknown=bool(unknown_dir))
    return class_names, find_unknown_files(unknown_dir) if unknown_dir else []


def _split_indices(
    is_test: np.ndarray, validation_fraction: float, seed: int, max_train_samples: int | None
) -> tuple[dict[str, np.ndarray], float]:
    """The keyword files of each split, and the fraction of the training files ``max_train_samples`` kept."""
    train_index = np.flatnonzero(~is_test)
    order = np.random.default_rng(seed).permutation(train_index)
    num_val = max(1, int(round(len(order) * validation_fraction)))
    val_index, train_index = order[:num_val], order[num_val:]
    kept_fraction = 1.0
    if max_train_samples is not None and len(train_index) > max_train_samples:
        kept_fraction = max_train_samples / len(train_index)
        train_index = train_index[:max_train_samples]
    return {"train": train_index, "validation": val_index, "test": np.flatnonzero(is_test)}, kept_fraction


def _extra_clips(
    class_names: tuple[str, ...],
    unknown_paths: list[Path],
    keyword_counts: dict[str, int],
    *,
    kept_fraction: float,
    options: Any,
    clip_format: ClipFormat,
    frontend: FrontEnd,
    validation_fraction: float,
    seed: int,
) -> ExtraClips:
    """The ``_silence_`` and ``_unknown_`` clips of each split (none when neither is asked for)."""
    unknown = None
    if unknown_paths:
        fraction = float(_option(options, "audio_unknown_fraction"))
        unknown = split_unknown_files(unknown_paths, fraction=fraction, validation_fraction=validation_fraction, seed=seed)
        # --max-train-samples keeps the same share of the unknown training files as of the keyword ones.
        unknown["train"] = unknown["train"][: int(round(len(unknown["train"]) * kept_fraction))]
        logger.info(
            "   reading %d of the %d clips of %s",
            sum(map(len, unknown.values())),
            len(unknown_paths),
            _option(options, "audio_unknown_dir"),
        )
    silence_fraction = float(_option(options, "audio_silence_fraction"))
    rng = np.random.default_rng(seed + SILENCE_SEED_OFFSET)  # its own stream: no keyword split or copy moves
    noises = _noise_sources(options, frontend, rng) if silence_fraction > 0 else []
    return make_extra_clips(
        class_names,
        keyword_counts,
        silence_fraction=silence_fraction,
        noises=noises,
        unknown=unknown,
        unknown_available=len(unknown_paths),
        clip_format=clip_format,
        rng=rng,
    )


def _audio_folder(argument: str | None) -> Path:
    """The folder of ``audio:DIR``, which must exist."""
    if not argument:
        raise InputError("`audio` needs a folder: `--data audio:DIR` (one sub-folder per class, or --audio-label-pattern).")
    folder = Path(argument).expanduser()
    if not folder.is_dir():
        raise InputError(f"Audio folder not found: {folder}. Expected a folder of .wav files (one sub-folder per class).")
    return folder


def _files_and_test_split(folder: Path, options: Any) -> tuple[list[AudioFile], str, np.ndarray]:
    """The labelled clips of ``folder``, the test-split rule, and which clips it holds out for testing (both checked)."""
    files = find_files(folder, _option(options, "audio_label_pattern"))
    _check_classes(files, folder)
    rule = str(_option(options, "audio_test_split"))
    is_test = test_mask(files, rule)
    _check_split(files, is_test, rule)
    return files, rule, is_test


def _featurize(
    split_clips: dict[str, np.ndarray],
    train_labels: np.ndarray,
    options: Any,
    frontend: FrontEnd,
    augmentation: Augmentation,
    seed: int,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, FrontEndRunner]:
    """The features of every split on the TFLM front end, and the training set with its augmented copies appended:
    (features by split, x_train, y_train, the front-end runner)."""
    runner = FrontEndRunner(frontend)
    logger.info(
        "   features of %d clips on the TFLM front end (%s frames x %d channels)",
        sum(map(len, split_clips.values())),
        frontend.num_frames,
        frontend.num_channels,
    )
    features = {split: features_to_float(runner.features(c)) for split, c in split_clips.items()}
    x_train, y_train = features["train"], train_labels
    if augmentation.copies:
        extra_x, extra_y = _augmented(split_clips["train"], y_train, options, frontend, augmentation, runner, seed)
        x_train, y_train = np.concatenate([x_train, extra_x]), np.concatenate([y_train, extra_y])
    return features, x_train, y_train, runner


def load_audio_splits(
    argument: str | None,
    *,
    validation_fraction: float = DataConfig.validation_fraction,
    seed: int = DataConfig.seed,
    max_train_samples: int | None = None,
    options: Any = None,
    name: str | None = None,
) -> Dataset:
    """Read, split, (augment) and featurize the clips of ``audio:DIR`` (``options``: the ``audio_*`` fields): the
    data set (named ``name``, default ``audio:DIR``), with the front end and the raw test clips in ``audio``."""
    folder = _audio_folder(argument)
    clip_format, frontend, augmentation = settings(options)
    files, rule, is_test = _files_and_test_split(folder, options)
    keywords = tuple(sorted({f.label for f in files}))
    class_names, unknown_paths = _added_classes(keywords, options)
    labels = np.array([keywords.index(f.label) for f in files], dtype=np.int64)
    logger.info("   reading %d clips from %s (%d classes)", len(files), folder, len(keywords))
    clips = np.stack([read_clip(f.path, clip_format) for f in files])
    truncated = _warn_truncated(files)
    indices, kept_fraction = _split_indices(is_test, validation_fraction, seed, max_train_samples)
    extra = _extra_clips(
        class_names,
        unknown_paths,
        {split: len(index) for split, index in indices.items()},
        kept_fraction=kept_fraction,
        options=options,
        clip_format=clip_format,
        frontend=frontend,
        validation_fraction=validation_fraction,
        seed=seed,
    )
    split_clips = {split: np.concatenate([clips[index], extra.clips[split]]) for split, index in indices.items()}
    split_labels = {split: np.concatenate([labels[index], extra.labels[split]]) for split, index in indices.items()}
    features, x_train, y_train, runner = _featurize(split_clips, split_labels["train"], options, frontend, augmentation, seed)
    groups = sorted({f.fields[g] for f, test in zip(files, is_test) if test for g in GROUP_FIELDS if g in f.fields})
    audio = AudioData(
        frontend=frontend,
        frontend_model=runner.tflite_bytes,
        test_clips=split_clips["test"],
        test_split=rule,
        num_augmented=len(x_train) - len(split_clips["train"]),
        test_groups=tuple(groups),
        class_names=class_names,
        added_classes=extra.summary(),
        truncated_files=truncated,
    )
    return Dataset(
        name=name or f"audio:{argument}",
        x_train=x_train,
        y_train=y_train,
        x_val=features["validation"],
        y_val=split_labels["validation"],
        x_test=features["test"],
        y_test=split_labels["test"],
        num_classes=len(class_names),
        class_names=class_names,
        audio=audio,
    )


__all__ = ["AudioData", "AudioFile", "compile_pattern", "find_files", "load_audio_splits", "settings", "test_mask"]
