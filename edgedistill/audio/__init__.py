"""Audio for keyword spotting: WAV clips -> the device's own front end -> features a student trains on.

- :mod:`edgedistill.audio.wav`: reading 16-bit PCM mono WAVs, resampling, one clip length;
- :mod:`edgedistill.audio.frontend`: the front end, a ``.tflite`` of TFLite Micro's Signal ops
  (log-mel filterbank energies, as micro_speech), run by the TFLM interpreter on the host and by
  the firmware on the device (why this design: that module's docstring);
- :mod:`edgedistill.audio.loader`: the ``audio:DIR`` data set (layouts, label patterns, the
  held-out-speaker and FSDD splits);
- :mod:`edgedistill.audio.augment`: time shift, background noise at a random SNR, SpecAugment.
- :mod:`edgedistill.audio.extra_classes`: the ``_silence_`` and ``_unknown_`` classes of a keyword
  spotter (background noise at a low level; other words), never detected when streaming.
- :mod:`edgedistill.audio.streaming`: a run's front end and model slid over a long recording
  (``edgedistill listen``): posterior smoothing, detections, misses and false accepts per hour.

``edgedistill.data`` registers ``audio`` and imports this package only when it is used.
"""

from __future__ import annotations

from edgedistill.audio.frontend import (
    FrontEnd,
    FrontEndRunner,
    build_frontend_model,
    feature_to_input_table,
    features_to_float,
    read_frontend,
)
from edgedistill.audio.loader import AudioData, load_audio_splits

__all__ = [
    "AudioData",
    "FrontEnd",
    "FrontEndRunner",
    "build_frontend_model",
    "feature_to_input_table",
    "features_to_float",
    "load_audio_splits",
    "read_frontend",
]
