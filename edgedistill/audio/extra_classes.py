"""The ``_silence_`` and ``_unknown_`` classes of a keyword spotter (``--audio-silence-fraction``,
``--audio-unknown-dir``), as TensorFlow's speech_commands training and TFLM's micro_speech have them.

Without them a model's softmax is over the keywords only, so in streaming use background noise and
other words must land on some keyword (benchmarks/README.md, streaming_kws.py). With them the model can
say "nothing" (``_silence_``) and "a word, but none of these" (``_unknown_``); the streaming detector
(:mod:`edgedistill.audio.streaming`) never reports a class whose name starts and ends with ``_``.

- ``_silence_``: ``round(fraction x keyword clips)`` clips per split (train, validation, test), each a
  random stretch of a background noise (the ``--audio-noise-dir`` WAVs, else generated white and pink
  noise) scaled to an RMS drawn log-uniformly in [-70, -30] dBFS; 10 % are digital zeros (a muted or
  gated microphone). The level is far below speech on purpose: noise under speech is what augmentation
  adds to the keywords, silence is the absence of speech.
- ``_unknown_``: the WAVs under a folder (recursively; other files are skipped), read as the keyword clips
  are (:func:`edgedistill.audio.wav.read_clip`). ``--audio-unknown-fraction`` of them are used; a random
  20 % of those are test clips and the validation clips are taken from the rest as for keywords.

Both use their own random streams (``seed`` plus a constant), so adding them moves no keyword clip
between the splits and changes no keyword feature.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from edgedistill.audio.wav import ClipFormat, read_clip
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)

SILENCE, UNKNOWN = "_silence_", "_unknown_"
SPLITS = ("train", "validation", "test")
SILENCE_DBFS = (-70.0, -30.0)  # the range of a silence clip's RMS, relative to int16 full scale
DIGITAL_ZERO_FRACTION = 0.1
UNKNOWN_TEST_FRACTION = 0.2
FULL_SCALE = 32768.0
# Offsets of the random streams from the loader's seed: their own, so the keyword splits never move.
SILENCE_SEED_OFFSET, UNKNOWN_SEED_OFFSET = 104_729, 130_363  # primes, far from augmentation's 7919


def is_keyword(name: str) -> bool:
    """A class that may be detected: not ``_silence_``, ``_unknown_`` or any other ``_name_`` class."""
    return not (len(name) >= 2 and name.startswith("_") and name.endswith("_"))


def class_names_with(keywords: Sequence[str], *, silence: bool, unknown: bool) -> tuple[str, ...]:
    """The keyword classes, then ``_silence_`` and ``_unknown_`` when added; refuses a keyword of either name."""
    for name, added, option in ((SILENCE, silence, "--audio-silence-fraction"), (UNKNOWN, unknown, "--audio-unknown-dir")):
        if added and name in keywords:
            raise InputError(
                f"The keyword clips already have a class {name!r}, and {option} adds a class of that name. Rename "
                f"that class (its folder or the {{label}} in its file names), or leave {option} out to keep yours."
            )
    return tuple(keywords) + ((SILENCE,) if silence else ()) + ((UNKNOWN,) if unknown else ())


# ---------------------------------------------------------------------------------------
# _silence_


def _noise_segment(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if len(noise) < length:
        noise = np.tile(noise, int(np.ceil(length / len(noise))))
    start = int(rng.integers(0, len(noise) - length + 1))
    return np.asarray(noise[start : start + length], dtype=np.float64)


def silence_clips(count: int, noises: Sequence[np.ndarray], clip_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` int16 clips: random stretches of ``noises`` at -70..-30 dBFS RMS (log-uniform), 10 % zeros."""
    clips = np.zeros((count, clip_samples), dtype=np.int16)
    for index in range(count):
        if rng.random() < DIGITAL_ZERO_FRACTION:
            continue
        segment = _noise_segment(noises[int(rng.integers(len(noises)))], clip_samples, rng)
        target_rms = FULL_SCALE * 10 ** (rng.uniform(*SILENCE_DBFS) / 20)
        segment_rms = float(np.sqrt(np.mean(segment**2)))
        if segment_rms > 0:  # a silent stretch of a noise file stays digital zeros
            clips[index] = np.clip(np.round(segment * target_rms / segment_rms), -32768, 32767)
    return clips


# ---------------------------------------------------------------------------------------
# _unknown_


def find_unknown_files(folder: str | Path) -> list[Path]:
    """The WAVs under ``folder`` (recursively, sorted); :class:`InputError` for a missing folder or none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(
            f"--audio-unknown-dir {folder} is not a folder. Expected a folder of mono 16-bit WAVs of words other than "
            "the keywords (the _unknown_ class); fix the path or leave the option out."
        )
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".wav")
    if not paths:
        raise InputError(
            f"--audio-unknown-dir {folder} holds no .wav files (searched recursively). Expected mono 16-bit WAVs of "
            "words other than the keywords; add some or leave the option out."
        )
    return paths


def split_unknown_files(
    paths: Sequence[Path], *, fraction: float, validation_fraction: float, seed: int
) -> dict[str, list[Path]]:
    """``fraction`` of the files (seeded), 20 % of them test, validation from the rest as for keywords."""
    rng = np.random.default_rng(seed + UNKNOWN_SEED_OFFSET)
    used = rng.choice(len(paths), size=max(1, int(round(len(paths) * fraction))), replace=False)
    order = rng.permutation(np.sort(used))
    num_test = int(round(len(order) * UNKNOWN_TEST_FRACTION))
    test, rest = order[:num_test], order[num_test:]
    num_val = max(1, int(round(len(rest) * validation_fraction))) if len(rest) >= 2 else 0
    chosen = {"train": rest[num_val:], "validation": rest[:num_val], "test": test}
    return {split: [paths[i] for i in sorted(index)] for split, index in chosen.items()}


# ---------------------------------------------------------------------------------------
# Both, per split


@dataclasses.dataclass
class ExtraClips:
    """The added classes' int16 clips and labels per split, and how many of each class each split got."""

    clips: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    counts: dict[str, dict[str, int]]  # class -> split -> clips
    unknown_files_available: int = 0

    def summary(self) -> dict:
        summary: dict = {name: dict(counts) for name, counts in self.counts.items()}
        if UNKNOWN in summary:
            summary[UNKNOWN]["files_available"] = self.unknown_files_available
        return summary


def _read_clips(paths: Sequence[Path], clip_format: ClipFormat) -> np.ndarray:
    if not paths:
        return np.zeros((0, clip_format.clip_samples), dtype=np.int16)
    return np.stack([read_clip(path, clip_format) for path in paths])


def make_extra_clips(
    class_names: Sequence[str],
    keyword_counts: dict[str, int],
    *,
    silence_fraction: float,
    noises: Sequence[np.ndarray],
    unknown: dict[str, list[Path]] | None,
    unknown_available: int,
    clip_format: ClipFormat,
    rng: np.random.Generator,
) -> ExtraClips:
    """``_silence_`` clips (``silence_fraction`` x ``keyword_counts[split]``, drawn with ``rng``) and ``_unknown_``
    clips (the files of ``unknown``, per split) with their labels (indices in ``class_names``)."""
    parts: dict[str, list[tuple[str, np.ndarray]]] = {split: [] for split in SPLITS}
    for split in SPLITS:
        if silence_fraction > 0:  # (a keyword class of the data may be called _silence_ when none is added)
            count = int(round(silence_fraction * keyword_counts[split]))
            parts[split].append((SILENCE, silence_clips(count, noises, clip_format.clip_samples, rng)))
        if unknown is not None:
            parts[split].append((UNKNOWN, _read_clips(unknown[split], clip_format)))
    empty = np.zeros((0, clip_format.clip_samples), dtype=np.int16)
    clips = {split: np.concatenate([empty] + [c for _, c in parts[split]]) for split in SPLITS}
    labels = {
        split: np.concatenate(
            [np.zeros(0, dtype=np.int64)] + [np.full(len(c), class_names.index(name), dtype=np.int64) for name, c in parts[split]]
        )
        for split in SPLITS
    }
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        for name, part in parts[split]:
            counts.setdefault(name, {})[split] = len(part)
    for name, per_split in counts.items():
        logger.info("   %s: %s clips", name, " / ".join(f"{per_split[s]} {s}" for s in SPLITS))
    return ExtraClips(clips=clips, labels=labels, counts=counts, unknown_files_available=unknown_available)


__all__ = [
    "SILENCE",
    "UNKNOWN",
    "ExtraClips",
    "class_names_with",
    "find_unknown_files",
    "is_keyword",
    "make_extra_clips",
    "silence_clips",
    "split_unknown_files",
]
