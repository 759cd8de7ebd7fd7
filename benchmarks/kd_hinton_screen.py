"""A quick screen of what lifts the Hinton-style MNIST student (issue 21), float accuracy only.

kd_defaults.py runs every candidate through the whole library (distill, QAT, int8, TFLM) and costs 5-15 minutes a
row; this screen trains only the float student, with the teacher's logits computed once (the students see no
jitter, so the teacher's outputs on a training image never change), to rank losses and schedules before the
winner gets kd_defaults.py's full treatment. Same data, split, teacher file and student as kd_defaults.py's
``mnist_hinton``: run ``kd_defaults.py --task mnist_hinton --teacher-only`` first.

    .venv/bin/python benchmarks/kd_hinton_screen.py --variant logits --epochs 60
    .venv/bin/python benchmarks/kd_hinton_screen.py --variant mse --epochs 60
    .venv/bin/python benchmarks/kd_hinton_screen.py --variant scratch --epochs 60
    .venv/bin/python benchmarks/kd_hinton_screen.py --variant dist --temperature 4 --weight 0.5 --teacher A.keras B.keras

Losses: ``logits`` = (1 - w) * T^2 * KL(teacher_T || student_T) + w * cross-entropy (edgedistill's logits loss);
``mse`` = (1 - w) * mean squared logit difference + w * cross-entropy; ``dist`` = the library's DIST at
kd_defaults' ``dist_t4`` (beta = gamma = 2; ``--temperature 4 --weight 0.5`` for the default); ``scratch`` =
cross-entropy only. Adam (or ``--optimizer sgd``: SGD with momentum 0.9) with the library's per-epoch cosine
(edgedistill.training.cosine_rate).
Rows are appended to results/kd_hinton_screen.json with the validation and test accuracy every 10 epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MNIST = HERE / ".external" / "mnist" / "mnist.npz"
TEACHER = HERE / ".external" / "kd_defaults" / "mnist_hinton_teacher_mlp_w4.keras"
RESULTS = HERE / "results" / "kd_hinton_screen.json"


def accuracy(model, x, y) -> float:
    return round(float((model.predict(x, batch_size=2048, verbose=0).argmax(axis=1) == y).mean() * 100), 2)


def loss_function(variant: str, temperature: float, weight: float, classes: int):
    """y_true is [one-hot labels, teacher logits] side by side."""
    import tensorflow as tf

    from edgedistill.config import LOSS_CANDIDATES
    from edgedistill.distill.losses import get_loss

    # The library's default loss as auto's candidate names it (DIST, beta = gamma = 2); it is a batch mean already.
    dist_loss = get_loss(f"{LOSS_CANDIDATES['dist_t4']['distillation_loss']},temperature={temperature}")

    def loss(y_true, logits):
        hard, teacher = y_true[:, :classes], y_true[:, classes:]
        cross_entropy = tf.keras.losses.categorical_crossentropy(hard, logits, from_logits=True)
        if variant == "scratch":
            return cross_entropy
        if variant == "mse":
            soft = tf.reduce_mean(tf.square(logits - teacher), axis=1)
        elif variant == "dist":
            soft = dist_loss.compute_loss(teacher, logits)
        else:
            target = tf.nn.softmax(teacher / temperature)
            log_ratio = tf.nn.log_softmax(teacher / temperature) - tf.nn.log_softmax(logits / temperature)
            soft = tf.reduce_sum(target * log_ratio, axis=1) * temperature**2
        return weight * cross_entropy + (1 - weight) * soft

    return loss


def teacher_outputs(files: list[Path], data, temperature: float) -> tuple:
    """(the teacher's logits on the training split, its test accuracy); several files: their ensemble through
    edgedistill's ``ensemble_logits`` (one teacher passes through unchanged up to the logits' shift)."""
    from edgedistill._keras import keras
    from edgedistill.distill.schemes.multi_teacher import ensemble_logits

    teachers = [keras.models.load_model(path, compile=False) for path in files]

    def outputs(x):
        logits = [teacher.predict(x, batch_size=1024, verbose=0) for teacher in teachers]
        return logits[0].astype("float32") if len(logits) == 1 else ensemble_logits(logits, temperature=temperature)

    test_accuracy = round(float((outputs(data.x_test).argmax(axis=1) == data.y_test).mean() * 100), 2)
    return outputs(data.x_train), test_accuracy


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("logits", "mse", "dist", "scratch"), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--width", type=float, default=2.0, help="student mlp width (2: 512-256, 1/2.5 of the teacher)")
    parser.add_argument("--temperature", type=float, default=20.0)
    parser.add_argument("--weight", type=float, default=0.1, help="hard-label weight")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--optimizer", choices=("adam", "sgd"), default="adam", help="sgd: momentum 0.9 (Hinton's nets were trained so)"
    )
    parser.add_argument(
        "--teacher",
        type=Path,
        nargs="+",
        default=[TEACHER],
        help="the teacher's .keras file; several: their ensemble (probabilities at --temperature averaged, as the "
        "multi_teacher scheme does)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import numpy as np

    from edgedistill._keras import keras
    from edgedistill.config import DataConfig
    from edgedistill.data import load_dataset
    from edgedistill.models import build_model
    from edgedistill.preprocessing import with_preprocessing
    from edgedistill.stages import student_preprocessing_of
    from edgedistill.training import cosine_rate

    spec = f"npz:{MNIST}"
    data = load_dataset(spec, validation_fraction=0.1, seed=0, options=DataConfig(data=spec))
    teacher_logits, teacher_test = teacher_outputs(args.teacher, data, args.temperature)
    keras.utils.set_random_seed(args.seed)
    student = build_model("mlp", data.input_shape, data.num_classes, width=args.width, name="student")
    student = with_preprocessing(student, student_preprocessing_of(data))
    targets = np.concatenate([np.eye(data.num_classes, dtype="float32")[data.y_train], teacher_logits], axis=1)
    student.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate)
        if args.optimizer == "adam"
        else keras.optimizers.SGD(args.learning_rate, momentum=0.9),
        loss=loss_function(args.variant, args.temperature, args.weight, data.num_classes),
    )
    schedule = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: student.optimizer.learning_rate.assign(
            cosine_rate(args.learning_rate, epoch, args.epochs)
        )
    )
    start, history = time.time(), []
    for epoch in range(args.epochs):
        fit = {"batch_size": args.batch_size, "epochs": epoch + 1, "initial_epoch": epoch, "verbose": 0}
        student.fit(data.x_train, targets, callbacks=[schedule], **fit)
        if (epoch + 1) % 10 == 0 or epoch + 1 == args.epochs:
            row = {"epoch": epoch + 1, "val": accuracy(student, data.x_val, data.y_val)}
            row["test"] = accuracy(student, data.x_test, data.y_test)
            history.append(row)
            print(args.variant, args.seed, row, f"{time.time() - start:.0f} s", flush=True)
    record = {
        **vars(args),
        "teacher": " ".join(str(path) for path in args.teacher),
        "parameters": student.count_params(),
        "teacher_test": teacher_test,
        "history": history,
        "seconds": round(time.time() - start),
        "machine": platform.node(),
    }
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    saved["rows"].append(record)
    RESULTS.write_text(json.dumps(saved, indent=1) + "\n")


if __name__ == "__main__":
    main()
