"""The emulated Raspberry Pi (issue 18): image build time, boot time, and per model p50 latency and peak RSS
in the VM (Debian 12 arm64, qemu-system-aarch64 -M virt -cpu cortex-a72, TCG) vs on the host, in one run.

Models: the default student (dscnn width 0.5 on digits' 8x8x1, 10 classes) and MLPerf-Tiny-sized presets
(resnet8 32x32x3/10, dscnn_kws 49x10x1/12, mobilenet_v1 width 0.25 96x96x3/2), untrained, full-integer
int8 (random calibration: enough for latency). Per model: the VM through the ssh target
(`edgedistill bench --target ssh://pi@127.0.0.1:PORT --ssh-config DIR/image/ssh_config`), a bare LiteRT
loop in the VM (same model, threads and runs, no harness: the harness overhead is runner p50 / bare p50 - 1,
target < 5 %), and the host's local target. Whether the VM's int8 outputs equal the host's is recorded.
Then a per-op profile of each model in the VM and on the host (`bench --profile`, its own run: the profile's
one-operator interpreters would raise the measuring process's peak RSS), with the rows' sum over the whole
model's p50 measured in the same interleaved rounds (share_ratio, the check: 1 +- 0.02), over the timing
loop's p50 of that run, and the operators alone (without the invoke call's row).

    nice python benchmarks/emulated_pi.py       # tables on stdout, benchmarks/results/emulated_pi.json
    nice python benchmarks/emulated_pi.py --clock icount   # the VM's clock counts instructions: emulated_pi_icount.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgedistill._version import __version__
from edgedistill.bench import run_benchmark
from edgedistill.devices.pi import pi_layout, pi_status, prepare_pi, start_pi, stop_pi
from edgedistill.fileio import write_json_atomic
from edgedistill.targets import TargetOptions, make_target

MAKE_MODELS = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, tensorflow as tf, tf_keras as keras
from edgedistill.models import build_model
keras.utils.set_random_seed(0)
specs = {"default_student": ("dscnn", (8, 8, 1), 10, 0.5), "resnet8": ("resnet8", (32, 32, 3), 10, 1.0),
         "dscnn_kws": ("dscnn_kws", (49, 10, 1), 12, 1.0), "mobilenet_v1_0.25": ("mobilenet_v1", (96, 96, 3), 2, 0.25)}
for name, (preset, shape, classes, width) in specs.items():
    model = build_model(preset, shape, classes, width=width)
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = lambda: ([np.random.rand(1, *shape).astype("float32")] for _ in range(16))
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = tf.int8; c.inference_output_type = tf.int8
    open(os.path.join(sys.argv[1], name + ".tflite"), "wb").write(c.convert())
"""

# Runs in the VM: the bare loop the harness is compared with (same protocol: inputs set once).
BARE_LOOP = """
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
model, runs, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
interpreter = Interpreter(model_path=model, num_threads=1)
interpreter.allocate_tensors()
rng = np.random.default_rng(0)
for d in interpreter.get_input_details():
    info = np.iinfo(d["dtype"])
    interpreter.set_tensor(d["index"], rng.integers(info.min, int(info.max) + 1, size=d["shape"], dtype=d["dtype"]))
for _ in range(warmup):
    interpreter.invoke()
samples = []
for _ in range(runs):
    start = time.perf_counter_ns(); interpreter.invoke(); samples.append((time.perf_counter_ns() - start) / 1e6)
print(json.dumps(samples))
"""


def bare_loop_in_vm(target, model: Path, num_runs: int, warmup_runs: int, script: Path) -> list[float]:
    # run_benchmark closes its session folder when it is done: the bare loop opens one of its own.
    target.open()
    try:
        remote_script = target._deploy(script, "bare_loop.py")
        remote_model = target._deploy(model, model.name)
        result = target.run(["python3", remote_script, remote_model, str(num_runs), str(warmup_runs)], timeout_s=3600)
    finally:
        target.close()
    if result.returncode != 0:
        raise RuntimeError(f"bare loop failed in the VM: {result.stderr.strip()[-400:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_model(model: Path, state: dict, args: argparse.Namespace, script: Path) -> dict:
    options = TargetOptions(ssh_config=state["ssh_config"], connect_timeout_s=60)  # a loaded host's guest answers slowly
    common = dict(num_runs=args.num_runs, warmup_runs=args.warmup_runs, timeout_s=3600)
    target = make_target(state["target"], options)
    with target:
        vm = run_benchmark(model, target=target, **common)
        bare = bare_loop_in_vm(target, model, args.num_runs, args.warmup_runs, script)
        vm_profile = run_benchmark(model, target=target, profile=True, **common)
    host = run_benchmark(model, target="local", **common)
    host_profile = run_benchmark(model, target="local", profile=True, **common)
    vm_p50, host_p50, bare_p50 = vm.latency_ms["p50"], host.latency_ms["p50"], statistics.median(bare)
    return {
        "model": model.name,
        "model_bytes": model.stat().st_size,
        "vm": {
            "kind": vm.kind,
            "device": vm.target.get("emulated_device"),
            "p50_ms": vm_p50,
            "p90_ms": vm.latency_ms["p90"],
            "peak_rss_bytes": vm.peak_rss_bytes,
            "samples_ms": vm.samples_ms,
            "outputs_match_host": vm.extra.get("outputs_match_host"),
            "outputs_max_abs_diff": vm.extra.get("outputs_max_abs_diff"),
            "runtime": f"{vm.runtime} {vm.runtime_version}",
        },
        "vm_bare_loop": {"p50_ms": bare_p50, "samples_ms": bare},
        "host": {
            "kind": host.kind,
            "p50_ms": host_p50,
            "p90_ms": host.latency_ms["p90"],
            "peak_rss_bytes": host.peak_rss_bytes,
            "samples_ms": host.samples_ms,
            "runtime": f"{host.runtime} {host.runtime_version}",
        },
        "vm_over_host_p50": vm_p50 / host_p50,
        "harness_overhead_in_vm": vm_p50 / bare_p50 - 1.0,
        "profile": {"vm": profile_figures(vm_profile), "host": profile_figures(host_profile)},
    }


def profile_figures(measurement) -> dict:
    """What the issue asks of a per-op profile: its rows' sum over the measured invoke p50, and the top ops."""
    from edgedistill.profiles import SHARE_TOLERANCE, Profile

    profile = Profile.from_dict(measurement.extra["profile"])
    details = profile.details
    loop_us, ops_only_us = details.get("invoke_loop_us"), details.get("ops_only_us")
    return {
        "source": profile.source,
        "rounds": details.get("rounds"),
        "num_rows": len(profile.ops),
        "rows_total_us": profile.total,
        "invoke_p50_us": profile.invoke,
        "share_ratio": profile.share_ratio,
        "within_tolerance": profile.shares_add_up,
        "tolerance": SHARE_TOLERANCE,
        "invoke_loop_p50_us": loop_us,
        "share_ratio_vs_loop": profile.total / loop_us if loop_us else None,
        "ops_only_us": ops_only_us,
        "ops_only_ratio": ops_only_us / profile.invoke if ops_only_us else None,
        "invoke_call_us": details.get("fixed_cost_us"),
        "invoke_call_from": details.get("fixed_cost_from"),
        "empty_invoke_us": details.get("empty_invoke_us"),
        "share_ratio_cpu": profile.share_ratio_cpu,
        "share_ratio_if_empty_model_cost": _ratio_with_empty_model_cost(profile),
        "top": [
            {"node_type": op.node_type, "name": op.name, "index": op.index, "avg_us": op.avg, "share_percent": share}
            for op, share in profile.top(5)
        ],
        "ops": [{"index": op.index, "node_type": op.node_type, "avg_us": op.avg} for op in profile.ops],
    }


def _ratio_with_empty_model_cost(profile) -> float | None:
    """The share ratio had the fixed cost been an empty model's invoke (no delegate entry), from the same slices:
    each operator's raw slice median is its row plus the fixed cost (rows clamped at 0 aside)."""
    details, rows = profile.details, [op for op in profile.ops if op.index >= 0]
    fixed, empty = details.get("fixed_cost_us"), details.get("empty_invoke_us")
    if fixed is None or empty is None or not profile.invoke:
        return None
    raw_total = sum(op.avg + fixed for op in rows)
    return (raw_total - (len(rows) - 1) * empty) / profile.invoke


def print_table(document: dict) -> None:
    print(f"prepare (image build): {document['prepare_s']} s ({document['prepare_note']}); boot to ssh: {document['boot_s']} s")
    print(
        "| model | bytes | VM p50 ms | host p50 ms | VM / host | VM peak RSS MiB | host peak RSS MiB "
        "| harness overhead in VM | VM outputs = host |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in document["models"]:
        print(
            f"| {row['model']} | {row['model_bytes']:,} | {row['vm']['p50_ms']:.3f} | {row['host']['p50_ms']:.3f} "
            f"| {row['vm_over_host_p50']:.1f}x | {row['vm']['peak_rss_bytes'] / 2**20:.1f} "
            f"| {row['host']['peak_rss_bytes'] / 2**20:.1f} | {100 * row['harness_overhead_in_vm']:+.2f} % "
            f"| {row['vm']['outputs_match_host']} (max diff {row['vm']['outputs_max_abs_diff']}) |"
        )
    print()
    print(
        "| model | where | rows | invoke p50 us (rounds) | rows' sum us | share_ratio | within +-2 % | vs loop p50 "
        "| ops only | fixed cost us (empty model) | ratio with empty-model cost | top ops (share of rows) |"
    )
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|")
    for row in document["models"]:
        for where in ("vm", "host"):
            figures = row["profile"][where]
            top = ", ".join(f"{op['node_type']} {op['share_percent']:.0f} %" for op in figures["top"][:3])
            print(
                f"| {row['model']} | {where} | {figures['num_rows']} | {figures['invoke_p50_us']:,.2f} "
                f"| {figures['rows_total_us']:,.2f} | {figures['share_ratio']:.3f} | {figures['within_tolerance']} "
                f"| {figures['share_ratio_vs_loop']:.3f} | {figures['ops_only_ratio']:.3f} "
                f"| {figures['invoke_call_us']:.2f} ({figures['empty_invoke_us']:.2f}) "
                f"| {figures['share_ratio_if_empty_model_cost']:.3f} | {top} |"
            )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pi-dir", default=None, help="the Pi folder (default $EDGEDISTILL_PI_DIR or ~/.cache/...)")
    parser.add_argument("--num-runs", type=int, default=100)
    parser.add_argument("--warmup-runs", type=int, default=5)
    parser.add_argument("--boot-timeout", type=float, default=1800.0, help="seconds to wait for the VM's sshd")
    parser.add_argument(
        "--clock",
        choices=["wall", "icount"],
        default="wall",
        help="the VM's clock (`devices start-pi --clock`): icount makes the VM's times instruction counts",
    )
    parser.add_argument("--output", default=None, help="default results/emulated_pi.json (wall), emulated_pi_icount.json")
    args = parser.parse_args()
    if args.output is None:
        name = "emulated_pi.json" if args.clock == "wall" else f"emulated_pi_{args.clock}.json"
        args.output = str(Path(__file__).parent / "results" / name)
    return args


def main() -> None:
    args = parse_arguments()

    layout = pi_layout(args.pi_dir)
    started = time.monotonic()
    manifest = prepare_pi(layout)
    prepare_note = "cached image; build time recorded at prepare" if manifest["cached"] else "built in this run"
    if manifest["cached"] is False:
        manifest["prepare_s"] = round(time.monotonic() - started, 1)
    stop_pi(layout)
    state = start_pi(layout, timeout_s=args.boot_timeout, clock=args.clock)
    work = Path(tempfile.mkdtemp(prefix="emulated-pi-"))
    subprocess.run([sys.executable, "-c", MAKE_MODELS, str(work)], check=True, env={**os.environ})
    script = work / "bare_loop.py"
    script.write_text(BARE_LOOP)
    try:
        rows = [
            measure_model(work / f"{name}.tflite", state, args, script)
            for name in ("default_student", "resnet8", "dscnn_kws", "mobilenet_v1_0.25")
        ]
        status = pi_status(layout)
    finally:
        stop_pi(layout)
    document = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "edgedistill": __version__,
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "vm": {
            "qemu": " ".join(
                ["qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 4 -m 2048 (TCG)"]
                + (["-icount shift=0,sleep=on: VM times are instruction counts (1 ns each)"] if args.clock == "icount" else [])
            ),
            "clock": args.clock,
            "guest_packages": manifest.get("guest_packages"),
            "ssh_ready_at_end": status["ssh_ready"],
        },
        "prepare_s": manifest.get("prepare_s"),
        "prepare_note": prepare_note,
        "boot_s": state["boot_s"],
        "num_runs": args.num_runs,
        "warmup_runs": args.warmup_runs,
        "num_threads": 1,
        "models": rows,
    }
    write_json_atomic(args.output, document)
    print_table(document)


if __name__ == "__main__":
    main()
