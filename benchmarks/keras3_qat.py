"""Keras 3 QAT against tfmot QAT (issue 20): same data, student, teacher outputs and schedule; int8 on TFLM.

For each seed, one teacher's cached logits distill two students of the same preset and width: the tf_keras one
(edgedistill.distill.distill, then tfmot QAT through edgedistill.distill.quantize_distill, converted by
edgedistill.convert) and the Keras 3 one (edgedistill.keras3: distill, quantize_model, distill, convert_qat_model).
Both take raw bytes (int8 input = byte - 128). Measured: int8 accuracy on the real TFLM interpreter, the ops of
each int8 model, the smallest TFLM arena (host), and wall seconds per epoch of float distillation and of QAT.

Targets: TFLM accuracy within 0.5 point, the same ops, arena within 5 %, the epoch-time ratio reported.

    nice .venv/bin/python benchmarks/keras3_qat.py --seeds 0 1 2            # digits (a few minutes on 2 cores)

Writes benchmarks/results/keras3_qat.json (every per-seed figure, the command, versions).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"


def tflm_figures(content: bytes, data) -> dict:
    """TFLM accuracy (percent) on the test split, the ops and the smallest arena (probed in a subprocess)."""
    import numpy as np

    from edgedistill.micro.arena import measure_arena
    from edgedistill.tflite_model import read_model_info
    from edgedistill.tflm import TFLMModel

    arena = measure_arena(content, source="benchmark model")
    outputs = TFLMModel(content, arena_size=arena["arena_bytes"] + 1024).predict(data.x_test)
    info = read_model_info(content)
    return {
        "tflm_accuracy": float(np.mean(outputs.argmax(axis=1) == data.y_test) * 100.0),
        "ops": info.op_counts, "arena_bytes": int(arena["arena_bytes"]), "model_size_bytes": len(content),
        "input_quantization": info.inputs[0].quantization,
    }  # fmt: skip


def teacher_logits(args, data) -> dict:
    """A tf_keras teacher trained once; its logits per split, shared by every student."""
    from edgedistill.models import build_model, predict_logits
    from edgedistill.preprocessing import with_preprocessing
    from edgedistill.stages import student_preprocessing_of
    from edgedistill.training import TrainConfig, accuracy, train_classifier

    teacher = with_preprocessing(build_model("cnn", data.input_shape, data.num_classes, width=1.0, name="teacher"),
                                 student_preprocessing_of(data))  # fmt: skip
    config = TrainConfig(epochs=args.teacher_epochs, batch_size=args.batch_size, learning_rate=3e-3, patience=0, seed=0, verbose=0)
    train_classifier(teacher, data, config=config)
    print(f"teacher: test accuracy {accuracy(teacher, data.x_test, data.y_test):.2f}%", flush=True)
    return {"train": predict_logits(teacher, data.x_train), "val": predict_logits(teacher, data.x_val), "model": teacher}


def tfmot_run(args, data, cached: dict, seed: int) -> dict:
    from edgedistill.convert import convert_keras_model
    from edgedistill.distill import TrainingArguments, distill, quantize_distill
    from edgedistill.distill.losses import LogitsDistillation
    from edgedistill.models import build_model
    from edgedistill.preprocessing import BYTE_RANGE, with_preprocessing
    from edgedistill.stages import student_preprocessing_of
    from edgedistill.training import TrainConfig

    outputs = {"train": cached["train"], "val": cached["val"]}
    student = with_preprocessing(build_model(args.preset, data.input_shape, data.num_classes, width=args.width, name="student"),
                                 student_preprocessing_of(data))  # fmt: skip
    loss = LogitsDistillation(temperature=args.temperature)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=3e-3, patience=0, seed=seed, verbose=0)
    started = time.perf_counter()
    student, _ = distill(cached["model"], student, data, distillation_losses=[loss], config=config, teacher_outputs=outputs)
    float_seconds = time.perf_counter() - started
    qat_config = TrainConfig(epochs=args.qat_epochs, batch_size=args.batch_size, learning_rate=5e-4, patience=0, seed=seed, verbose=0)
    started = time.perf_counter()
    training = TrainingArguments(distillation_losses=[loss], config=qat_config, teacher_outputs=outputs)
    qat = quantize_distill(cached["model"], student, data, training=training).student
    qat_seconds = time.perf_counter() - started
    content = convert_keras_model(qat, representative_data=data.x_train, input_range=BYTE_RANGE)
    return {**tflm_figures(content, data), "float_epoch_seconds": float_seconds / args.epochs,
            "qat_epoch_seconds": qat_seconds / args.qat_epochs}  # fmt: skip


def keras3_run(args, data, cached: dict, seed: int) -> dict:
    from edgedistill.distill.losses import LogitsDistillation
    from edgedistill.keras3 import convert, distiller, models, qat
    from edgedistill.preprocessing import BYTE_RANGE
    from edgedistill.stages import student_preprocessing_of

    outputs = {"train": cached["train"], "val": cached["val"]}
    student = models.build_model(args.preset, data.input_shape, data.num_classes, width=args.width, name="student",
                                 preprocessing=student_preprocessing_of(data))  # fmt: skip
    options = dict(batch_size=args.batch_size, patience=0, seed=seed, teacher_outputs=outputs,
                   distillation_losses=[LogitsDistillation(temperature=args.temperature)])  # fmt: skip
    started = time.perf_counter()
    student, _ = distiller.distill(cached["model"], student, data, epochs=args.epochs, learning_rate=3e-3, **options)
    float_seconds = time.perf_counter() - started
    started = time.perf_counter()
    qat_student = qat.quantize_model(student, input_range=BYTE_RANGE)
    qat_student, _ = distiller.distill(cached["model"], qat_student, data, epochs=args.qat_epochs, learning_rate=5e-4, **options)
    qat_seconds = time.perf_counter() - started
    content = convert.convert_qat_model(qat_student)
    return {**tflm_figures(content, data), "float_epoch_seconds": float_seconds / args.epochs,
            "qat_epoch_seconds": qat_seconds / args.qat_epochs}  # fmt: skip


def summarise(rows: list[dict]) -> dict:
    def mean(path: str, key: str) -> float:
        return statistics.mean(row[path][key] for row in rows)

    tfmot_accuracy, keras3_accuracy = mean("tfmot", "tflm_accuracy"), mean("keras3", "tflm_accuracy")
    arena_ratio = mean("keras3", "arena_bytes") / mean("tfmot", "arena_bytes")
    return {
        "tflm_accuracy_tfmot": tfmot_accuracy, "tflm_accuracy_keras3": keras3_accuracy,
        "accuracy_difference_points": keras3_accuracy - tfmot_accuracy,
        "within_half_point": abs(keras3_accuracy - tfmot_accuracy) <= 0.5,
        "same_ops": all(row["tfmot"]["ops"] == row["keras3"]["ops"] for row in rows),
        "arena_ratio_keras3_over_tfmot": arena_ratio, "arena_within_5_percent": abs(arena_ratio - 1.0) <= 0.05,
        "float_epoch_time_ratio_keras3_over_tfmot": mean("keras3", "float_epoch_seconds") / mean("tfmot", "float_epoch_seconds"),
        "qat_epoch_time_ratio_keras3_over_tfmot": mean("keras3", "qat_epoch_seconds") / mean("tfmot", "qat_epoch_seconds"),
    }  # fmt: skip


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--preset", default="dscnn", help="student preset (the project's default student)")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--qat-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "keras3_qat.json")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    from edgedistill.data import load_dataset
    from edgedistill.tflite_model import runtime_versions

    args = parse(argv)
    data = load_dataset(args.data)
    cached = teacher_logits(args, data)
    rows = []
    for seed in args.seeds:
        row = {"seed": seed, "tfmot": tfmot_run(args, data, cached, seed), "keras3": keras3_run(args, data, cached, seed)}
        print(f"seed {seed}: TFLM accuracy tfmot {row['tfmot']['tflm_accuracy']:.2f}% keras3 {row['keras3']['tflm_accuracy']:.2f}%; "
              f"arena {row['tfmot']['arena_bytes']} / {row['keras3']['arena_bytes']} B; ops {row['tfmot']['ops']} / {row['keras3']['ops']}",
              flush=True)  # fmt: skip
        rows.append(row)
    import keras

    result = {
        "command": " ".join(["benchmarks/keras3_qat.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
        "data": data.summary(), "summary": summarise(rows), "seeds": rows,
        "versions": {**runtime_versions(), "keras": keras.__version__},
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
