"""The one TFLM runner (edgedistill/tflm.py): worker subprocess, arena bisection, outputs, allocation report, bench runner."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from bench_helpers import make_models
from edgedistill.errors import InputError, StageError
from edgedistill.tflite_model import LiteRTModel, quantize_input
from edgedistill.tflm import (
    ARENA_ALIGNMENT,
    SCRIPT_PATH,
    TFLMModel,
    TFLMWorker,
    allocation_breakdown,
    smallest_arena,
    tflm_error_text,
    tflm_outputs,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("tflm_models"))


@pytest.fixture(scope="module")
def tiny(models) -> bytes:
    return models["tiny_int8"].read_bytes()


@pytest.fixture(scope="module")
def tiny_arena(tiny) -> int:
    return smallest_arena(tiny).arena_bytes


def test_smallest_arena_is_the_smallest_multiple_of_16(tiny, tiny_arena):
    assert tiny_arena % ARENA_ALIGNMENT == 0
    with TFLMWorker(tiny) as worker:
        assert worker.request(tiny_arena)["status"] == "ok"
        assert worker.request(tiny_arena - ARENA_ALIGNMENT)["status"] in ("failed", "crashed")


def test_bisection_logs_a_progress_line_and_its_result(tiny, caplog):
    caplog.set_level(logging.INFO, logger="edgedistill.tflm")
    result = smallest_arena(tiny, source="tiny_int8.tflite")
    messages = [record.getMessage() for record in caplog.records if record.name == "edgedistill.tflm"]
    assert len(messages) == 2
    assert messages[0].startswith("measuring the TFLM arena of tiny_int8.tflite")
    assert f"{result.arena_bytes} bytes ({result.num_probes} probes" in messages[1]


def test_outputs_equal_litert_builtin_within_one_step(models):
    """TFLM's reference kernels and LiteRT's own kernels (no XNNPACK delegate) round alike to 1 step."""
    data = models["conv_int8"].read_bytes()
    x = np.random.default_rng(0).random((16, 32, 32, 3), dtype=np.float32)
    litert = LiteRTModel(data, kernels="builtin")
    expected = litert.raw_outputs(x).astype(np.int32)
    arena = smallest_arena(data).arena_bytes
    outputs = tflm_outputs(data, quantize_input(x, litert.input), arena_bytes=arena)
    assert outputs.dtype == np.int8 and outputs.shape == expected.shape
    assert np.max(np.abs(outputs.astype(np.int32) - expected)) <= 1
    # The same runner in this process (a known-good arena) gives the same outputs.
    np.testing.assert_array_equal(TFLMModel(data, arena_size=arena).raw_outputs(x), outputs)


def test_too_small_arena_fails_cleanly(tiny, tiny_arena):
    """Too small arenas fail or crash the worker, never this process; the next request still works."""
    with TFLMWorker(tiny) as worker:
        for size in (16, 512, tiny_arena // 2, tiny_arena - ARENA_ALIGNMENT):
            answer = worker.request(size)
            assert answer["status"] in ("failed", "crashed") and answer["error"], answer
        assert worker.request(tiny_arena)["status"] == "ok"
        assert worker.num_requests == 5
    with pytest.raises(StageError, match="with a 512-byte arena") as error:
        tflm_outputs(tiny, np.zeros((1, 8, 8, 1), np.int8), arena_bytes=512)
    assert "\n" not in str(error.value)


def test_tflms_own_error_text_is_passed_through():
    messages = (
        "[RecordingMicroAllocator] Arena allocation total 2240 bytes\n"
        "Hybrid models are not supported on TFLite Micro.\nNode CONV_2D (number 0) failed to prepare with status 1\n"
    )
    assert tflm_error_text(messages, RuntimeError("TFLM failed to allocate tensors")) == (
        "Hybrid models are not supported on TFLite Micro; Node CONV_2D (number 0) failed to prepare with status 1"
    )
    assert tflm_error_text("", RuntimeError("TFLM failed to allocate tensors")) == "TFLM failed to allocate tensors"


@pytest.mark.parametrize("kind", ["not a flatbuffer", "truncated"])
def test_corrupt_model_is_one_clear_error(tiny, kind):
    data = b"definitely not a model" if kind == "not a flatbuffer" else tiny[: len(tiny) // 3]
    calls = [
        lambda: smallest_arena(data),
        lambda: tflm_outputs(data, np.zeros((1, 8, 8, 1), np.int8), arena_bytes=65536),
        lambda: TFLMModel(data, arena_size=65536),
    ]
    for call in calls:
        with pytest.raises(InputError) as error:
            call()
        text = str(error.value)
        assert "\n" not in text and ("not a TFLite flatbuffer" in text or "corrupt" in text), text


def test_allocation_breakdown_adds_up(tiny, tiny_arena):
    breakdown = allocation_breakdown(tiny, arena_bytes=tiny_arena * 2)
    assert breakdown.head_bytes + breakdown.tail_bytes == breakdown.total_bytes <= tiny_arena
    assert "TfLiteEvalTensor data" in breakdown.categories


def _bench(model, *arguments: str) -> tuple[int, list[dict]]:
    """The runner as `bench --target tflm` starts it: by path, JSON lines on stdout."""
    command = [sys.executable, str(SCRIPT_PATH), "bench", "--model", str(model), "--num-runs", "5", *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return completed.returncode, [json.loads(line) for line in completed.stdout.splitlines()]


def test_bench_runner_speaks_the_json_lines_protocol(models):
    code, events = _bench(models["tiny_int8"], "--warmup-runs", "2")
    assert code == 0
    assert [event["event"] for event in events] == ["device", "init", "samples", "result"]
    init, samples, result = events[1], events[2], events[3]
    assert init["runtime"] == "tflite_micro" and init["arena_size_bytes"] > 0
    assert len(samples["samples_ms"]) == 5 and len(result["warmup_ms"]) == 2
    assert result["arena_head_bytes"] + result["arena_tail_bytes"] == result["arena_total_bytes"] <= init["arena_size_bytes"]


def test_bench_runner_reports_a_too_small_arena_as_an_error_event(models):
    code, events = _bench(models["tiny_int8"], "--arena-bytes", "512")
    assert code == 4 and events[-1]["event"] == "error" and events[-1]["code"] == "arena_too_small"
    assert "512-byte arena" in events[-1]["message"] and "--arena-bytes" in events[-1]["message"]
