"""Does distillation help, and does int8 keep it? Teacher, student from scratch, distilled student,
and the distilled QAT int8 student on LiteRT and TFLM, over several seeds.

Targets (issue 2), on Fashion-MNIST: a student of at most 1/20 of the teacher's parameters,
distilled, beats the same student trained from scratch by >= 1.0 point (mean over seeds), and
its int8 model is within 0.5 point of its float self. Also reported: the fraction of the
scratch-to-teacher gap that distillation recovers (Hinton et al. 2015: 0.91 on MNIST).

    .venv/bin/python benchmarks/distill_quality.py [--datasets digits fashion_mnist] [--seeds 0 1 2]
        [--epochs 20] [--qat-epochs 3] [--temperature 4] [--student-loss-weight 0.5] [--train-samples N]

Prints a table and writes benchmarks/results/distill_quality.json (every per-seed figure).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"


def one_seed(dataset_name: str, seed: int, args) -> dict:
    from edgedistill.convert import convert_keras_model
    from edgedistill.data import load_dataset
    from edgedistill.distill import LogitsDistillation, TrainingArguments, distill, quantize_distill
    from edgedistill.micro import arena_with_margin, measure_arena
    from edgedistill.models import build_model as build_preset, predict_logits
    from edgedistill.preprocessing import with_preprocessing
    from edgedistill.stages import student_preprocessing_of
    from edgedistill.training import TrainConfig, accuracy, train_classifier
    from edgedistill.verify import verify_models

    data = load_dataset(dataset_name, seed=seed, max_train_samples=args.train_samples)

    def build_model(*arguments, **options):  # the data keeps its raw bytes; the models take them (x / 255 inside)
        return with_preprocessing(build_preset(*arguments, **options), student_preprocessing_of(data))

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.patience,
        seed=seed,
        verbose=0,
    )
    started = time.perf_counter()
    teacher = build_model(args.teacher_preset, data.input_shape, data.num_classes, width=args.teacher_width, name="teacher")
    train_classifier(teacher, data, config=config)
    scratch = build_model(args.student_preset, data.input_shape, data.num_classes, width=args.student_width, name="scratch")
    train_classifier(scratch, data, config=config, stage="scratch")
    outputs = {"train": predict_logits(teacher, data.x_train), "val": predict_logits(teacher, data.x_val)}
    student = build_model(args.student_preset, data.input_shape, data.num_classes, width=args.student_width, name="student")
    loss = LogitsDistillation(args.temperature)
    student, _ = distill(
        teacher,
        student,
        data,
        distillation_losses=[loss],
        student_loss_weight=args.student_loss_weight,
        config=config,
        teacher_outputs=outputs,
    )
    qat_config = TrainConfig(
        epochs=args.qat_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate / 5,
        patience=args.patience,
        seed=seed,
        verbose=0,
    )
    qat = quantize_distill(
        teacher,
        student,
        data,
        training=TrainingArguments(
            distillation_losses=[loss],
            student_loss_weight=args.student_loss_weight,
            config=qat_config,
            teacher_outputs=outputs,
        ),
    ).student
    int8 = convert_keras_model(qat, quantization="int8", representative_data=data.x_train)
    arena, _ = arena_with_margin(measure_arena(int8)["arena_bytes"])
    parity = verify_models(
        data.x_test,
        data.y_test,
        keras_models={"qat_student": qat},
        int8_tflite=int8,
        tflm_arena_size=arena,
        max_samples=args.tflm_samples,
    )
    row = {
        "data": dataset_name,
        "seed": seed,
        "num_train": len(data.x_train),
        "teacher_parameters": teacher.count_params(),
        "student_parameters": student.count_params(),
        "teacher_accuracy": accuracy(teacher, data.x_test, data.y_test),
        "scratch_accuracy": accuracy(scratch, data.x_test, data.y_test),
        "distilled_accuracy": accuracy(student, data.x_test, data.y_test),
        "qat_accuracy": accuracy(qat, data.x_test, data.y_test),
        "int8_litert_accuracy_subset": parity.accuracy["int8_litert"],
        "int8_tflm_accuracy_subset": parity.accuracy["int8_tflm"],
        "qat_accuracy_subset": parity.accuracy["qat_student"],
        "int8_subset_size": parity.num_test_samples,
        "int8_bytes": len(int8),
        "teacher_float32_bytes": len(convert_keras_model(teacher, quantization="float32")),
        "tflm_arena_bytes": arena,
        "seconds": time.perf_counter() - started,
    }
    # int8 vs float on the full test split (LiteRT is fast enough for all of it).
    from edgedistill.tflite_model import LiteRTModel
    import numpy as np

    row["int8_litert_accuracy"] = float(np.mean(LiteRTModel(int8).raw_outputs(data.x_test).argmax(1) == data.y_test) * 100)
    return row


def summarise(rows: list[dict]) -> dict:
    def mean(key):
        return statistics.mean(r[key] for r in rows)

    teacher, scratch, distilled = mean("teacher_accuracy"), mean("scratch_accuracy"), mean("distilled_accuracy")
    gap = teacher - scratch
    return {
        "seeds": [r["seed"] for r in rows],
        "teacher_accuracy": teacher,
        "scratch_accuracy": scratch,
        "distilled_accuracy": distilled,
        "qat_accuracy": mean("qat_accuracy"),
        "int8_litert_accuracy": mean("int8_litert_accuracy"),
        "int8_tflm_accuracy_subset": mean("int8_tflm_accuracy_subset"),
        "distill_gain_points": distilled - scratch,
        "int8_minus_float_points": mean("int8_litert_accuracy") - distilled,
        "gap_recovered_fraction": (distilled - scratch) / gap if gap > 0 else None,
        "size_ratio": rows[0]["student_parameters"] / rows[0]["teacher_parameters"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion_mnist"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--student-loss-weight", type=float, default=0.5)
    parser.add_argument("--teacher-preset", default="cnn")
    parser.add_argument("--teacher-width", type=float, default=1.0)
    parser.add_argument("--student-preset", default="dscnn")
    parser.add_argument("--student-width", type=float, default=1.0)
    parser.add_argument("--train-samples", type=int, default=None, help="subsample the training split (say so when quoting)")
    parser.add_argument(
        "--tflm-samples",
        type=int,
        default=1000,
        help="test samples run on TFLM and QAT for parity (TFLM's reference kernels are slow)",
    )
    parser.add_argument("--output", default=str(RESULTS / "distill_quality.json"))
    args = parser.parse_args()

    from edgedistill.fileio import write_json_atomic
    from edgedistill.tflite_model import runtime_versions

    result = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "arguments": vars(args),
        "versions": runtime_versions(),
        "rows": [],
        "summary": {},
    }
    for dataset_name in args.datasets:
        for seed in args.seeds:
            row = one_seed(dataset_name, seed, args)
            result["rows"].append(row)
            print(
                f"{dataset_name} seed {seed}: teacher {row['teacher_accuracy']:.2f} scratch {row['scratch_accuracy']:.2f} "
                f"distilled {row['distilled_accuracy']:.2f} qat {row['qat_accuracy']:.2f} int8 {row['int8_litert_accuracy']:.2f} "
                f"({row['seconds']:.0f} s)",
                flush=True,
            )
            write_json_atomic(args.output, result)  # keep what is measured if a later seed fails
        result["summary"][dataset_name] = summarise([r for r in result["rows"] if r["data"] == dataset_name])
    write_json_atomic(args.output, result)

    print(
        f"\n{'data':<14}{'teacher':>9}{'scratch':>9}{'distilled':>10}{'gain':>7}"
        f"{'gap rec.':>9}{'QAT':>8}{'int8':>8}{'int8-fl':>8}{'size':>8}"
    )
    for name, s in result["summary"].items():
        print(
            f"{name:<14}{s['teacher_accuracy']:>9.2f}{s['scratch_accuracy']:>9.2f}{s['distilled_accuracy']:>10.2f}"
            f"{s['distill_gain_points']:>+7.2f}{(s['gap_recovered_fraction'] or 0):>9.2f}{s['qat_accuracy']:>8.2f}"
            f"{s['int8_litert_accuracy']:>8.2f}{s['int8_minus_float_points']:>+8.2f}{s['size_ratio']:>8.3f}"
        )
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
