"""What distillation costs per epoch: plain training vs cached-teacher distillation vs a
distiller that runs the teacher on every batch (as in the keras.io example), in one run.

Target (issue 2): cached distillation <= 1.2x the plain epoch.

    .venv/bin/python benchmarks/pipeline_cost.py [--data fashion_mnist] [--epochs 4] [--train-samples 20000]

Prints a table and writes benchmarks/results/pipeline_cost.json. The first epoch of each
mode (tracing) is excluded; the three modes are interleaved round by round so that load
changes on the machine hit all of them alike, and medians are compared. Both wall time and
the process's CPU time (user + system, all threads) are recorded: on a shared machine other
processes stretch wall time by 2x from one epoch to the next, CPU time much less, so the
ratios are taken from CPU time.

The data keep their raw values (Fashion-MNIST: uint8 pixels) and every model carries its
preprocessing (``x / 255`` as its first layer), as in ``edgedistill run``: the teacher comes from
the teacher stage (:func:`edgedistill.stages.prepare_teacher`, one epoch: its weights only matter
for realism) and the students from the student stage (:func:`edgedistill.stages.build_student`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--train-samples", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=8, help="timed epochs per mode (after one warm-up epoch)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="TensorFlow intra/inter-op threads (1: CPU time is not inflated by spinning pool threads)",
    )
    parser.add_argument("--output", default=str(RESULTS / "pipeline_cost.json"))
    return parser.parse_args()


def build_modes(args: argparse.Namespace, data, keras) -> tuple[dict[str, tuple], object, float]:
    """The three ways of training the same student: ``{mode: (model, targets)}``, the teacher, its cache time."""
    from edgedistill.config import StudentConfig, TeacherConfig, TrainingConfig
    from edgedistill.distill import Distiller, LogitsDistillation, teacher_targets
    from edgedistill.stages import build_student, prepare_teacher
    from edgedistill.training import compile_classifier

    training = TrainingConfig(batch_size=args.batch_size, learning_rate=1e-3, patience=0, verbose=0)
    # One epoch: the teacher's weights only matter for realism (no chance gate: a smoke run on little data).
    teacher = prepare_teacher(
        TeacherConfig(teacher_preset="cnn", teacher_width=1.0, teacher_epochs=1), training, data, chance_gate=False
    )[0].model

    def student():
        return build_student(StudentConfig(student_preset="dscnn", student_width=1.0), data)[0]

    plain = compile_classifier(student(), 1e-3)
    cached = Distiller(teacher, student(), LogitsDistillation(4.0), student_loss_weight=0.5)
    per_batch = Distiller(teacher, student(), LogitsDistillation(4.0), student_loss_weight=0.5)
    for distiller in (cached, per_batch):
        distiller.compile(
            optimizer=keras.optimizers.Adam(1e-3), metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        )
    start = time.perf_counter()
    cached_targets = teacher_targets(teacher, data.x_train, data.y_train)
    cache_seconds = time.perf_counter() - start
    modes = {
        "plain": (plain, data.y_train),
        "distill_cached": (cached, cached_targets),
        "distill_teacher_per_batch": (per_batch, data.y_train),
    }
    return modes, teacher, cache_seconds


def time_rounds(modes: dict[str, tuple], data, *, rounds: int, batch_size: int) -> tuple[dict, dict]:
    """Wall and CPU seconds of one epoch per mode, the modes interleaved round by round (round 0 dropped)."""
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in modes}
    for round_index in range(rounds + 1):
        for name, (model, targets) in modes.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            model.fit(data.x_train, targets, epochs=1, batch_size=batch_size, verbose=0, shuffle=True)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            if round_index > 0:  # round 0 traces the graphs
                seconds[name].append(elapsed)
                cpu_seconds[name].append(cpu)
    return seconds, cpu_seconds


def print_table(args: argparse.Namespace, data, result: dict) -> None:
    medians, wall_medians = result["median_epoch_cpu_seconds"], result["median_epoch_wall_seconds"]
    print(
        f"{args.data} ({data.values['description']}): {len(data.x_train)} training samples, batch {args.batch_size}, teacher "
        f"{result['teacher_parameters']} / student {result['student_parameters']} parameters"
    )
    print(f"{'mode':<28}{'median CPU s/epoch':>19}{'x plain':>9}{'median wall s':>15}{'x plain':>9}   CPU s per epoch")
    for name in medians:
        values = ", ".join(f"{v:.1f}" for v in result["epoch_cpu_seconds"][name])
        print(
            f"{name:<28}{medians[name]:>19.2f}{result['ratio_to_plain'][name]:>9.2f}"
            f"{wall_medians[name]:>15.2f}{result['wall_ratio_to_plain'][name]:>9.2f}   {values}"
        )
    print(
        f"teacher outputs cached once in {result['teacher_cache_seconds']:.2f} s; target {result['target']}: "
        f"{'met' if result['target_met'] else 'NOT met'}"
    )
    print(f"-> {args.output}")


def main() -> None:
    args = parse_arguments()
    from edgedistill._keras import keras, tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from edgedistill.config import DataConfig
    from edgedistill.fileio import write_json_atomic
    from edgedistill.stages import load_data
    from edgedistill.tflite_model import runtime_versions

    data, _ = load_data(DataConfig(data=args.data, max_train_samples=args.train_samples))
    modes, teacher, cache_seconds = build_modes(args, data, keras)
    seconds, cpu_seconds = time_rounds(modes, data, rounds=args.rounds, batch_size=args.batch_size)
    medians = {name: statistics.median(values) for name, values in cpu_seconds.items()}
    wall_medians = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "data": data.summary(),
        "preprocessing": "raw values in the data, x / 255 (or the data's range) as each model's first layer",
        "batch_size": args.batch_size,
        "teacher_parameters": teacher.count_params(),
        "student_parameters": modes["plain"][0].count_params(),
        "epoch_wall_seconds": seconds,
        "epoch_cpu_seconds": cpu_seconds,
        "median_epoch_cpu_seconds": medians,
        "median_epoch_wall_seconds": wall_medians,
        "ratio_to_plain": {name: medians[name] / medians["plain"] for name in medians},
        "wall_ratio_to_plain": {name: wall_medians[name] / wall_medians["plain"] for name in wall_medians},
        "teacher_cache_seconds": cache_seconds,
        "target": "distill_cached <= 1.2x plain",
        "target_met": medians["distill_cached"] / medians["plain"] <= 1.2,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "versions": runtime_versions(),
        "tf_threads": {
            "intra": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    }
    write_json_atomic(args.output, result)
    print_table(args, data, result)


if __name__ == "__main__":
    main()
