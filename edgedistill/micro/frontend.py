"""An audio front end exported with its model into the same micro export folder.

:class:`FrontEndExport` adds to a micro export (``micro/``), beside the model's files:

- ``front_end.tflite`` and ``frontend_data.h`` / ``frontend_data.cc``: the front-end flatbuffer
  (TFLM Signal ops, :mod:`edgedistill.audio.frontend`) as a 16-byte aligned C array;
- ``frontend_op_resolver.h``: ``MicroMutableOpResolver<N>`` with exactly its ops (``AddWindow()``, ...);
- ``frontend_settings.h``: its own measured arena (``kFrontEndArenaSize``), the clip, window, stride,
  frame and channel counts;
- ``audio_test_data.h`` / ``audio_test_data.cc``: the raw int16 audio of the test samples, the int8
  features the host TFLM interpreter computed from them, and ``g_feature_to_input[256]``, the table
  that maps a feature ``q`` (index ``q + 128``) to the model's int8 input.

The audio test samples are the model's test samples (``test_data.cc``): the firmware runs
audio -> front end -> table -> model and checks the features and the class scores against the
host's. Everything is checked before anything is written: the front end's ops are in TFLM, the
model takes exactly the front end's feature shape, and the features the TFLM interpreter computes
now from the raw test audio equal the model's test inputs (the features it was trained and
evaluated on) bit for bit.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edgedistill.audio.frontend import (
    FrontEnd,
    FrontEndRunner,
    check_feature_shape,
    feature_to_input_table,
    features_to_float,
    read_frontend,
)
from edgedistill.errors import InputError, StageError
from edgedistill.micro.arena import arena_with_margin, measure_arena
from edgedistill.micro.resolver import check_micro_compatible
from edgedistill.micro.sources import render_model_data
from edgedistill.tflite_model import ModelInfo, read_model_info

logger = logging.getLogger(__name__)

FRONT_END_FILES: tuple[str, ...] = (
    "front_end.tflite",
    "frontend_data.h",
    "frontend_data.cc",
    "frontend_op_resolver.h",
    "frontend_settings.h",
    "audio_test_data.h",
    "audio_test_data.cc",
)


def synthetic_clips(frontend: FrontEnd, count: int) -> np.ndarray:
    """Deterministic test audio when no data set is given: a gliding tone in noise, one per clip."""
    rng = np.random.default_rng(0)
    time = np.arange(frontend.clip_samples) / frontend.sample_rate
    clips = []
    for index in range(count):
        frequency = 300.0 + 250.0 * index + 400.0 * time
        envelope = np.clip(np.sin(np.pi * time / time[-1]) * 1.5, 0, 1)
        signal = 8000 * envelope * np.sin(2 * np.pi * frequency * time) + rng.normal(0, 200, len(time))
        clips.append(np.clip(np.round(signal), -32768, 32767).astype(np.int16))
    return np.stack(clips)


class FrontEndExport:
    """A front end to export with a model (see the module docstring)."""

    def __init__(
        self,
        tflite_bytes: bytes,
        *,
        test_clips: np.ndarray | None = None,
        num_test_samples: int = 5,
        source: str = "front_end.tflite",
        compact: bool = True,
    ) -> None:
        info = read_model_info(tflite_bytes, source=source)
        self.methods = check_micro_compatible(info, source=source)
        self.ops, self.tflite_bytes, self.source = info.ops, tflite_bytes, source
        self.compact = compact
        self.device_bytes = tflite_bytes  # what frontend_data.cc holds: compacted by prepare() when it verifies
        self.frontend = read_frontend(tflite_bytes, source=source)
        self.synthetic = test_clips is None
        clips = synthetic_clips(self.frontend, num_test_samples) if test_clips is None else np.asarray(test_clips)
        self.clips = clips[:num_test_samples].astype(np.int16)
        self.features: np.ndarray | None = None
        self.arena: dict[str, int] = {}

    def check_model(self, info: ModelInfo, *, source: str = "model") -> None:
        """``InputError`` unless the model takes exactly the front end's ``(frames, channels)`` features."""
        check_feature_shape(
            self.frontend,
            info.inputs[0].shape if info.inputs else [],
            frontend_source=self.source,
            model_source=source,
            fix="Export the model with the front end it was trained with (same --audio-* options), or train it on this "
            "front end's features.",
        )

    def prepare(self, *, margin_fraction: float, test_inputs: np.ndarray | None) -> np.ndarray:
        """Measure the front end's arena and compute the test features; returns the model's float test inputs."""
        measured = measure_arena(self.tflite_bytes, source=self.source)
        size, margin = arena_with_margin(measured["arena_bytes"], margin_fraction=margin_fraction)
        self.arena = {**measured, "tensor_arena_size": size, "margin": margin}
        features = FrontEndRunner(self.frontend, tflite_bytes=self.tflite_bytes).features(self.clips)
        self.features = features
        self.device_bytes = self._compacted(features) if self.compact else self.tflite_bytes
        inputs = features_to_float(features)
        if test_inputs is not None:
            given = np.asarray(test_inputs[: len(inputs)], dtype=np.float32).reshape(inputs.shape)
            if not np.array_equal(given, inputs):
                raise StageError(
                    f"The TFLM front end's features of the test audio differ from the model's test inputs in "
                    f"{int(np.sum(given != inputs))} values: they were not computed by {self.source}. Export with the "
                    "data set's own front end."
                )
        return inputs

    def _compacted(self, features: np.ndarray) -> bytes:
        """The front end without what TFLM never reads (:mod:`edgedistill.micro.compact`), when TFLM computes the
        same features of the test audio with it; else the front end as it is."""
        from edgedistill.micro.compact import compact_model

        try:
            compacted = compact_model(self.tflite_bytes, source=self.source).model_bytes
        except InputError as error:
            logger.warning("front end %s not compacted: %s", self.source, error)
            return self.tflite_bytes
        if not np.array_equal(FrontEndRunner(self.frontend, tflite_bytes=compacted).features(self.clips), features):
            logger.warning("front end %s: the compacted flatbuffer computes other features; exported as it is", self.source)
            return self.tflite_bytes
        return compacted

    def sources(self, model_input: dict[str, Any], *, header: str) -> dict[str, str]:
        """File name -> text of the front end's C/C++ sources (``model_input``: the model's TFLM input details)."""
        data_h, data_cc = render_model_data(self.device_bytes, header=header)
        rename = {"model_data": "frontend_data", "g_model_data": "g_frontend_data", "MODEL_DATA": "FRONTEND_DATA"}
        for old, new in rename.items():
            data_h, data_cc = data_h.replace(old, new), data_cc.replace(old, new)
        return {
            "frontend_data.h": data_h,
            "frontend_data.cc": data_cc,
            "frontend_op_resolver.h": self._resolver(header),
            "frontend_settings.h": self._settings(header),
            **dict(zip(("audio_test_data.h", "audio_test_data.cc"), self._test_data(model_input, header))),
        }

    def _resolver(self, header: str) -> str:
        calls = "\n".join(
            f"  if (resolver.{m}() != kTfLiteOk) return kTfLiteError;  // {op}" for op, m in zip(self.ops, self.methods)
        )
        return header + (
            "#ifndef EDGEDISTILL_FRONTEND_OP_RESOLVER_H_\n#define EDGEDISTILL_FRONTEND_OP_RESOLVER_H_\n\n"
            '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
            "// Exactly the ops of the audio front end (TFLM's Signal custom ops and a few builtins).\n"
            f"constexpr int kNumFrontEndOps = {len(self.ops)};\n"
            "using FrontEndOpResolver = tflite::MicroMutableOpResolver<kNumFrontEndOps>;\n\n"
            "inline TfLiteStatus RegisterFrontEndOps(FrontEndOpResolver& resolver) {\n"
            f"{calls}\n  return kTfLiteOk;\n}}\n\n#endif  // EDGEDISTILL_FRONTEND_OP_RESOLVER_H_\n"
        )

    def _settings(self, header: str) -> str:
        fe, arena = self.frontend, self.arena
        return header + (
            "#ifndef EDGEDISTILL_FRONTEND_SETTINGS_H_\n#define EDGEDISTILL_FRONTEND_SETTINGS_H_\n\n"
            "// The audio front end: one invoke turns kWindowSamples int16 samples into kNumChannels int8\n"
            "// features; a clip of kClipSamples gives kNumFrames frames, kStrideSamples apart, from a reset\n"
            "// interpreter (its noise estimate is state). Its own arena: measured on the host TFLM\n"
            f"// interpreter ({arena['arena_bytes']} bytes) plus a margin of {arena['margin']} bytes.\n"
            "#define EDGEDISTILL_AUDIO_FRONT_END 1\n"
            f"constexpr int kFrontEndArenaSize = {arena['tensor_arena_size']};\n"
            f"constexpr int kFrontEndArenaHostBytes = {arena['arena_bytes']};\n"
            f"constexpr int kAudioSampleRate = {fe.sample_rate};\n"
            f"constexpr int kClipSamples = {fe.clip_samples};\n"
            f"constexpr int kWindowSamples = {fe.window_samples};\n"
            f"constexpr int kStrideSamples = {fe.stride_samples};\n"
            f"constexpr int kNumFrames = {fe.num_frames};\n"
            f"constexpr int kNumChannels = {fe.num_channels};\n"
            "constexpr int kFeatureSize = kNumFrames * kNumChannels;\n\n"
            "#endif  // EDGEDISTILL_FRONTEND_SETTINGS_H_\n"
        )

    def _test_data(self, model_input: dict[str, Any], header: str) -> tuple[str, str]:
        assert self.features is not None  # prepare() computed them; sources() comes after
        table = feature_to_input_table(model_input)
        input_type = {"int8": "int8_t", "float32": "float"}.get(np.dtype(model_input["dtype"]).name)
        if input_type is None:
            raise InputError(
                f"The model's input is {np.dtype(model_input['dtype']).name}; an audio model needs int8 or float32 input."
            )
        table_text = ", ".join(repr(float(v)) + "f" if input_type == "float" else str(int(v)) for v in table)
        audio_rows = ",\n".join("    {" + ", ".join(str(int(v)) for v in clip) + "}" for clip in self.clips)
        feature_rows = ",\n".join("    {" + ", ".join(str(int(v)) for v in f.reshape(-1)) + "}" for f in self.features)
        h = header + (
            "#ifndef EDGEDISTILL_AUDIO_TEST_DATA_H_\n#define EDGEDISTILL_AUDIO_TEST_DATA_H_\n\n#include <cstdint>\n\n"
            '#include "frontend_settings.h"\n\n'
            "// The raw audio of the model's test samples (test_data.h, same order), the int8 features the host\n"
            "// TFLM interpreter computed from it, and the table feature q -> model input (index q + 128).\n"
            f"constexpr int kNumAudioTestSamples = {len(self.clips)};\n"
            f"using FeatureInputType = {input_type};\n\n"
            "extern const int16_t g_test_audio[kNumAudioTestSamples][kClipSamples];\n"
            "extern const int8_t g_test_expected_features[kNumAudioTestSamples][kFeatureSize];\n"
            "extern const FeatureInputType g_feature_to_input[256];\n\n#endif  // EDGEDISTILL_AUDIO_TEST_DATA_H_\n"
        )
        cc = header + (
            '#include "audio_test_data.h"\n\n'
            f"const int16_t g_test_audio[kNumAudioTestSamples][kClipSamples] = {{\n{audio_rows}\n}};\n\n"
            f"const int8_t g_test_expected_features[kNumAudioTestSamples][kFeatureSize] = {{\n{feature_rows}\n}};\n\n"
            f"const FeatureInputType g_feature_to_input[256] = {{{table_text}}};\n"
        )
        return h, cc

    def manifest(self) -> dict[str, Any]:
        """The ``front_end`` section of ``micro_export.json``."""
        return {
            "file": "front_end.tflite",
            "size_bytes": len(self.device_bytes),
            "file_size_bytes": len(self.tflite_bytes),
            "compacted": self.device_bytes is not self.tflite_bytes,
            "ops": self.ops,
            "resolver_methods": self.methods,
            "arena_bytes_host": self.arena["arena_bytes"],
            "arena_margin_bytes": self.arena["margin"],
            "kFrontEndArenaSize": self.arena["tensor_arena_size"],
            "arena_probes": self.arena.get("num_probes"),
            "parameters": self.frontend.to_dict(),
            "num_audio_test_samples": int(len(self.clips)),
            "test_audio": "synthetic tones" if self.synthetic else "test split",
            "files": list(FRONT_END_FILES),
            "feature_to_input": "g_feature_to_input[q + 128] = quantize_input((q + 128) / 256)",
        }


__all__ = ["FRONT_END_FILES", "FrontEndExport", "synthetic_clips"]
