"""Audio augmentation: a random time shift and background noise at a random SNR on the raw clip,
then optional SpecAugment masks on its features.

Augmented copies are made once, before training, and added to the training split (after the
validation split is taken, so no copy of a validation clip trains). Their features come from the
device front end like every other clip's, and the teacher is trained and queried on exactly those
copies: distillation compares teacher and student on the same augmented clip.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgedistill.config import DataConfig


@dataclasses.dataclass(frozen=True)
class Augmentation:
    # The defaults are the --audio-* options' (DataConfig); the shift is in samples, derived from
    # --audio-time-shift-ms and the rate by edgedistill.audio.loader.settings (0 here: no rate yet).
    copies: int = DataConfig.audio_augment_copies
    max_shift_samples: int = 0
    noise_probability: float = DataConfig.audio_noise_probability
    min_snr_db: float = DataConfig.audio_min_snr_db
    max_snr_db: float = DataConfig.audio_max_snr_db
    time_mask_frames: int = DataConfig.audio_time_mask_frames
    frequency_mask_channels: int = DataConfig.audio_frequency_mask_channels


def generated_noise(length: int, rng: np.random.Generator) -> list[np.ndarray]:
    """White and pink (1/f power) noise, ``length`` float samples each at unit RMS."""
    white = rng.standard_normal(length)
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.arange(len(spectrum), dtype=np.float64)
    frequencies[0] = 1.0
    pink = np.fft.irfft(spectrum / np.sqrt(frequencies), n=length)
    return [noise / max(np.sqrt(np.mean(noise**2)), 1e-12) for noise in (white, pink)]


def shift(clip: np.ndarray, samples: int) -> np.ndarray:
    """The clip moved by ``samples`` (positive: later), zeros where it moved from."""
    shifted = np.zeros_like(clip)
    if samples >= 0:
        shifted[samples:] = clip[: len(clip) - samples]
    else:
        shifted[:samples] = clip[-samples:]
    return shifted


def mix_noise(clip: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """The clip plus a random stretch of ``noise`` scaled to ``snr_db`` against the clip's speech power."""
    signal = clip.astype(np.float64)
    if len(noise) < len(clip):
        noise = np.tile(noise, int(np.ceil(len(clip) / len(noise))))
    start = int(rng.integers(0, len(noise) - len(clip) + 1))
    segment = noise[start : start + len(clip)].astype(np.float64)
    # Power of the speech only: the zero padding around a short word must not lower it.
    voiced = signal[np.abs(signal) > 0]
    signal_power = float(np.mean(voiced**2)) if len(voiced) else 0.0
    noise_power = max(float(np.mean(segment**2)), 1e-12)
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return np.clip(np.round(signal + scale * segment), -32768, 32767).astype(np.int16)


def augment_clips(clips: np.ndarray, noises: list[np.ndarray], settings: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """One augmented copy of every int16 clip (time shift, then background noise)."""
    augmented = np.empty_like(clips)
    for index, clip in enumerate(clips):
        if settings.max_shift_samples:
            clip = shift(clip, int(rng.integers(-settings.max_shift_samples, settings.max_shift_samples + 1)))
        if noises and rng.random() < settings.noise_probability:
            noise = noises[int(rng.integers(len(noises)))]
            clip = mix_noise(clip, noise, float(rng.uniform(settings.min_snr_db, settings.max_snr_db)), rng)
        augmented[index] = clip
    return augmented


def spec_augment(features: np.ndarray, settings: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """One time and one frequency mask per sample (float features ``(N, frames, channels, 1)``), set to 0:
    the front end's floor (int8 -128)."""
    masked = features.copy()
    num_frames, num_channels = features.shape[1], features.shape[2]
    for sample in masked:
        if settings.time_mask_frames:
            width = int(rng.integers(0, min(settings.time_mask_frames, num_frames) + 1))
            start = int(rng.integers(0, num_frames - width + 1))
            sample[start : start + width] = 0.0
        if settings.frequency_mask_channels:
            width = int(rng.integers(0, min(settings.frequency_mask_channels, num_channels) + 1))
            start = int(rng.integers(0, num_channels - width + 1))
            sample[:, start : start + width] = 0.0
    return masked


__all__ = ["Augmentation", "augment_clips", "spec_augment", "mix_noise", "shift", "generated_noise"]
