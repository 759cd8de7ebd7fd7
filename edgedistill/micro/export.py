"""A micro export folder: written by :func:`export_micro`, read back by :func:`load_micro_export`.

``export_micro(tflite_bytes, output_dir, ...)`` writes, into ``output_dir``:

- ``model_data.h`` / ``model_data.cc``: the flatbuffer as a 16-byte aligned C array, compacted (without
  names, signatures and repeated zero points, :mod:`edgedistill.micro.compact`) unless asked not to;
- ``model_op_resolver.h``: ``MicroMutableOpResolver<N>`` with exactly the model's ops;
- ``model_settings.h``: ``kTensorArenaSize`` (smallest arena the real TFLM interpreter
  accepts, found by bisection, plus a stated margin), input/output sizes;
- ``test_data.h`` / ``test_data.cc``: a few test samples (of ``--data``, else seeded random inputs) and the int8 outputs the host
  TFLM interpreter gives for them, so firmware can check itself;
- ``micro_export.json``: everything above as data (written last: its presence marks a complete export).

Every problem (not an int8 model, an op TFLM lacks) is reported before anything is written.
Both functions return the one :class:`MicroExport`; the firmware commands consume it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.config import MEMORY_PLANS, MicroConfig
from edgedistill.errors import InputError
from edgedistill.fileio import write_bytes_atomic, write_json_atomic, write_text_atomic
from edgedistill.micro.arena import arena_with_margin, measure_arena
from edgedistill.micro.resolver import check_micro_compatible
from edgedistill.micro.sources import (
    C_TYPES,
    HEADER_TEMPLATE,
    render_model_data,
    render_op_resolver,
    render_settings,
    render_test_data,
)
from edgedistill.tflite_model import quantize_input, read_model_info, runtime_versions
from edgedistill.tflm import TFLMModel, tflm_outputs

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MICRO_DIR = "micro"
REQUIRED_FILES: tuple[str, ...] = (
    "model_data.h",
    "model_data.cc",
    "model_op_resolver.h",
    "model_settings.h",
    "test_data.h",
    "test_data.cc",
    "micro_export.json",
)


@dataclasses.dataclass(frozen=True)
class MicroExport:
    """A micro export folder as data.

    Its arena figures: ``arena_bytes_host`` is the smallest arena the TFLM interpreter accepted
    on the 64-bit host (measured); ``arena_margin_bytes`` the margin added to it;
    ``tensor_arena_size`` is ``kTensorArenaSize``, what the firmware reserves (host + margin,
    rounded up to 16). ``metadata`` is ``micro_export.json``.
    """

    output_dir: Path
    ops: list[str]
    resolver_methods: list[str]
    arena_bytes_host: int
    arena_margin_bytes: int
    tensor_arena_size: int
    num_test_samples: int
    files: list[str]
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_metadata(cls, output_dir: str | Path, metadata: dict[str, Any]) -> MicroExport:
        tensor_arena_size = int(metadata["kTensorArenaSize"])
        arena_bytes_host = int(metadata["arena_bytes_host"])
        return cls(
            output_dir=Path(output_dir),
            ops=list(metadata.get("ops", [])),
            resolver_methods=list(metadata.get("resolver_methods", [])),
            arena_bytes_host=arena_bytes_host,
            arena_margin_bytes=int(metadata.get("arena_margin_bytes", tensor_arena_size - arena_bytes_host)),
            tensor_arena_size=tensor_arena_size,
            num_test_samples=int(metadata["num_test_samples"]),
            files=list(REQUIRED_FILES) + list(metadata.get("front_end", {}).get("files", [])),
            metadata=metadata,
        )

    @property
    def micro_dir(self) -> Path:
        """The export folder (``output_dir``)."""
        return self.output_dir

    @property
    def run_dir(self) -> Path:
        """The run folder the export belongs to (``runs/<id>`` for ``runs/<id>/micro``)."""
        return self.output_dir.parent

    @property
    def arena_probes(self) -> int | None:
        return self.metadata.get("arena_probes")

    @property
    def model_size_bytes(self) -> int:
        return int(self.metadata["model_size_bytes"])

    @property
    def model_path(self) -> Path:
        """The .tflite the export was made from (next to the export, or in the run folder)."""
        name = str(self.metadata.get("model_file", ""))
        beside = self.output_dir / name
        return beside if beside.is_file() else self.run_dir / name

    @property
    def output_dtype(self) -> str:
        return str(self.metadata.get("output_dtype", "int8"))

    def expected_outputs(self) -> list[list[float]]:
        """The host TFLM outputs of the test samples, read from ``test_data.cc`` (not from the firmware)."""
        return parse_c_array_rows(self.output_dir / "test_data.cc", "g_test_expected_outputs")

    def test_labels(self) -> list[int]:
        rows = parse_c_array_rows(self.output_dir / "test_data.cc", "g_test_labels", nested=False)
        return [int(v) for v in rows[0]]

    def to_dict(self) -> dict[str, Any]:
        """The ``micro`` section of ``report.json``."""
        return {
            "output_dir": str(self.output_dir),
            "ops": self.ops,
            "resolver_methods": self.resolver_methods,
            "arena_bytes_host": self.arena_bytes_host,
            "arena_margin_bytes": self.arena_margin_bytes,
            "kTensorArenaSize": self.tensor_arena_size,
            "num_test_samples": self.num_test_samples,
            "files": self.files,
            "arena_probes": self.arena_probes,
            **({"front_end": self.metadata["front_end"]} if "front_end" in self.metadata else {}),
        }


# ---------------------------------------------------------------------------------------
# Reading an export


def find_micro_dir(run_dir: str | Path) -> Path:
    """``run_dir/micro`` (or ``run_dir`` itself if it is the export folder)."""
    run_dir = Path(run_dir)
    if (run_dir / "micro_export.json").exists():
        return run_dir
    return run_dir / MICRO_DIR


def _read_metadata(micro_dir: Path) -> dict[str, Any]:
    path = micro_dir / "micro_export.json"
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{str(path)!r} is not valid JSON ({error}). Re-run `edgedistill micro` to write it again.") from None
    version = metadata.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise InputError(
            f"micro_export.json has schema_version={version!r}; expected one of {SUPPORTED_SCHEMA_VERSIONS}. "
            "Re-export with this edgedistill version (`edgedistill micro`)."
        )
    for key in ("kTensorArenaSize", "arena_bytes_host", "model_size_bytes", "num_test_samples"):
        if not isinstance(metadata.get(key), int) or metadata[key] < 0:
            raise InputError(
                f"micro_export.json: {key!r} must be a non-negative integer. Received: {metadata.get(key)!r}. "
                "Re-run `edgedistill micro`."
            )
    return metadata


def load_micro_export(folder_or_run_dir: str | Path) -> MicroExport:
    """Validate and load a micro export: the export folder itself or a run folder holding ``micro/``;
    :class:`InputError` if it is not usable."""
    run_dir = Path(folder_or_run_dir)
    if not run_dir.is_dir():
        raise InputError(
            f"Run folder {str(run_dir)!r} does not exist. Expected a folder written by `edgedistill run` "
            "(runs/<id>). Pass an existing run folder."
        )
    micro_dir = find_micro_dir(run_dir)
    missing = [name for name in REQUIRED_FILES if not (micro_dir / name).is_file()]
    if missing:
        raise InputError(
            f"Run folder {str(run_dir)!r} has no complete micro export: missing {', '.join(missing)} in "
            f"{str(micro_dir)!r}. Expected the files of `edgedistill micro`. "
            f"Fix: run `{_micro_command(run_dir)}` (or `edgedistill run`) first."
        )
    return MicroExport.from_metadata(micro_dir, _read_metadata(micro_dir))


def _micro_command(run_dir: Path) -> str:
    """The `edgedistill micro` command that writes ``run_dir/micro`` (from the run's int8 model when it has one)."""
    import shlex

    models = sorted(run_dir.glob("*int8*.tflite")) or sorted(run_dir.glob("*.tflite"))
    model = shlex.quote(str(models[0])) if models else "MODEL.tflite"
    return f"edgedistill micro {model} -o {shlex.quote(str(run_dir / MICRO_DIR))}"


_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?f?|0x[0-9a-fA-F]+")


def _c_number(token: str) -> float:
    token = token.rstrip("f")
    if token.lower().startswith("0x"):
        return int(token, 16)
    value = float(token)
    return int(value) if value.is_integer() and "." not in token and "e" not in token.lower() else value


def parse_c_array_rows(path: Path, name: str, *, nested: bool = True) -> list[list[float]]:
    """The rows of the C array ``name`` in ``path``: ``{{1,2},{3,4}}`` -> ``[[1,2],[3,4]]``."""
    text = Path(path).read_text()
    match = re.search(rf"\b{re.escape(name)}\b[^=;]*=\s*\{{", text)
    if not match:
        raise InputError(f"{str(path)!r} does not define {name}. Re-run `edgedistill micro`.")
    depth, start = 1, match.end()
    index = start
    while depth and index < len(text):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        index += 1
    body = text[start : index - 1]
    rows_text = re.findall(r"\{([^{}]*)\}", body) if nested else [body]
    return [[_c_number(t) for t in _NUMBER.findall(row)] for row in rows_text]


# ---------------------------------------------------------------------------------------
# Writing an export


def _quantization(detail: dict[str, Any]) -> dict[str, Any] | None:
    parameters = detail["quantization_parameters"]
    if len(parameters["scales"]) == 0:
        return None
    return {"scale": float(parameters["scales"][0]), "zero_point": int(parameters["zero_points"][0])}


def _check_test_inputs(info, test_inputs, source: str) -> None:
    """One input, and test samples of its shape: checked before the arena is measured or anything written."""
    if len(info.inputs) != 1:
        names = ", ".join(f"{t.name} {t.shape}" for t in info.inputs)
        raise InputError(
            f"{source} has {len(info.inputs)} inputs ({names}); the micro export's test vectors and the firmware app "
            "feed one input tensor. Export a model with a single input."
        )
    if len(info.outputs) != 1:
        names = ", ".join(f"{t.name} {list(t.shape)}" for t in info.outputs)
        raise InputError(
            f"{source} has {len(info.outputs)} outputs ({names}); the micro export's test vectors, model_settings.h and "
            "the firmware app read one output tensor (the class scores), so the others would be dropped. Export a model "
            "with a single output (e.g. keras.Model(inputs, model.outputs[0]))."
        )
    if test_inputs is None:
        return
    expected = tuple(int(d) for d in info.inputs[0].shape[1:])
    received = tuple(int(d) for d in np.shape(test_inputs)[1:])
    if received != expected:
        raise InputError(
            f"The data's test samples have shape {received}, but {source} takes inputs of shape {expected}. "
            "Pass --data with the data set the model was trained on, or leave --data out for random test inputs."
        )
    if len(test_inputs) == 0:
        raise InputError("The data set has no test samples to embed. Pass --data with a test split, or leave --data out.")


def _test_vectors(model: TFLMModel, test_inputs, test_labels, num_test_samples: int, *, tflite_bytes: bytes):
    """(raw inputs, expected raw outputs, labels): real samples, or seeded random ones labelled -1.

    The expected outputs come from a TFLM worker process: an input that crashes TFLM stops the worker,
    never this process."""
    if test_inputs is None:
        rng = np.random.default_rng(0)
        shape = (num_test_samples, *model.input["shape"][1:])
        if _quantization(model.input) is None and np.issubdtype(model.input["dtype"], np.integer):
            # raw integer input (an audio front end's int16 samples): values over a quarter of its range
            info = np.iinfo(model.input["dtype"])
            test_inputs = rng.integers(info.min // 4, info.max // 4, size=shape).astype(np.float32)
        else:
            test_inputs = rng.random(shape, dtype=np.float32)
        test_labels = np.full(num_test_samples, -1)
    test_inputs = np.asarray(test_inputs[:num_test_samples], dtype=np.float32)
    labels = np.asarray(test_labels[:num_test_samples] if test_labels is not None else np.full(len(test_inputs), -1))
    raw_inputs = quantize_input(test_inputs, model.input)
    expected = tflm_outputs(tflite_bytes, raw_inputs, arena_bytes=model.arena_size, source=model.source)
    return raw_inputs, expected, labels


def _input_note(convention: dict[str, Any] | None) -> str:
    """One or two comment lines for test_data.h: what the raw values are and what the int8 input takes."""
    if not convention:
        return ""
    raw = convention.get("raw_values") or "raw values"
    return f"Data: {raw}.\nModel input: {convention.get('int8_input', '')}."


def _sources(
    tflite_bytes: bytes,
    ops: list[str],
    methods: list[str],
    model: TFLMModel,
    vectors,
    *,
    arena: dict[str, int],
    header: str,
    real_samples: bool = True,
    input_note: str = "",
) -> dict[str, str]:
    """File name -> text of every C/C++ source of the export."""
    raw_inputs, expected, labels = vectors
    input_size = int(np.prod(model.input["shape"]))
    output_size = int(np.prod(model.output["shape"]))
    data_h, data_cc = render_model_data(tflite_bytes, header=header)
    test_h, test_cc = render_test_data(
        raw_inputs,
        expected,
        labels,
        header=header,
        real_samples=real_samples,
        input_note=input_note,
        input_type=C_TYPES[np.dtype(model.input["dtype"]).name],
        output_type=C_TYPES[np.dtype(model.output["dtype"]).name],
    )
    settings = render_settings(
        arena_size=arena["tensor_arena_size"],
        arena_host=arena["arena_bytes"],
        margin=arena["margin"],
        input_size=input_size,
        output_size=output_size,
        num_classes=output_size,
        header=header,
    )
    return {
        "model_data.h": data_h,
        "model_data.cc": data_cc,
        "model_op_resolver.h": render_op_resolver(ops, methods, header=header),
        "model_settings.h": settings,
        "test_data.h": test_h,
        "test_data.cc": test_cc,
    }


def _manifest(
    tflite_bytes: bytes,
    ops,
    methods,
    model: TFLMModel,
    vectors: tuple[np.ndarray, np.ndarray, np.ndarray],
    arena: dict[str, int],
    margin_fraction: float,
    model_name: str,
) -> dict[str, Any]:
    num_samples = int(len(vectors[0]))
    return {
        "schema_version": SCHEMA_VERSION,
        "model_file": model_name,
        "model_size_bytes": len(tflite_bytes),
        "ops": ops,
        "resolver_methods": methods,
        "arena_bytes_host": arena["arena_bytes"],
        "arena_probes": arena.get("num_probes"),
        "arena_margin_bytes": arena["margin"],
        "arena_margin_rule": f"max({margin_fraction:.0%} of the measured arena, 1024 bytes), rounded up to 16",
        "kTensorArenaSize": arena["tensor_arena_size"],
        "input_shape": [int(d) for d in model.input["shape"]],
        "input_dtype": np.dtype(model.input["dtype"]).name,
        "output_shape": [int(d) for d in model.output["shape"]],
        "output_dtype": np.dtype(model.output["dtype"]).name,
        "input_quantization": _quantization(model.input),
        "output_quantization": _quantization(model.output),
        "num_test_samples": num_samples,
        "tflm_version": runtime_versions().get("tflite-micro"),
    }


def _apply_memory_plan(tflite_bytes: bytes, memory_plan: str, *, source: str) -> tuple[bytes, dict[str, Any]]:
    """The model to export and what planning did: ``offline`` keeps a plan only when TFLM verifies it smaller."""
    if memory_plan not in MEMORY_PLANS:
        raise InputError(f"`memory_plan` must be one of: {', '.join(MEMORY_PLANS)}. Received: memory_plan={memory_plan!r}.")
    if memory_plan == "greedy":
        return tflite_bytes, {
            "memory_plan": "greedy",
            "used_plan": False,
            "reason": "TFLM's greedy planner (--memory-plan greedy)",
        }
    from edgedistill.micro.memory_plan import plan_and_verify

    logger.info("planning the arena of %s offline (CP-SAT, verified on TFLM) ...", source)
    try:
        planned = plan_and_verify(tflite_bytes, source=source)
    except InputError as error:  # a model the planner cannot handle still exports, with TFLM's own plan
        logger.warning("offline memory plan of %s not possible: %s; TFLM's greedy planner is used", source, error)
        return tflite_bytes, {"memory_plan": "greedy", "used_plan": False, "reason": str(error)}
    except Exception as error:  # noqa: BLE001 - an optimisation never breaks an export: the model is kept as it is
        reason = f"the planner failed on this model ({type(error).__name__}: {error})"
        logger.warning("offline memory plan of %s: %s; TFLM's greedy planner is used", source, reason)
        return tflite_bytes, {"memory_plan": "greedy", "used_plan": False, "reason": reason}
    logger.info("memory plan: %s", planned.reason)
    return planned.model_bytes, planned.to_dict()


def _compact(tflite_bytes: bytes, compact: bool, *, arena_bytes: int, source: str) -> tuple[bytes, dict[str, Any]]:
    """The model as the device stores it (:mod:`edgedistill.micro.compact`), used only when TFLM gives identical
    outputs for it and the model as converted in the same arena; else the model as it was. Run after the memory
    plan (whose messages name tensors); compaction does not change the arena, so it is measured once."""
    if not compact:
        return tflite_bytes, {"compacted": False, "reason": "--no-compact"}
    from edgedistill.micro.compact import compact_model
    from edgedistill.micro.memory_plan import default_test_inputs

    try:
        compacted = compact_model(tflite_bytes, source=source)
    except InputError as error:  # a model that cannot be rewritten still exports, as it is
        logger.warning("%s not compacted: %s", source, error)
        return tflite_bytes, {"compacted": False, "reason": str(error)}
    inputs = default_test_inputs(tflite_bytes, num_samples=8)
    before = tflm_outputs(tflite_bytes, inputs, arena_bytes=arena_bytes, source=source)
    after = tflm_outputs(compacted.model_bytes, inputs, arena_bytes=arena_bytes, source=f"{source} (compacted)")
    if before.dtype != after.dtype or not np.array_equal(before, after):
        logger.warning("%s: the compacted model's TFLM outputs differ from the original's; exported as it was", source)
        return tflite_bytes, {"compacted": False, "reason": "TFLM outputs of the compacted model differ; not used"}
    logger.info(
        "%s compacted for flash: %d -> %d bytes (TFLM outputs identical)", source, len(tflite_bytes), compacted.size_bytes
    )
    return compacted.model_bytes, {"compacted": True, "verified_samples": len(inputs), **compacted.to_dict()}


def _checked_test_samples(
    info: Any,
    test_inputs: np.ndarray | None,
    test_labels: np.ndarray | None,
    *,
    front_end: Any,
    margin_fraction: float,
    source: str,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The test samples to embed, checked against the model before anything is written: the data's samples, or
    with an audio front end its features of the test audio (labels cut to as many)."""
    _check_test_inputs(info, test_inputs if front_end is None else None, source)
    if front_end is not None:  # its feature shape and features are checked before anything is written, too
        front_end.check_model(info, source=source)
        test_inputs = front_end.prepare(margin_fraction=margin_fraction, test_inputs=test_inputs)
        test_labels = test_labels[: len(test_inputs)] if test_labels is not None else None
    return test_inputs, test_labels


def _arena_of(
    tflite_bytes: bytes, arena: dict[str, int] | None, *, used_plan: bool, margin_fraction: float, source: str
) -> dict[str, int]:
    """The arena figures with ``tensor_arena_size`` and ``margin`` added; a given ``arena`` is reused only when the
    model was not re-planned (an offline plan changes the arena, so it is measured again)."""
    arena = dict(arena if arena and not used_plan else measure_arena(tflite_bytes, source=source))
    arena["tensor_arena_size"], arena["margin"] = arena_with_margin(arena["arena_bytes"], margin_fraction=margin_fraction)
    return arena


def _write_sources(output_dir: Path, sources: dict[str, str], *, front_end: Any, model: TFLMModel, header: str) -> None:
    """The C/C++ sources (and an audio front end's own sources and .tflite) into ``output_dir``."""
    if front_end is not None:
        sources.update(front_end.sources(model.input, header=header))
        write_bytes_atomic(output_dir / "front_end.tflite", front_end.tflite_bytes)
    for name, text in sources.items():
        write_text_atomic(output_dir / name, text)


def _device_model(
    tflite_bytes: bytes,
    arena: dict[str, int] | None,
    memory_plan: str,
    compact: bool,
    margin_fraction: float,
    source: str,
) -> tuple[bytes, dict[str, int], dict[str, dict[str, Any]]]:
    """The model as the device gets it (offline memory plan, then compaction), its arena figures, and the reports of
    both steps (``memory_plan``, ``compaction``) for the manifest."""
    tflite_bytes, plan_report = _apply_memory_plan(tflite_bytes, memory_plan, source=source)
    used_plan = bool(plan_report.get("used_plan"))
    arena = _arena_of(tflite_bytes, arena, used_plan=used_plan, margin_fraction=margin_fraction, source=source)
    tflite_bytes, compact_report = _compact(tflite_bytes, compact, arena_bytes=arena["tensor_arena_size"], source=source)
    return tflite_bytes, arena, {"memory_plan": plan_report, "compaction": compact_report}


def export_micro(
    tflite_bytes: bytes,
    output_dir: str | Path,
    *,
    test_inputs: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    num_test_samples: int = MicroConfig.num_test_vectors,
    margin_fraction: float = MicroConfig.arena_margin,
    model_name: str = "model.tflite",
    arena: dict[str, int] | None = None,
    front_end: Any = None,
    memory_plan: str = MicroConfig.memory_plan,
    compact: bool = MicroConfig.compact,
    input_convention: dict[str, Any] | None = None,
) -> MicroExport:
    """Write the TFLite Micro sources for an int8 model into ``output_dir``.

    Args:
        tflite_bytes: an int8 ``.tflite`` flatbuffer.
        test_inputs: the data's raw test samples (NHWC) to embed as test vectors; their
            expected outputs come from the real TFLM interpreter on the host.
        arena: a result of :func:`edgedistill.micro.measure_arena`, when already measured.
        front_end: an audio front end to export with the model
            (:class:`edgedistill.micro.frontend.FrontEndExport`); the test vectors are then its audio.
        memory_plan: ``offline`` (the default, as on the command line): an optimal placement written into
            the model (:mod:`edgedistill.micro.memory_plan`), kept only when TFLM verifies it smaller;
            ``greedy``: TFLM's own planner. The defaults are :class:`edgedistill.config.MicroConfig`'s.
        compact: store the model without what TFLM never reads (:mod:`edgedistill.micro.compact`: names,
            signatures, repeated per-channel zero points), checked on TFLM; ``model_size_bytes`` is then its size.
        input_convention: what the int8 input is (:func:`edgedistill.preprocessing.input_convention`):
            recorded in ``micro_export.json`` and said in ``test_data.h``.
    """
    from edgedistill._version import __version__

    info = read_model_info(tflite_bytes, source=model_name)
    methods = check_micro_compatible(info, source=model_name)  # before anything is written
    real_samples = test_inputs is not None
    test_inputs, test_labels = _checked_test_samples(
        info, test_inputs, test_labels, front_end=front_end, margin_fraction=margin_fraction, source=model_name
    )
    tflite_bytes, arena, reports = _device_model(tflite_bytes, arena, memory_plan, compact, margin_fraction, model_name)
    model = TFLMModel(tflite_bytes, arena_size=arena["tensor_arena_size"], source=model_name)
    vectors = _test_vectors(model, test_inputs, test_labels, num_test_samples, tflite_bytes=tflite_bytes)
    output_dir = Path(output_dir)
    header = HEADER_TEMPLATE.format(version=__version__, model=model_name)
    note = _input_note(input_convention) if front_end is None else ""
    sources = _sources(
        tflite_bytes, info.ops, methods, model, vectors, arena=arena, header=header, real_samples=real_samples, input_note=note
    )
    _write_sources(output_dir, sources, front_end=front_end, model=model, header=header)
    manifest = _manifest(tflite_bytes, info.ops, methods, model, vectors, arena, margin_fraction, model_name)
    front_end_section = front_end.manifest() if front_end is not None else None
    sections = {"front_end": front_end_section, **reports, "input_convention": input_convention}
    manifest.update({name: section for name, section in sections.items() if section is not None})
    write_json_atomic(output_dir / "micro_export.json", manifest)  # last: its presence marks a complete export
    logger.debug("micro export of %s written to %s", model_name, output_dir)
    return MicroExport.from_metadata(output_dir, manifest)


__all__ = [
    "SCHEMA_VERSION",
    "MICRO_DIR",
    "REQUIRED_FILES",
    "MicroExport",
    "export_micro",
    "load_micro_export",
    "find_micro_dir",
    "parse_c_array_rows",
]
