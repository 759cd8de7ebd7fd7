"""STAND-IN for TFLite's ``benchmark_model`` binary, run by the adb device stand-in.

It really runs the model (LiteRT, on the host) and prints its figures in the format of the real
tool (newer builds: ``INFO:`` prefixes, ``p5/median/p95``, periodic peak memory), so the adb
target's push / run / parse / clean-up path is exercised end to end. With ``--enable_op_profiling=true`` it
prints the tool's run-order table (layout of TFLite's profile_summary_formatter, newer builds: no [start]
column), its per-op times from one-operator models (edgedistill/_runner.py's slicing), not a real profiler.
The parser itself is tested on real output of the real tool in test_bench_adb.py. The tests install this file with a
``#!`` line naming the test's Python.
"""

import argparse
import statistics
import sys
import time


def stats_line(samples_us, first=True):
    ordered = sorted(samples_us)

    def pct(q):
        return int(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))])

    std = statistics.pstdev(samples_us) if len(samples_us) > 1 else 0.0
    return (
        f"count={len(samples_us)} first={int(samples_us[0])} curr={int(samples_us[-1])} min={int(ordered[0])} "
        f"max={int(ordered[-1])} avg={statistics.fmean(samples_us):g} std={int(std)} p5={pct(5)} "
        f"median={pct(50)} p95={pct(95)}"
    )


def rss_mb(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    parser = argparse.ArgumentParser()
    for flag in (
        "graph",
        "num_runs",
        "warmup_runs",
        "num_threads",
        "use_xnnpack",
        "report_peak_memory_footprint",
        "min_secs",
        "enable_op_profiling",
    ):
        parser.add_argument(f"--{flag}")
    args = parser.parse_args()
    start_rss = rss_mb("VmRSS")
    print("INFO: STARTING!")
    print(f"INFO: Min num runs: [{args.num_runs}]")
    print(f"INFO: Num threads: [{args.num_threads}]")
    print(f"INFO: Min warmup runs: [{args.warmup_runs}]")
    print(f"INFO: Graph: [{args.graph}]")
    try:
        from ai_edge_litert.interpreter import Interpreter

        started = time.perf_counter()
        interpreter = Interpreter(model_path=args.graph, num_threads=int(args.num_threads))
        interpreter.allocate_tensors()
    except Exception as error:
        print(f"ERROR: {error}")
        print("ERROR: Benchmarking failed.")
        sys.exit(1)
    init_us = (time.perf_counter() - started) * 1e6
    init_rss = rss_mb("VmRSS") - start_rss
    print(f"INFO: Loaded model {args.graph}")
    print(f"INFO: Initialized session in {init_us / 1000:.3f}ms.")
    print(
        "INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.",
        flush=True,
    )

    def timed(count, min_secs):
        samples, begin = [], time.monotonic()
        while len(samples) < count or time.monotonic() - begin < min_secs:
            t0 = time.perf_counter()
            interpreter.invoke()
            samples.append((time.perf_counter() - t0) * 1e6)
        return samples

    warmup = timed(max(1, int(args.warmup_runs)), 0)
    print("INFO: " + stats_line(warmup))
    print("")
    print(
        f"INFO: Running benchmark for at least {args.num_runs} iterations and at least 1 seconds but terminate "
        "if exceeding 150 seconds.",
        flush=True,
    )
    runs = timed(int(args.num_runs), float(args.min_secs or 0))
    print("INFO: " + stats_line(runs))
    print("")
    print(
        f"INFO: Inference timings in us: Init: {int(init_us)}, First inference: {int(warmup[0])}, "
        f"Warmup (avg): {statistics.fmean(warmup):g}, Inference (avg): {statistics.fmean(runs):g}"
    )
    print(
        "INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE "
        "to the actual memory footprint of the model at runtime. Take the information at your discretion."
    )
    print(
        f"INFO: Memory footprint delta from the start of the tool (MB): init={init_rss:g} overall={rss_mb('VmHWM') - start_rss:g}"
    )
    print(f"INFO: Overall peak memory footprint (MB) via periodic monitoring: {rss_mb('VmHWM'):g}")
    if args.enable_op_profiling == "true":
        print_op_profile(args.graph, int(args.num_runs))


def print_op_profile(graph, runs):
    from ai_edge_litert.interpreter import Interpreter
    from edgedistill import _runner

    _, slices, _ = _runner.one_op_models(open(graph, "rb").read())
    rows = []
    for index, kind, name, content, _ in slices:
        interpreter = Interpreter(model_content=content, num_threads=1)
        interpreter.allocate_tensors()
        first, samples = _runner.time_calls(interpreter.invoke, runs)
        rows.append((kind, first / 1000, statistics.fmean(samples) / 1000, name, index))
    total = sum(row[2] for row in rows)
    print("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:")
    print("============================== Run Order ==============================")
    print("\t[node type]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t[times called]\t[Name]")
    cdf = 0.0
    for kind, first, avg, name, index in rows:
        share = 100 * avg / total
        cdf += share
        print(
            f"\t{kind:>32}\t{first:>16.3f}\t{avg:>16.3f}\t{share:>14.3f}%\t{cdf:>14.3f}%\t{0:>16.3f}\t{1:>16}\t[{name}]:{index}"
        )
    print("")
    print("============================== Top by Computation Time ==============================")


if __name__ == "__main__":
    main()
