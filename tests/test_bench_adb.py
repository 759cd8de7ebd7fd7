"""The adb target: the REAL adb client and server talking to a device STAND-IN (tests/adb_standin.py),
plus the benchmark_model parser on REAL output of the real tool.

No Android device or emulator is available here; what runs on the "device" is the host, and the
benchmark_model it runs is a stand-in (tests/benchmark_model_standin.py) that prints the tool's format.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from adb_standin import AdbDeviceStandin
from bench_helpers import free_port, make_models
from edgedistill.bench import run_benchmark, run_grid
from edgedistill.cli import cli
from edgedistill.errors import InputError
from edgedistill.targets import TargetOptions, make_target
from edgedistill.targets.adb import parse_devices
from edgedistill.targets.base import BenchConfig
from edgedistill.targets.benchmark_model import benchmark_model_arguments, parse_benchmark_model_output

ADB = shutil.which("adb")

# --- the parser, on real benchmark_model output ----------------------------------------------------------

# Real output of TFLite's benchmark_model on a Xiaomi Mi11 through `adb shell`, quoted from
# github.com/lp6m/yolov5s_android, benchmark/benchmark.md (commit 827d8874), "FP32 model / None(CPU)".
REAL_ANDROID_OUTPUT = """\
count=50 first=207897 curr=225553 min=206675 max=231957 avg=220000 std=6795
Inference timings in us: Init: 1430, First inference: 247583, Warmup (avg): 222136, Inference (avg): 220000
Memory footprint delta from the start of the tool (MB): init=5.66016 overall=140.508
"""

# Same source, "int8 model / NNAPI qti-default (Not working)": the tool's output when it fails.
REAL_FAILED_OUTPUT = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [/data/local/tmp/yolov5s_tflite_int8.tflite]
#threads used for CPU inference: [4]
Use NNAPI: [1]
NNAPI execution preference: [sustained_speed]
NNAPI accelerator name: [qti-dsp]
NNAPI accelerators available: [qti-default,qti-dsp,qti-gpu,nnapi-reference]
Loaded model /data/local/tmp/yolov5s_tflite_int8.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite delegate for NNAPI.
NNAPI delegate created.
ERROR: NN API returned error ANEURALNETWORKS_BAD_DATA at line 1068 while adding operation.

ERROR: Restored original execution plan after delegate application failure.
Failed to apply NNAPI delegate.
Benchmarking failed.
"""

# Real output of a newer benchmark_model build (INFO: prefixes, p5/median/p95) on a TI AM62x board, quoted
# from the TI Processor SDK Linux documentation's TensorFlow Lite page ("How to run benchmark using CPU"),
# found through code search of public repositories (the hosting repository was not recorded).
REAL_NEWER_OUTPUT = """\
   INFO: STARTING!
   INFO: Log parameter values verbosely: [0]
   INFO: Graph: [/usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite]
   INFO: Signature to run: []
   INFO: Use xnnpack: [0]
   INFO: Loaded model /usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite
   INFO: The input model file size (MB): 67.3128
   INFO: Initialized session in 5.579ms.
   INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
   INFO: count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602

   INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
   INFO: count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 p5=1238753 median=1239807 p95=1247415

   INFO: Inference timings in us: Init: 5579, First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): 1.24027e+06
   INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
   INFO: Memory footprint delta from the start of the tool (MB): init=6.36328 overall=109.832
"""


def test_parser_on_real_android_output():
    parsed = parse_benchmark_model_output(REAL_ANDROID_OUTPUT)
    assert parsed["init_ms"] == pytest.approx(1.430)
    assert parsed["first_inference_ms"] == pytest.approx(247.583)
    assert parsed["warmup_avg_ms"] == pytest.approx(222.136)
    assert parsed["inference_avg_ms"] == pytest.approx(220.0)
    latency = parsed["latency_ms"]
    assert latency["mean"] == pytest.approx(220.0) and latency["std"] == pytest.approx(6.795)
    assert latency["min"] == pytest.approx(206.675) and latency["max"] == pytest.approx(231.957)
    assert latency["p50"] is None and latency["p99"] is None  # this build prints no percentiles
    assert parsed["num_runs_done"] == 50
    assert parsed["memory_init_delta_bytes"] == int(5.66016 * 2**20)
    assert parsed["memory_overall_delta_bytes"] == int(140.508 * 2**20)
    assert parsed["errors"] == []


def test_parser_on_real_newer_output_with_percentiles():
    parsed = parse_benchmark_model_output(REAL_NEWER_OUTPUT)
    assert parsed["inference_avg_ms"] == pytest.approx(1240.27)  # 1.24027e+06 us
    assert parsed["warmup_avg_ms"] == pytest.approx(1357.6)
    latency = parsed["latency_ms"]
    assert latency["p50"] == pytest.approx(1239.807) and latency["mean"] == pytest.approx(1240.27)
    assert parsed["p5_ms"] == pytest.approx(1238.753) and parsed["p95_ms"] == pytest.approx(1247.415)
    assert parsed["num_runs_done"] == 50 and parsed["num_warmup_runs_done"] == 1
    assert parsed["initialized_session_ms"] == pytest.approx(5.579)
    assert parsed["model_size_mb"] == pytest.approx(67.3128)


def test_parser_on_real_failure():
    with pytest.raises(ValueError, match="ANEURALNETWORKS_BAD_DATA"):
        parse_benchmark_model_output(REAL_FAILED_OUTPUT)


def test_benchmark_model_flag_names():
    args = benchmark_model_arguments(
        "/data/local/tmp/x/m.tflite", BenchConfig(num_runs=7, warmup_runs=2, num_threads=4, use_xnnpack=False)
    )
    assert args == [
        "--graph=/data/local/tmp/x/m.tflite",
        "--num_runs=7",
        "--warmup_runs=2",
        "--num_threads=4",
        "--use_xnnpack=false",
        "--report_peak_memory_footprint=true",
    ]


def test_parse_devices():
    text = (
        "List of devices attached\n"
        "R58M123          device usb:1-1 product:a52q model:SM_A525F device:a52q transport_id:3\n"
        "emulator-5554    offline transport_id:4\n"
    )
    rows = parse_devices(text)
    assert rows[0] == {
        "serial": "R58M123",
        "state": "device",
        "usb": "1-1",
        "product": "a52q",
        "model": "SM_A525F",
        "device": "a52q",
        "transport_id": "3",
    }
    assert rows[1]["state"] == "offline"


# --- the target, through the real adb client ------------------------------------------------------------

pytestmark_adb = pytest.mark.skipif(ADB is None, reason="needs the adb client (apt-get install adb)")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("adb_models"))


@pytest.fixture(scope="module")
def adb_server():
    """A private adb server on its own port, so no user's adb server is touched; killed at the end."""
    if ADB is None:
        pytest.skip("needs the adb client (apt-get install adb)")
    port = str(free_port())
    previous = os.environ.get("ANDROID_ADB_SERVER_PORT")
    os.environ["ANDROID_ADB_SERVER_PORT"] = port
    subprocess.run([ADB, "start-server"], capture_output=True, timeout=30, check=True)
    yield port
    subprocess.run([ADB, "kill-server"], capture_output=True, timeout=30)
    if previous is None:
        os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
    else:
        os.environ["ANDROID_ADB_SERVER_PORT"] = previous


@pytest.fixture
def device(adb_server, tmp_path):
    standin = AdbDeviceStandin(tmp_path / "device_tmp")
    subprocess.run([ADB, "connect", standin.serial], capture_output=True, timeout=30, check=True)
    yield standin
    subprocess.run([ADB, "disconnect", standin.serial], capture_output=True, timeout=30)
    standin.stop()


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    path = tmp_path_factory.mktemp("bin") / "benchmark_model"
    source = (Path(__file__).parent / "benchmark_model_standin.py").read_text()
    path.write_text(f"#!{sys.executable}\n" + source)
    path.chmod(0o755)
    return path


def test_adb_measures_and_cleans_up(device, binary, models, tmp_path):
    folder = tmp_path / "my models"
    folder.mkdir()
    model = folder / "a b;$(touch pwned) 'q'.tflite"  # pushed and run with quoted remote commands
    shutil.copy(models["conv_int8"], model)
    target = make_target(f"adb:{device.serial}", TargetOptions(benchmark_binary=str(binary), taskset="1"))
    results = tmp_path / "bench.jsonl"
    m = run_benchmark(model, target=target, num_runs=20, warmup_runs=3, num_threads=1, results_path=results)
    assert m.ok and m.kind == "measured" and m.runtime == "benchmark_model"
    assert m.latency_ms["mean"] > 0 and m.latency_ms["p50"] > 0 and m.init_ms > 0 and m.first_inference_ms > 0
    assert m.extra["num_runs_done"] >= 20 and m.peak_rss_bytes > 0
    assert m.samples_ms == []  # benchmark_model prints no per-run samples
    facts = m.target["device"]
    assert facts["model"] == "Standin_Phone" and facts["android_version"] == "14" and facts["soc"] == "standin-soc"
    command = next(c for c in device.shell_commands if "benchmark_model --graph" in c or "benchmark_model '--graph" in c)
    assert command.startswith("taskset 1 ") and "--num_threads=1" in command and "--warmup_runs=3" in command
    assert not list(device.root.iterdir())  # the private folder on the device was removed
    assert not (device.root / "pwned").exists()
    assert json.loads(results.read_text())["target"]["device"]["model"] == "Standin_Phone"


def test_no_device(adb_server, binary, models):
    with pytest.raises(InputError, match="No adb device is attached"):
        run_benchmark(models["tiny_int8"], target=make_target("adb", TargetOptions(benchmark_binary=str(binary))))


def test_several_devices_need_serial(adb_server, binary, models, tmp_path):
    first, second = AdbDeviceStandin(tmp_path / "one"), AdbDeviceStandin(tmp_path / "two")
    try:
        for standin in (first, second):
            subprocess.run([ADB, "connect", standin.serial], capture_output=True, timeout=30, check=True)
        with pytest.raises(InputError, match="Several adb devices.*--serial"):
            run_benchmark(models["tiny_int8"], target=make_target("adb", TargetOptions(benchmark_binary=str(binary))))
        chosen = make_target("adb", TargetOptions(benchmark_binary=str(binary), serial=second.serial))
        assert run_benchmark(models["tiny_int8"], target=chosen, num_runs=3).target["serial"] == second.serial
        with pytest.raises(InputError, match="No adb device with serial 'nope'"):
            run_benchmark(models["tiny_int8"], target=make_target("adb:nope", TargetOptions(benchmark_binary=str(binary))))
    finally:
        for standin in (first, second):
            subprocess.run([ADB, "disconnect", standin.serial], capture_output=True, timeout=30)
            standin.stop()


def test_missing_benchmark_binary(adb_server, models, monkeypatch):
    monkeypatch.delenv("EDGEDISTILL_BENCHMARK_MODEL", raising=False)
    with pytest.raises(InputError, match="--benchmark-binary PATH \\(or set EDGEDISTILL_BENCHMARK_MODEL\\)"):
        run_benchmark(models["tiny_int8"], target=make_target("adb", TargetOptions()))


def test_device_disappears_mid_run_grid_goes_on(device, binary, models, tmp_path):
    results = tmp_path / "bench.jsonl"

    def unplug():
        time.sleep(3.0)
        device.disappear()

    thread = threading.Thread(target=unplug)
    thread.start()
    measured = run_grid(
        [models["conv_int8"]],
        [f"adb:{device.serial}", "local"],
        BenchConfig(num_runs=5, min_secs=8, timeout_s=60),
        results_path=results,
        jobs=2,
        target_options=TargetOptions(benchmark_binary=str(binary)),
    )
    thread.join()
    by_target = {m.target["name"]: m for m in measured}
    assert by_target["adb"].status == "failed" and device.serial in by_target["adb"].error
    assert by_target["local"].ok  # the grid went on
    assert len(results.read_text().splitlines()) == 2


def test_cli_adb(device, binary, models, tmp_path):
    results = tmp_path / "bench.jsonl"
    outcome = CliRunner().invoke(
        cli,
        [
            "bench",
            str(models["tiny_int8"]),
            "--target",
            "adb",
            "--serial",
            device.serial,
            "--benchmark-binary",
            str(binary),
            "--num-runs",
            "5",
            "--results",
            str(results),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert "adb" in outcome.output and json.loads(results.read_text())["status"] == "ok"


def test_cli_adb_no_device_exit_code(adb_server, binary, models, tmp_path):
    outcome = CliRunner().invoke(
        cli,
        [
            "bench",
            str(models["tiny_int8"]),
            "--target",
            "adb",
            "--benchmark-binary",
            str(binary),
            "--results",
            str(tmp_path / "r.jsonl"),
        ],
    )
    assert outcome.exit_code == 2 and "Error: No adb device is attached" in outcome.output
    assert "Traceback" not in outcome.output
