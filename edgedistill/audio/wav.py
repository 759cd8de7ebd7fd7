"""Reading WAV files into int16 clips of one length at the front end's sample rate.

The front end takes 16-bit samples, so files are read as 16-bit PCM (``soundfile``, libsndfile)
and anything else is refused with its fix: a file that is not audio, an empty one, more than one
channel, another sample format (24-bit, 8-bit, float), a rate the ``resample`` policy refuses, or
a clip longer than the window without ``trim``. Resampling is polyphase (``scipy.signal.resample_poly``,
exact rational factors) and rounds back to int16; a file already at the rate is used bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from edgedistill.config import DataConfig
from edgedistill.errors import InputError

RESAMPLE_POLICIES = ("down", "any", "off")
# The highest rate audio interfaces record at; a header beyond it is damaged (and would size a huge resampling filter).
MAX_SAMPLE_RATE = 768_000
ALIGNMENTS = ("start", "centre")


@dataclasses.dataclass(frozen=True)
class ClipFormat:
    """What every clip becomes: ``clip_samples`` int16 samples at ``sample_rate``."""

    sample_rate: int
    clip_samples: int
    resample: str = DataConfig.audio_resample  # the defaults are the --audio-* options'
    align: str = DataConfig.audio_align
    trim: bool = DataConfig.audio_trim

    @property
    def clip_ms(self) -> float:
        return 1000.0 * self.clip_samples / self.sample_rate


def _info(path: Path):
    import soundfile

    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes). Expected a 16-bit PCM mono WAV; remove or replace it.")
    try:
        return soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        reason = str(error).split(":")[-1].strip() or type(error).__name__
        raise InputError(
            f"Cannot read {path} as a WAV file ({reason}). Expected a 16-bit PCM mono WAV; remove or convert it."
        ) from None


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """The int16 samples of a 16-bit PCM mono WAV and its rate; :class:`InputError` for anything else."""
    import soundfile

    path = Path(path)
    info = _info(path)
    if not 0 < info.samplerate <= MAX_SAMPLE_RATE:
        raise InputError(
            f"{path} claims a sample rate of {info.samplerate} Hz; recorders write at most {MAX_SAMPLE_RATE} Hz. "
            "Its header is damaged: convert or record it again."
        )
    if info.frames == 0:
        raise InputError(f"{path} holds no samples (a WAV header with 0 frames). Remove it or record the clip again.")
    if info.channels != 1:
        raise InputError(f"{path} has {info.channels} channels; expected mono. Convert it, e.g. `sox {path.name} -c 1 mono.wav`.")
    if info.subtype != "PCM_16":
        raise InputError(
            f"{path} is {info.subtype_info or info.subtype}; expected 16-bit PCM (the front end takes int16 samples). "
            f"Convert it, e.g. `sox {path.name} -b 16 -e signed-integer out.wav`."
        )
    samples, rate = soundfile.read(str(path), dtype="int16", always_2d=False)
    return np.asarray(samples, dtype=np.int16), int(rate)


def missing_bytes(path: str | Path) -> int:
    """How many bytes of audio a RIFF/WAVE file's ``data`` chunk announces but does not hold (0: complete).

    libsndfile reads a cut file (an interrupted copy or recording) without a word, and the clip would
    then be zero-padded as if it were short; the header says how long it was meant to be.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if handle.read(12)[8:12] != b"WAVE":
            return 0  # not RIFF/WAVE (e.g. RF64, AIFF): libsndfile's frame count is all there is
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            header = handle.read(8)
            chunk_size = int.from_bytes(header[4:8], "little")
            if header[:4] == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # a streaming writer's placeholder: no length was announced
                    return 0
                return max(0, position + 8 + chunk_size - size)
            position += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to an even length
    return 0


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """int16 samples at ``rate`` -> int16 at ``target_rate`` (polyphase; unchanged when the rates are equal)."""
    if rate == target_rate:
        return samples
    from scipy.signal import resample_poly

    divisor = math.gcd(rate, target_rate)
    resampled = resample_poly(samples.astype(np.float64), target_rate // divisor, rate // divisor)
    return np.clip(np.round(resampled), -32768, 32767).astype(np.int16)


def _check_rate(path: Path, rate: int, clip_format: ClipFormat) -> None:
    target = clip_format.sample_rate
    if rate == target or clip_format.resample == "any" or (clip_format.resample == "down" and rate > target):
        return
    fix = (
        "Pass --audio-resample any to resample it up (no information above its Nyquist frequency appears), "
        if clip_format.resample == "down"
        else "Pass --audio-resample down or any to resample it, "
    )
    raise InputError(
        f"{path} is sampled at {rate} Hz; the front end runs at {target} Hz (--audio-sample-rate). "
        f"{fix}or set --audio-sample-rate {rate}."
    )


def fit_length(samples: np.ndarray, clip_format: ClipFormat, *, source: str = "clip") -> np.ndarray:
    """Zero-pad (``align`` start: at the end; centre: both sides) or, with ``trim``, cut to ``clip_samples``."""
    length, size = clip_format.clip_samples, len(samples)
    if size > length and not clip_format.trim:
        raise InputError(
            f"{source} is {size / clip_format.sample_rate:.3f} s long; the window is {clip_format.clip_ms / 1000:.3f} s "
            "(--audio-clip-ms). Raise --audio-clip-ms, or pass --audio-trim to keep its "
            f"{'start' if clip_format.align == 'start' else 'centre'}."
        )
    offset = 0 if clip_format.align == "start" else (length - size) // 2
    if size >= length:
        return samples[-offset : -offset + length] if offset < 0 else samples[:length]
    clip = np.zeros(length, dtype=np.int16)
    clip[offset : offset + size] = samples
    return clip


# A training clip longer than this is a recording, not a clip: refused before it is read into memory.
MAX_CLIP_SECONDS = 600.0


def read_clip(path: str | Path, clip_format: ClipFormat) -> np.ndarray:
    """One file -> ``clip_samples`` int16 samples at the front end's rate."""
    path = Path(path)
    info = _info(path)
    if info.samplerate > 0 and info.frames / info.samplerate > MAX_CLIP_SECONDS:
        raise InputError(
            f"{path} is {info.frames / info.samplerate:.0f} s long; a training clip holds one word (the window is "
            f"{clip_format.clip_ms / 1000:g} s, at most {MAX_CLIP_SECONDS:g} s are read). Cut it into clips, or pass "
            "it to `edgedistill listen` as a recording."
        )
    samples, rate = read_wav(path)
    _check_rate(path, rate, clip_format)
    return fit_length(resample(samples, rate, clip_format.sample_rate), clip_format, source=str(path))


def read_noise(path: str | Path, sample_rate: int) -> np.ndarray:
    """A background-noise file at the front end's rate (any length; resampled whatever its rate)."""
    samples, rate = read_wav(path)
    return resample(samples, rate, sample_rate)


__all__ = [
    "missing_bytes",
    "ClipFormat",
    "RESAMPLE_POLICIES",
    "ALIGNMENTS",
    "read_wav",
    "read_clip",
    "read_noise",
    "resample",
    "fit_length",
]
