"""Keras 3 QAT against tfmot QAT (issue 20): same data, student, teacher outputs and schedule; int8 on TFLM.

For each seed, one teacher's cached logits distill two students of the same preset and width: the tf_keras one
(edgedistill.distill.distill, then tfmot QAT through edgedistill.distill.quantize_distill, converted by
edgedistill.convert) and the Keras 3 one (edgedistill.keras3: distill, quantize_model, distill, convert_qat_model).
Both take raw bytes (int8 input = byte - 128). Measured: int8 accuracy on the real TFLM interpreter, the ops of
each int8 model, the smallest TFLM arena (host), and wall seconds per epoch of float distillation and of QAT.

Targets: TFLM accuracy within 0.5 point, the same ops, arena within 5 %, the epoch-time ratio reported.

Two tasks (``--task``), each with its own defaults (any flag overrides them):

- ``digits``: scikit-learn's 8x8 digits, ``dscnn`` width 0.5 students, a ``cnn`` teacher;
- ``cifar10``: the CIFAR-10 JPEG copy of benchmarks/real_images.py (``images:benchmarks/.external/cifar10``,
  see benchmarks/README.md), a 10,000-image training subset, ``resnet8`` width 0.35 students (real_images.py's
  student: Conv2D + BatchNorm + ReLU, residual Add, GlobalAveragePooling2D), a ``cnn`` teacher on the same subset;
  TFLM accuracy on a shuffled subset of the test images (``--test-samples``; 0 = all 10,000).

    nice .venv/bin/python benchmarks/keras3_qat.py --seeds 0 1 2                   # digits (a few minutes on 2 cores)
    nice -n 10 .venv/bin/python benchmarks/keras3_qat.py --task cifar10 --seeds 0 1 2

Writes benchmarks/results/keras3_qat.json (digits) or keras3_qat_cifar10.json (every per-seed figure, the command,
the data, versions).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# Per task: the defaults of the flags left unset. The schedule is the same for both backends within a task.
TASKS = {
    "digits": {
        "data": "digits",
        "preset": "dscnn",
        "width": 0.5,
        "teacher_preset": "cnn",
        "teacher_width": 1.0,
        "teacher_epochs": 20,
        "epochs": 20,
        "qat_epochs": 5,
        "train_samples": 0,
        "val_samples": 0,
        "test_samples": 0,
        "output": RESULTS / "keras3_qat.json",
    },
    "cifar10": {
        "data": f"images:{HERE / '.external' / 'cifar10'}",
        "preset": "resnet8",
        "width": 0.35,
        "teacher_preset": "cnn",
        "teacher_width": 1.0,
        "teacher_epochs": 8,
        "epochs": 8,
        "qat_epochs": 2,
        "train_samples": 10000,
        "val_samples": 1000,
        "test_samples": 5000,
        "output": RESULTS / "keras3_qat_cifar10.json",
    },
}


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
        "ops": info.op_counts,
        "arena_bytes": int(arena["arena_bytes"]),
        "model_size_bytes": len(content),
        "input_quantization": info.inputs[0].quantization,
    }


def load_data(args):
    """The task's data: digits as is; an ``images:DIR`` set with ``train_samples`` training images (after a
    ``val_samples`` validation split, as real_images.py) and a shuffled ``test_samples`` subset of its test images."""
    from edgedistill.config import DataConfig
    from edgedistill.data import load_dataset

    if not args.data.startswith("images:"):
        return load_dataset(args.data)
    import numpy as np

    started = time.perf_counter()
    data = load_dataset(
        args.data,
        validation_fraction=args.val_samples / 50000,
        seed=0,
        max_train_samples=args.train_samples or None,
        options=DataConfig(data=args.data),
    )
    if args.test_samples and args.test_samples < len(data.x_test):
        keep = np.sort(np.random.default_rng(0).permutation(len(data.x_test))[: args.test_samples])
        data.x_test, data.y_test = data.x_test[keep], data.y_test[keep]
    print(
        f"data: {len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test "
        f"(test classes {np.bincount(data.y_test).tolist()}), {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return data


def test_accuracy(model, data) -> float:
    """Test accuracy (percent) of a Keras model (tf_keras or Keras 3) in float or fake-quant, before conversion."""
    import numpy as np

    logits = model.predict(data.x_test.astype(np.float32), batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == data.y_test) * 100.0)


def teacher_logits(args, data) -> dict:
    """A tf_keras teacher trained once; its logits per split, shared by every student."""
    from edgedistill.models import build_model, predict_logits
    from edgedistill.preprocessing import with_preprocessing
    from edgedistill.stages import student_preprocessing_of
    from edgedistill.training import TrainConfig, accuracy, train_classifier

    teacher = build_model(args.teacher_preset, data.input_shape, data.num_classes, width=args.teacher_width, name="teacher")
    teacher = with_preprocessing(teacher, student_preprocessing_of(data))
    config = TrainConfig(
        epochs=args.teacher_epochs, batch_size=args.batch_size, learning_rate=3e-3, patience=0, seed=0, verbose=0
    )
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
    student = with_preprocessing(
        build_model(args.preset, data.input_shape, data.num_classes, width=args.width, name="student"),
        student_preprocessing_of(data),
    )
    loss = LogitsDistillation(temperature=args.temperature)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=3e-3, patience=0, seed=seed, verbose=0)
    started = time.perf_counter()
    student, _ = distill(cached["model"], student, data, distillation_losses=[loss], config=config, teacher_outputs=outputs)
    float_seconds = time.perf_counter() - started
    qat_config = TrainConfig(
        epochs=args.qat_epochs, batch_size=args.batch_size, learning_rate=5e-4, patience=0, seed=seed, verbose=0
    )
    started = time.perf_counter()
    training = TrainingArguments(distillation_losses=[loss], config=qat_config, teacher_outputs=outputs)
    qat = quantize_distill(cached["model"], student, data, training=training).student
    qat_seconds = time.perf_counter() - started
    content = convert_keras_model(qat, representative_data=data.x_train, input_range=BYTE_RANGE)
    return {
        **tflm_figures(content, data),
        "float_accuracy": test_accuracy(student, data),
        "qat_accuracy": test_accuracy(qat, data),
        "float_epoch_seconds": float_seconds / args.epochs,
        "qat_epoch_seconds": qat_seconds / args.qat_epochs,
    }


def keras3_run(args, data, cached: dict, seed: int) -> dict:
    from edgedistill.distill.losses import LogitsDistillation
    from edgedistill.keras3 import convert, distiller, models, qat
    from edgedistill.preprocessing import BYTE_RANGE
    from edgedistill.stages import student_preprocessing_of

    outputs = {"train": cached["train"], "val": cached["val"]}
    student = models.build_model(
        args.preset,
        data.input_shape,
        data.num_classes,
        width=args.width,
        name="student",
        preprocessing=student_preprocessing_of(data),
    )
    options = dict(
        batch_size=args.batch_size,
        patience=0,
        seed=seed,
        teacher_outputs=outputs,
        distillation_losses=[LogitsDistillation(temperature=args.temperature)],
    )
    started = time.perf_counter()
    student, _ = distiller.distill(cached["model"], student, data, epochs=args.epochs, learning_rate=3e-3, **options)
    float_seconds = time.perf_counter() - started
    started = time.perf_counter()
    qat_student = qat.quantize_model(student, input_range=BYTE_RANGE)
    qat_student, _ = distiller.distill(cached["model"], qat_student, data, epochs=args.qat_epochs, learning_rate=5e-4, **options)
    qat_seconds = time.perf_counter() - started
    content = convert.convert_qat_model(qat_student)
    return {
        **tflm_figures(content, data),
        "float_accuracy": test_accuracy(student, data),
        "qat_accuracy": test_accuracy(qat_student, data),
        "float_epoch_seconds": float_seconds / args.epochs,
        "qat_epoch_seconds": qat_seconds / args.qat_epochs,
    }


def summarise(rows: list[dict]) -> dict:
    def mean(path: str, key: str) -> float:
        return statistics.mean(row[path][key] for row in rows)

    tfmot_accuracy, keras3_accuracy = mean("tfmot", "tflm_accuracy"), mean("keras3", "tflm_accuracy")
    arena_ratio = mean("keras3", "arena_bytes") / mean("tfmot", "arena_bytes")
    return {
        "tflm_accuracy_tfmot": tfmot_accuracy,
        "tflm_accuracy_keras3": keras3_accuracy,
        "accuracy_difference_points": keras3_accuracy - tfmot_accuracy,
        "within_half_point": abs(keras3_accuracy - tfmot_accuracy) <= 0.5,
        "same_ops": all(row["tfmot"]["ops"] == row["keras3"]["ops"] for row in rows),
        "arena_ratio_keras3_over_tfmot": arena_ratio,
        "arena_within_5_percent": abs(arena_ratio - 1.0) <= 0.05,
        "float_epoch_time_ratio_keras3_over_tfmot": mean("keras3", "float_epoch_seconds") / mean("tfmot", "float_epoch_seconds"),
        "qat_epoch_time_ratio_keras3_over_tfmot": mean("keras3", "qat_epoch_seconds") / mean("tfmot", "qat_epoch_seconds"),
    }


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="digits", help="sets the defaults of the flags below")
    parser.add_argument("--data", help="data spec (digits: digits; cifar10: images:benchmarks/.external/cifar10)")
    parser.add_argument("--preset", help="student preset (digits: dscnn; cifar10: resnet8)")
    parser.add_argument("--width", type=float, help="student width (digits: 0.5; cifar10: 0.35)")
    parser.add_argument("--teacher-preset")
    parser.add_argument("--teacher-width", type=float)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-epochs", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--qat-epochs", type=int)
    parser.add_argument("--train-samples", type=int, help="images:DIR only: training images kept (0 = all)")
    parser.add_argument("--val-samples", type=int, help="images:DIR only: validation images split off first")
    parser.add_argument("--test-samples", type=int, help="images:DIR only: shuffled test images for TFLM (0 = all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    for key, value in TASKS[args.task].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def write_result(args, argv, data, rows: list[dict]) -> dict:
    """The JSON of the seeds run so far (written after each seed: a stopped run keeps what it measured)."""
    import keras

    from edgedistill.tflite_model import runtime_versions

    result = {
        "command": " ".join(["benchmarks/keras3_qat.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
        "complete": len(rows) == len(args.seeds),
        "data": data.summary(),
        "summary": summarise(rows),
        "seeds": rows,
        "versions": {**runtime_versions(), "keras": keras.__version__},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None) -> None:
    args = parse(argv)
    data = load_data(args)
    cached = teacher_logits(args, data)
    rows = []
    for seed in args.seeds:
        row = {"seed": seed, "tfmot": tfmot_run(args, data, cached, seed), "keras3": keras3_run(args, data, cached, seed)}
        print(
            f"seed {seed}: TFLM accuracy tfmot {row['tfmot']['tflm_accuracy']:.2f}% keras3 "
            f"{row['keras3']['tflm_accuracy']:.2f}%; "
            f"arena {row['tfmot']['arena_bytes']} / {row['keras3']['arena_bytes']} B; ops {row['tfmot']['ops']} / "
            f"{row['keras3']['ops']}",
            flush=True,
        )
        rows.append(row)
        result = write_result(args, argv, data, rows)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
