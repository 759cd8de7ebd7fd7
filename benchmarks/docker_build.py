"""The cross-build image: its size, how long it takes to build, and a firmware built and run in it
against the same firmware built and run natively (issue 19).

Needs podman (or docker), TFLM_DIR (or ../shared/tflm), the arm-none-eabi toolchain and qemu-system-arm.

    nice .venv/bin/python benchmarks/docker_build.py --run-dir runs/<id> [--libraries "qemu-mps2-an386:cmsis_nn"]

Steps, each timed by the wall clock: scripts/docker-build.sh (whatever of the base image and the
layers is not cached yet is built: the JSON says which by the script's output); then, for a copy
of the run folder (without firmware/) each, `firmware build` + `firmware run` natively and in the container
(podman run, the folder mounted). The outputs, instructions per invoke and arena used must be
equal, else the script exits 1. Writes benchmarks/results/docker_build.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "docker_build.json"
PODMAN_RUN = ["podman", "run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1000:1000", "--ulimit", "nproc=1000:1000"]


def timed(command: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)
    seconds = time.monotonic() - start
    if completed.returncode != 0:
        sys.exit(f"Error: {' '.join(command[:6])} ... failed (exit {completed.returncode}): {completed.stderr.strip()[-800:]}")
    return completed, seconds


def build_image(tag: str, libraries: str, reuse_libraries: bool) -> dict:
    command = ["bash", str(REPO / "scripts" / "docker-build.sh"), "--tag", tag, "--libraries", libraries]
    completed, seconds = timed(command + (["--reuse-libraries"] if reuse_libraries else []))
    size = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True, text=True, check=True
    )
    cached_steps = completed.stderr.count("Using cache")
    return {
        "tag": tag,
        "libraries": libraries,
        "build_seconds": round(seconds, 1),
        "size_bytes": int(size.stdout.strip()),
        "steps_from_cache": cached_steps,
        "made_base_image": "making the base image" in completed.stderr,
        "reused_host_libraries": completed.stderr.count("reusing the compiled library"),
    }


def firmware(where: str, folder: Path, board: str, kernels: str, tag: str) -> dict:
    """`firmware build` then `firmware run --no-build`, natively or in the container; the run's JSON and both times."""
    args = ["--board", board, "--kernels", kernels]
    if where == "native":
        prefix = [str(REPO / ".venv" / "bin" / "edgedistill")]
        target = str(folder)
    else:
        prefix = [*PODMAN_RUN, "-v", f"{folder}:/data/run", tag]
        target = "/data/run"
    _, build_seconds = timed([*prefix, "firmware", "build", target, *args])
    completed, run_seconds = timed([*prefix, "firmware", "run", target, *args, "--no-build", "--json"])
    run = json.loads(completed.stdout[completed.stdout.index("{") :])
    return {
        "build_seconds": round(build_seconds, 2),
        "run_seconds": round(run_seconds, 2),
        "status": run["status"],
        "instructions_per_invoke": run["instructions_per_invoke"],
        "arena_used_bytes": run["arena_used_bytes"],
        "kTensorArenaSize": run["arena"]["kTensorArenaSize"],
        "sizes": run.get("sizes"),
        # Each sample's output equals the host TFLM output when match is true and max_abs_diff 0.
        "samples": [[sample["match"], sample["max_abs_diff"], sample["argmax"]] for sample in run["samples"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run folder with micro/ (edgedistill run)")
    parser.add_argument("--libraries", default="qemu-mps2-an386:cmsis_nn", help="board:kernels pairs prebuilt in the image")
    parser.add_argument("--tag", default="localhost/edgedistill:bench")
    parser.add_argument("--board", default="qemu-mps2-an386")
    parser.add_argument("--kernels", default="cmsis_nn")
    parser.add_argument("--reuse-libraries", action="store_true", help="copy the host's compiled TFLM libraries into the image")
    options = parser.parse_args()
    if not (options.run_dir / "micro" / "micro_export.json").is_file():
        sys.exit(
            f"Error: {options.run_dir} has no micro/micro_export.json: pass --run-dir a folder written by `edgedistill run`."
        )
    image = build_image(options.tag, options.libraries, options.reuse_libraries)
    results = {}
    with tempfile.TemporaryDirectory(prefix="docker_build_") as scratch:
        for where in ("native", "container"):
            folder = Path(scratch) / where
            shutil.copytree(options.run_dir, folder, ignore=shutil.ignore_patterns("firmware"))
            results[where] = firmware(where, folder, options.board, options.kernels, options.tag)
    same = {
        key: results["native"][key] == results["container"][key]
        for key in ("samples", "instructions_per_invoke", "arena_used_bytes", "kTensorArenaSize", "sizes")
    }
    record = {
        "command": " ".join(sys.argv),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "load_average": os.getloadavg(),
        "nproc": os.cpu_count(),
        "board": options.board,
        "kernels": options.kernels,
        "run_dir": str(options.run_dir),
        "image": image,
        "native": results["native"],
        "container": results["container"],
        "equal": same,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"image {image['tag']}: {image['size_bytes'] / 1e6:.0f} MB, built in {image['build_seconds']:.0f} s "
        f"({image['steps_from_cache']} steps from cache)"
    )
    print("| where | firmware build s | firmware run s | instructions/invoke | arena used B |\n|---|---:|---:|---:|---:|")
    for where in ("native", "container"):
        row = results[where]
        print(
            f"| {where} | {row['build_seconds']:.1f} | {row['run_seconds']:.1f} | {row['instructions_per_invoke']:,} "
            f"| {row['arena_used_bytes']:,} |"
        )
    print(f"equal: {same}  ->  {RESULTS}")
    # Flash/RAM sizes are reported, not required equal: TFLM's assert strings carry the checkout's path.
    if not all(same[key] for key in ("samples", "instructions_per_invoke", "arena_used_bytes", "kTensorArenaSize")):
        sys.exit("Error: the container's firmware differs from the native one (see the JSON).")


if __name__ == "__main__":
    main()
