"""The audio front end: TFLite Micro's Signal ops, as a ``.tflite`` model run by TFLM on the host and on the device.

Why this design. The classic failure of keyword spotting on a device is a front end there that
differs from the one used in training (another FFT, window, mel scale, log or quantization). Here
the front end is *one* ``.tflite`` flatbuffer built of TFLite Micro's own audio kernels (the
``Signal*`` custom ops of ``tensorflow/lite/micro`` ``signal/``, which ``MicroMutableOpResolver``
registers with ``AddWindow()``, ``AddRfft()``, ``AddFilterBank...()``, ``AddPCAN()``, ...). The
training features are that flatbuffer's outputs computed by the TFLM interpreter (the PyPI
``tflite-micro`` runtime, which registers the Signal ops), and the firmware runs the same bytes
with the same kernels, frame by frame, from the same reset state. Host and device therefore share
every instruction of the feature computation (fixed point throughout: int16 window, auto-scaled
int16 FFT, uint32 energies, uint64 filter bank, square root, noise reduction, PCAN gain control,
log, int8 output); nothing is re-implemented in Python or in C.

The other design (a front end of builtin ops: framing, a DFT as a constant matmul, power, mel
matrix, log, quantized to int8/int16) was not chosen: TFLM's ``LOG`` kernel has no integer
version, so the log would be a float op or an approximation of our own, and an int8 DFT loses the
dynamic range a 16-bit FFT with auto-scaling keeps. The Signal ops are what TFLM's micro_speech
example ships.

The graph is micro_speech's ``audio_preprocessor_int8.tflite``
(``tensorflow/lite/micro/examples/micro_speech/audio_preprocessor.py`` at the pinned TFLM) with
its sample rate, window, stride, channel count and band made parameters: with micro_speech's
parameters, :func:`build_frontend_model` gives that file's constants and outputs bit for bit
(``tests/test_audio.py`` checks it when ``TFLM_DIR`` points at a checkout). Its constants (Hann
window, mel filter bank weights, PCAN gain table) are computed here in float32 the way TFLM's
Python generator computes them (its C++ helpers ``FreqToMel`` and ``WideDynamicFuncLut`` are
ported), but whatever values they take, host and device read them from the same flatbuffer.

One invocation turns ``window`` int16 samples into ``num_channels`` int8 features; a clip of
``clip_samples`` gives ``num_frames`` frames (stride ``stride_samples``), each clip from a reset
interpreter (the noise estimate of spectral subtraction is state). The int8 features ``q`` become
the model's float input ``(q + 128) / 256`` (in [0, 1), as images are); on the device a 256-entry
table maps ``q`` to the model's int8 input (:func:`feature_to_input_table`), computed with the
very function that quantizes the host's test inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from typing import Any

import numpy as np

from edgedistill.config import DataConfig
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)

DESCRIPTION_PREFIX = "edgedistill audio front end "
# A front end needs far less; on the host the arena size changes nothing but memory (the device
# arena is measured at export time by edgedistill.micro).
HOST_ARENA_BYTES = 256 * 1024

# micro_speech's fixed-point settings (audio_preprocessor.py FeatureParams), kept as they are.
WINDOW_SCALING_BITS = 12
FILTER_BANK_WEIGHT_SCALING_BITS = 12
FILTER_BANK_ALIGNMENT = 4
FILTER_BANK_CHANNEL_BLOCK_SIZE = 4
FILTER_BANK_POST_SCALING_BITS = 6
SPECTRAL_SUBTRACTION_BITS = 14
SMOOTHING_BITS = 10
EVEN_SMOOTHING = 0.025
ODD_SMOOTHING = 0.06
MIN_SIGNAL_REMAINING = 0.05
PCAN_STRENGTH = 0.95
PCAN_OFFSET = 80.0
PCAN_GAIN_BITS = 21
PCAN_SMOOTHING_BITS = 10
PCAN_SNR_SHIFT = 6  # audio_preprocessor.py's pcan_op passes 6 whatever it computes
LEGACY_OUTPUT_DIVISOR = int(25.6 * 26 + 0.5)  # int16 log features -> int8: (f * 256 + 333) / 666 - 128
# The smallest log feature that maps to int8 127: (663 * 256 + 333) // 666 - 128 = 127.
FEATURE_TABLE_LAST = -(-(255 * LEGACY_OUTPUT_DIVISOR - LEGACY_OUTPUT_DIVISOR // 2) // 256)
MIN_FFT_LENGTH, MAX_FFT_LENGTH = 64, 2048


@dataclasses.dataclass(frozen=True)
class FrontEnd:
    """The parameters of a front end; everything else is derived or micro_speech's fixed setting."""

    # The defaults are the --audio-* options' (DataConfig: one definition, with their help and checks).
    sample_rate: int = DataConfig.audio_sample_rate
    clip_ms: int = DataConfig.audio_clip_ms
    window_ms: int = DataConfig.audio_window_ms
    stride_ms: int = DataConfig.audio_stride_ms
    num_channels: int = DataConfig.audio_channels
    lower_hz: float = DataConfig.audio_lower_hz
    upper_hz: float | None = DataConfig.audio_upper_hz  # None: min(7500 Hz, 15/16 of the Nyquist frequency)

    def __post_init__(self) -> None:
        if self.upper_hz is None:  # resolved once, so a front end read back from its file compares equal
            object.__setattr__(self, "upper_hz", min(7500.0, self.sample_rate / 2 * 15 / 16))
        if self.window_samples > self.clip_samples:
            raise InputError(
                f"The audio window ({self.window_ms} ms) is longer than the clip ({self.clip_ms} ms). "
                "Give --audio-clip-ms >= --audio-window-ms."
            )
        if not MIN_FFT_LENGTH <= self.fft_length <= MAX_FFT_LENGTH:
            raise InputError(
                f"A {self.window_ms} ms window at {self.sample_rate} Hz is {self.window_samples} samples; TFLM's FFT "
                f"takes {MIN_FFT_LENGTH // 2 + 1}..{MAX_FFT_LENGTH} samples. Change --audio-window-ms or --audio-sample-rate."
            )
        if not 0 <= self.lower_hz < self.band_upper_hz < self.sample_rate / 2:
            raise InputError(
                f"The filter bank band {self.lower_hz:g}..{self.band_upper_hz:g} Hz must lie inside 0..{self.sample_rate / 2:g} "
                f"Hz "
                f"(half the {self.sample_rate} Hz sample rate). Change --audio-lower-hz / --audio-upper-hz."
            )

    @property
    def band_upper_hz(self) -> float:
        return float(self.upper_hz)  # type: ignore[arg-type]  # set in __post_init__

    @property
    def window_samples(self) -> int:
        return int(self.window_ms * self.sample_rate / 1000)

    @property
    def stride_samples(self) -> int:
        return int(self.stride_ms * self.sample_rate / 1000)

    @property
    def clip_samples(self) -> int:
        return int(self.clip_ms * self.sample_rate / 1000)

    @property
    def num_frames(self) -> int:
        return 1 + (self.clip_samples - self.window_samples) // self.stride_samples

    @property
    def feature_shape(self) -> tuple[int, int]:
        """(frames, channels): the model input is this with one channel, ``(frames, channels, 1)``."""
        return (self.num_frames, self.num_channels)

    @property
    def fft_length(self) -> int:
        return 1 << max(0, math.ceil(math.log2(max(1, self.window_samples))))

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "upper_hz": self.band_upper_hz,
            "window_samples": self.window_samples,
            "stride_samples": self.stride_samples,
            "clip_samples": self.clip_samples,
            "num_frames": self.num_frames,
            "fft_length": self.fft_length,
            "feature_shape": list(self.feature_shape),
            "feature_to_float": "(q + 128) / 256",
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FrontEnd:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


# ---------------------------------------------------------------------------------------
# Constants, computed as TFLM's Python generator computes them (float32)


def freq_to_mel(freq: float) -> np.float32:
    """TFLM's ``FreqToMel``: ``1127.0f * log1pf(freq / 700.0f)`` in float32."""
    return np.float32(1127.0) * np.log1p(np.float32(freq) / np.float32(700.0))


def hann_window(length: int) -> np.ndarray:
    index = np.arange(length)
    weights = 0.5 - 0.5 * np.cos(np.pi * 2 / length * (index + 0.5))
    return np.round(weights * (1 << WINDOW_SCALING_BITS)).astype(np.int16)


def _center_mels(num_channels: int, lower_hz: float, upper_hz: float) -> np.ndarray:
    mel_lower, mel_upper = freq_to_mel(lower_hz), freq_to_mel(upper_hz)
    spacing = (mel_upper - mel_lower) / np.float32(num_channels)
    return mel_lower + spacing * np.arange(1, num_channels + 1, dtype=np.float32)


def _channel_layout(spectrum_size: int, hz_per_bin: float, center: np.ndarray, start_index: int):
    """Per channel: first bin, number of bins, and the aligned/padded layout of its weights."""
    index_alignment = max(1, FILTER_BANK_ALIGNMENT // 2)  # int16 weights
    block = FILTER_BANK_CHANNEL_BLOCK_SIZE
    count = len(center)
    freq_starts, weight_starts, widths = (np.zeros(count, np.int16) for _ in range(3))
    actual_starts, actual_widths = np.zeros(count, np.int64), np.zeros(count, np.int64)
    channel_start, weight_index, needs_zeros = start_index, 0, False
    for channel in range(count):
        freq_index = channel_start
        while freq_to_mel(freq_index * hz_per_bin) <= center[channel]:
            freq_index += 1
        width = freq_index - channel_start
        actual_starts[channel], actual_widths[channel] = channel_start, width
        if width == 0:  # a channel no bin falls into reads a block of zero weights at the start
            freq_starts[channel], weight_starts[channel], widths[channel] = 0, 0, block
            if not needs_zeros:
                needs_zeros = True
                weight_starts[:channel] += block
                weight_index += block
        else:
            aligned_start = channel_start // index_alignment * index_alignment
            padded = ((channel_start - aligned_start + width - 1) // block + 1) * block
            freq_starts[channel], weight_starts[channel], widths[channel] = aligned_start, weight_index, padded
            weight_index += padded
        channel_start = freq_index
    return freq_starts, weight_starts, widths, actual_starts, actual_widths, weight_index


def filter_bank_constants(frontend: FrontEnd) -> dict[str, Any]:
    """The five int16 tables of ``SignalFilterBank`` and the energy range, as TFLM's generator makes them."""
    spectrum_size = frontend.fft_length // 2 + 1
    hz_per_bin = (frontend.sample_rate / 2) / (spectrum_size - 1)
    lower, upper = frontend.lower_hz, frontend.band_upper_hz
    center = _center_mels(frontend.num_channels + 1, lower, upper)
    start_index = round(1 + lower / hz_per_bin)
    freq_starts, weight_starts, widths, actual_starts, actual_widths, num_weights = _channel_layout(
        spectrum_size, hz_per_bin, center, start_index
    )
    weights, unweights = np.zeros(num_weights, np.int16), np.zeros(num_weights, np.int16)
    end_index, mel_low = 0, freq_to_mel(lower)
    scale = np.float32(1 << FILTER_BANK_WEIGHT_SCALING_BITS)
    for channel in range(len(center)):
        frequency = int(actual_starts[channel])
        offset = frequency - int(freq_starts[channel])
        denominator = np.float32(center[channel] - (mel_low if channel == 0 else center[channel - 1]))
        for j in range(int(actual_widths[channel])):
            weight = np.float32(center[channel] - freq_to_mel(frequency * hz_per_bin)) / denominator
            index = int(weight_starts[channel]) + offset + j
            weights[index] = int(weight * scale)
            unweights[index] = int((np.float32(1) - weight) * scale)
            frequency += 1
        end_index = max(end_index, frequency)
    if end_index >= spectrum_size:
        raise InputError(
            f"The filter bank's upper edge {upper:g} Hz reaches past the spectrum at {frontend.sample_rate} Hz. "
            "Lower --audio-upper-hz."
        )
    return {
        "start_index": start_index,
        "end_index": end_index,
        "weights": weights,
        "unweights": unweights,
        "channel_frequency_starts": freq_starts,
        "channel_weight_starts": weight_starts,
        "channel_widths": widths,
    }


def _pcan_gain(x: int, input_bits: int) -> int:
    x_float = np.float32(x) / np.float32(1 << input_bits)
    gain = np.float32(1 << PCAN_GAIN_BITS) * np.power(x_float + np.float32(PCAN_OFFSET), np.float32(-PCAN_STRENGTH))
    return 32767 if gain > 32767 else int(np.float32(gain + np.float32(0.5)))


def pcan_gain_table(input_bits: int) -> np.ndarray:
    """TFLM's ``WideDynamicFuncLut``: 125 int16 entries (a quadratic per power-of-two interval)."""
    table = np.zeros(4 * 32 - 3 + 1, dtype=np.int64)
    table[0], table[1] = _pcan_gain(0, input_bits), _pcan_gain(1, input_bits)
    for interval in range(2, 33):
        x0 = 1 << (interval - 1)
        x1 = x0 + (x0 >> 1)
        x2 = x0 + (x0 - 1) if interval == 32 else 2 * x0
        y0, y1, y2 = (_pcan_gain(x, input_bits) for x in (x0, x1, x2))
        a1 = 4 * (y1 - y0) - (y2 - y0)
        base = 4 * interval - 6
        table[base : base + 4] = (y0, a1, (y2 - y0) - a1, 0)
    return table[:125].astype(np.int16)  # int16 wrap-around as the C++ static_cast


# ---------------------------------------------------------------------------------------
# The flatbuffer


class _GraphBuilder:
    """A one-subgraph TFLite model in the flatbuffers object API (TFLM's schema module)."""

    def __init__(self) -> None:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

        self.schema = schema
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.buffers = [schema.BufferT()]  # buffer 0: the empty sentinel
        self.model.operatorCodes = []
        self.subgraph = schema.SubGraphT()
        self.subgraph.tensors, self.subgraph.operators = [], []
        self._codes: dict[str, int] = {}

    def tensor(self, name: str, dtype: str, shape: list[int], data: np.ndarray | None = None) -> int:
        tensor = self.schema.TensorT()
        tensor.name, tensor.type, tensor.shape = name, getattr(self.schema.TensorType, dtype), list(shape)
        tensor.buffer = 0
        if data is not None:
            buffer = self.schema.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.model.buffers.append(buffer)
            tensor.buffer = len(self.model.buffers) - 1
        self.subgraph.tensors.append(tensor)
        return len(self.subgraph.tensors) - 1

    def constant(self, name: str, values: Any, dtype: str) -> int:
        array = np.asarray(values, dtype={"INT16": np.int16, "INT32": np.int32}[dtype])
        return self.tensor(name, dtype, list(array.shape), array)

    def _code(self, op: str) -> int:
        if op not in self._codes:
            code = self.schema.OperatorCodeT()
            if op.startswith("Signal"):
                code.builtinCode = code.deprecatedBuiltinCode = self.schema.BuiltinOperator.CUSTOM
                code.customCode = op
            else:
                code.builtinCode = code.deprecatedBuiltinCode = getattr(self.schema.BuiltinOperator, op)
            code.version = 1
            self.model.operatorCodes.append(code)
            self._codes[op] = len(self.model.operatorCodes) - 1
        return self._codes[op]

    def op(
        self,
        op: str,
        inputs: list[int],
        outputs: list[int],
        *,
        custom: dict[str, Any] | None = None,
        options: tuple[str, Any] | None = None,
    ) -> None:
        from flatbuffers import flexbuffers

        operator = self.schema.OperatorT()
        operator.opcodeIndex, operator.inputs, operator.outputs = self._code(op), inputs, outputs
        if custom is not None:
            operator.customOptions = list(flexbuffers.Dumps(custom))
            operator.customOptionsFormat = self.schema.CustomOptionsFormat.FLEXBUFFERS
        if options is not None:
            operator.builtinOptionsType = getattr(self.schema.BuiltinOptions, options[0])
            operator.builtinOptions = options[1]
        self.subgraph.operators.append(operator)

    def options(self, kind: str, **values: Any) -> tuple[str, Any]:
        instance = getattr(self.schema, f"{kind}T")()
        for key, value in values.items():
            setattr(instance, key, value)
        return kind, instance

    def finish(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        import flatbuffers

        self.subgraph.inputs, self.subgraph.outputs, self.subgraph.name = inputs, outputs, "main"
        self.model.subgraphs, self.model.description = [self.subgraph], description
        builder = flatbuffers.Builder(16 * 1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _spectrum_ops(graph: _GraphBuilder, frontend: FrontEnd, bank: dict[str, Any]) -> tuple[int, int]:
    """Window, auto-scale, FFT, energy (zeroed outside the bank's bins): (energy tensor, scale-shift tensor)."""
    window, fft_length = frontend.window_samples, frontend.fft_length
    spectrum = fft_length // 2 + 1
    audio = graph.tensor("audio_frame", "INT16", [1, window])
    windowed = graph.tensor("signal_window", "INT16", [1, window])
    graph.op(
        "SignalWindow",
        [audio, graph.constant("hann_window", hann_window(window), "INT16")],
        [windowed],
        custom={"shift": WINDOW_SCALING_BITS},
    )
    flat = graph.tensor("frame", "INT16", [window])
    graph.op(
        "RESHAPE",
        [windowed, graph.constant("frame_shape", [-1], "INT32")],
        [flat],
        options=graph.options("ReshapeOptions", newShape=[-1]),
    )
    scaled, shift = graph.tensor("signal_fft_auto_scale", "INT16", [window]), graph.tensor("scale_shift", "INT32", [])
    graph.op("SignalFftAutoScale", [flat], [scaled, shift], custom={})
    fft = graph.tensor("signal_rfft", "INT16", [2 * spectrum])
    graph.op("SignalRfft", [scaled], [fft], custom={"T": graph.schema.TensorType.INT16, "fft_length": fft_length})
    start, end = bank["start_index"], bank["end_index"]
    energy = graph.tensor("signal_energy", "UINT32", [spectrum])
    graph.op("SignalEnergy", [fft], [energy], custom={"end_index": end, "start_index": start})
    # SignalEnergy leaves the bins outside [start, end) unset. micro_speech's graph zeroes them (CAST,
    # STRIDED_SLICE, CONCATENATION, CAST: 4 ops per frame); SignalFilterBank reads only the bins of its
    # channels (signal/src/filter_bank.cc), all inside [start, end), so the features are the same without.
    return energy, shift


def _filter_bank_ops(graph: _GraphBuilder, frontend: FrontEnd, bank: dict[str, Any], energy: int, shift: int) -> int:
    """Mel filter bank, square root, noise reduction, PCAN, log: the int16 log-mel tensor."""
    channels = frontend.num_channels
    tables = [
        graph.constant(name, bank[name], "INT16")
        for name in ("weights", "unweights", "channel_frequency_starts", "channel_weight_starts", "channel_widths")
    ]
    bank_out = graph.tensor("signal_filter_bank", "UINT64", [channels])
    graph.op("SignalFilterBank", [energy, *tables], [bank_out], custom={"num_channels": channels})
    root = graph.tensor("signal_filter_bank_square_root", "UINT32", [channels])
    graph.op("SignalFilterBankSquareRoot", [bank_out, shift], [root], custom={})
    cleaned, noise = (graph.tensor(f"spectral_subtraction_{n}", "UINT32", [channels]) for n in ("output", "noise_estimate"))
    one = 1 << SPECTRAL_SUBTRACTION_BITS
    smoothing, alternate = int(EVEN_SMOOTHING * one), int(ODD_SMOOTHING * one)
    graph.op(
        "SignalFilterBankSpectralSubtraction",
        [root],
        [cleaned, noise],
        custom={
            "alternate_one_minus_smoothing": one - alternate,
            "alternate_smoothing": alternate,
            "clamping": False,
            "min_signal_remaining": int(MIN_SIGNAL_REMAINING * one),
            "num_channels": channels,
            "one_minus_smoothing": one - smoothing,
            "smoothing": smoothing,
            "smoothing_bits": SMOOTHING_BITS,
            "spectral_subtraction_bits": SPECTRAL_SUBTRACTION_BITS,
        },
    )
    correction_bits = int(math.log2(frontend.fft_length)) - FILTER_BANK_WEIGHT_SCALING_BITS // 2
    gain = graph.constant("pcan_gain_table", pcan_gain_table(PCAN_SMOOTHING_BITS - correction_bits), "INT16")
    pcan = graph.tensor("signal_pcan", "UINT32", [channels])
    graph.op("SignalPCAN", [cleaned, noise, gain], [pcan], custom={"snr_shift": PCAN_SNR_SHIFT})
    log = graph.tensor("signal_filter_bank_log", "INT16", [channels])
    graph.op(
        "SignalFilterBankLog",
        [pcan],
        [log],
        custom={"input_correction_bits": correction_bits, "output_scale": 1 << FILTER_BANK_POST_SCALING_BITS},
    )
    return log


def int8_feature_table() -> np.ndarray:
    """micro_speech's legacy int16 -> int8 scaling, ``clip((f * 256 + 333) // 666 - 128)``, for f in 0..LAST."""
    f = np.arange(FEATURE_TABLE_LAST + 1, dtype=np.int64)
    return np.clip((f * 256 + LEGACY_OUTPUT_DIVISOR // 2) // LEGACY_OUTPUT_DIVISOR - 128, -128, 127).astype(np.int8)


def _int8_output_ops(graph: _GraphBuilder, frontend: FrontEnd, log: int) -> int:
    """int16 log features -> int8 by a table: CAST, MINIMUM, GATHER (3 ops per frame).

    micro_speech computes the same values with 8 int32 ops (CAST, MUL, ADD, DIV, ADD, MINIMUM,
    MAXIMUM, CAST). SignalFilterBankLog's outputs are >= 0 (signal/src/filter_bank_log.cc), and
    every f >= FEATURE_TABLE_LAST maps to 127, so clamping to FEATURE_TABLE_LAST and reading a
    table gives the same int8 features. A QUANTIZE (int16 -> int8 requantize) would be one op but
    rounds twice (its multiplier needs a right shift for 256/666), so it differs by one on ~1/4 of values.
    """
    channels = frontend.num_channels
    wide = graph.tensor("log_int32", "INT32", [channels])
    graph.op("CAST", [log], [wide])
    clamped = graph.tensor("log_clamped", "INT32", [channels])
    graph.op("MINIMUM", [wide, graph.constant("table_last", FEATURE_TABLE_LAST, "INT32")], [clamped])
    features = graph.tensor("features", "INT8", [channels])
    table = graph.tensor("int8_feature_table", "INT8", [FEATURE_TABLE_LAST + 1], int8_feature_table())
    graph.op("GATHER", [table, clamped], [features], options=graph.options("GatherOptions", axis=0, batchDims=0))
    return features


@functools.lru_cache(maxsize=8)
def build_frontend_model(frontend: FrontEnd) -> bytes:
    """The front end as a ``.tflite`` flatbuffer: int16 ``[1, window]`` in, int8 ``[num_channels]`` out.

    Its description holds the parameters as JSON (``DESCRIPTION_PREFIX`` + JSON), so a front-end
    file says what it expects (:func:`read_frontend`).
    """
    bank = filter_bank_constants(frontend)
    graph = _GraphBuilder()
    energy, shift = _spectrum_ops(graph, frontend, bank)
    log = _filter_bank_ops(graph, frontend, bank, energy, shift)
    features = _int8_output_ops(graph, frontend, log)
    description = DESCRIPTION_PREFIX + json.dumps(frontend.to_dict(), sort_keys=True)
    return graph.finish([0], [features], description)


def read_frontend(tflite_bytes: bytes, *, source: str = "front end") -> FrontEnd:
    """The parameters a front-end flatbuffer was built with; ``InputError`` if it is not one of ours."""
    from edgedistill.tflite_model import read_model_info

    description = read_model_info(tflite_bytes, source=source).description
    if not description.startswith(DESCRIPTION_PREFIX):
        raise InputError(
            f"{source} is not an edgedistill audio front end (its description does not start with "
            f"{DESCRIPTION_PREFIX.strip()!r}). Use the front_end.tflite an audio run wrote."
        )
    return FrontEnd.from_dict(json.loads(description[len(DESCRIPTION_PREFIX) :]))


# ---------------------------------------------------------------------------------------
# Running it: the TFLM interpreter, frame by frame, a reset per clip


def frame_clips(clips: np.ndarray, frontend: FrontEnd) -> np.ndarray:
    """int16 clips ``(N, clip_samples)`` -> frames ``(N, num_frames, 1, window_samples)``
    (the front end's input ``[1, window]``)."""
    clips = np.asarray(clips)
    if clips.ndim != 2 or clips.shape[1] != frontend.clip_samples or clips.dtype != np.int16:
        raise InputError(
            f"Audio clips must be int16 of shape (N, {frontend.clip_samples}); received {clips.dtype} {clips.shape}."
        )
    starts = np.arange(frontend.num_frames) * frontend.stride_samples
    index = starts[:, None] + np.arange(frontend.window_samples)[None, :]
    return clips[:, index][:, :, None, :]


class FrontEndRunner:
    """The front end on the TFLM interpreter in this process (the one runner, :class:`edgedistill.tflm.TFLMModel`)."""

    def __init__(self, frontend: FrontEnd, *, tflite_bytes: bytes | None = None) -> None:
        from edgedistill.tflm import TFLMModel

        self.frontend = frontend
        self.tflite_bytes = tflite_bytes if tflite_bytes is not None else build_frontend_model(frontend)
        self.model = TFLMModel(self.tflite_bytes, arena_size=HOST_ARENA_BYTES, source="the audio front end")

    def features(self, clips: np.ndarray) -> np.ndarray:
        """int16 clips ``(N, clip_samples)`` -> int8 features ``(N, num_frames, num_channels)``."""
        return self.model.raw_sequence_outputs(frame_clips(clips, self.frontend))


def check_feature_shape(frontend: FrontEnd, model_input_shape, *, frontend_source: str, model_source: str, fix: str) -> None:
    """``InputError`` unless the model takes the front end's ``(frames, channels)`` features (with or without a channel axis)."""
    shape = tuple(int(d) for d in model_input_shape[1:])
    if len(shape) == 3 and shape[-1] == 1:
        shape = shape[:-1]
    if shape != frontend.feature_shape:
        frames, channels = frontend.feature_shape
        raise InputError(
            f"The audio front end {frontend_source} gives {frames} frames x {channels} channels, but {model_source} takes "
            f"input {list(model_input_shape)}; expected [1, {frames}, {channels}, 1]. {fix}"
        )


def features_to_float(features: np.ndarray) -> np.ndarray:
    """int8 features -> the model's float input ``(q + 128) / 256`` with a channel axis: ``(N, frames, channels, 1)``."""
    return ((np.asarray(features, dtype=np.float32) + 128.0) / 256.0)[..., None]


def feature_to_input_table(input_detail: dict[str, Any]) -> np.ndarray:
    """The 256-entry table the device maps a front-end value ``q`` through (index ``q + 128``) to the model's input.

    Computed with :func:`edgedistill.tflite_model.quantize_input`, the function that quantizes the
    host's float features for the TFLM model, so ``table[q + 128]`` equals what the host feeds it.
    """
    from edgedistill.tflite_model import quantize_input

    values = features_to_float(np.arange(-128, 128, dtype=np.int8))[..., 0]
    return quantize_input(values.astype(np.float32), input_detail)


__all__ = [
    "FrontEnd",
    "FrontEndRunner",
    "build_frontend_model",
    "read_frontend",
    "frame_clips",
    "check_feature_shape",
    "features_to_float",
    "feature_to_input_table",
    "filter_bank_constants",
    "pcan_gain_table",
    "hann_window",
    "freq_to_mel",
]
