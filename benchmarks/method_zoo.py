"""Every distillation method on the same teacher and student, against the student from scratch.

    python benchmarks/method_zoo.py                          # Fashion-MNIST, 10k training images, 3 seeds
    python benchmarks/method_zoo.py --data digits --seeds 0  # a quick look

For each seed: a teacher (``cnn`` width 1) is trained once; every method then trains a fresh
student (``cnn`` width 0.125: conv 4, conv 8, dense 32, ~1/60 of the teacher) with the same
epochs, batch size and learning rate, early stopping on validation accuracy. Reported per
method: float test accuracy, int8 test accuracy (post-training full-integer int8 on LiteRT,
calibrated on 200 training images), wall time, and the gain over the scratch student of the
same seed. QAT is not run here (the pipeline's QAT stage keeps each method's loss).

The data keep their raw values (Fashion-MNIST: uint8 pixels); every model carries its
preprocessing (``x / 255`` as its first layer): the student comes from the student stage
(:func:`edgedistill.stages.build_student`), the teachers get the same preprocessing, and each int8
model takes the raw bytes (``byte - 128``), as ``edgedistill run`` builds them.

The training set is subsampled (``--max-train-samples``, default 10000 of 57000) because the
machine is 2 shared cores; the validation split (5 %) and the 10000 test images are whole.
Results go to ``benchmarks/results/method_zoo[_<data>].json`` after every method.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent


def int8_accuracy(model, data) -> float:
    from edgedistill.convert import convert_keras_model
    from edgedistill.preprocessing import BYTE_RANGE
    from edgedistill.tflite_model import LiteRTModel

    # Byte data: the int8 input is the raw byte - 128 (the data contract), as the convert stage does.
    content = convert_keras_model(
        model, quantization="int8", representative_data=data.x_train, input_range=BYTE_RANGE if data.raw_bytes else None
    )
    predictions = LiteRTModel(content).predict(data.x_test).argmax(axis=-1)
    return float((predictions == data.y_test).mean() * 100.0)


def methods(args):
    """name -> function(teacher, teachers, student, data, config) -> (student, history)."""
    from edgedistill.distill import distill
    from edgedistill.distill.calibration import calibrate_logits
    from edgedistill.distill.losses import AttentionTransfer, FeatureDistillation, LogitsDistillation, RelationalDistillation
    from edgedistill.distill import TrainingArguments
    from edgedistill.distill.schemes import (
        data_free_distill,
        distill_multi_teacher,
        mutual_distill,
        patient_distill,
        run_scheme,
        self_distill,
    )
    from edgedistill.models import predict_logits
    from edgedistill.training import train_classifier

    T, alpha = args.temperature, args.alpha

    def pair(result):
        """A SchemeResult as this table's (student, history with the scheme's report figures)."""
        return result.student, {**result.history, **result.report}

    def training(config, loss=None, weight=None):
        return TrainingArguments(
            distillation_losses=[loss or LogitsDistillation(T)],
            student_loss_weight=alpha if weight is None else weight,
            config=config,
        )

    def logits(teacher, teachers, student, data, config):
        return distill(
            teacher, student, data, distillation_losses=[LogitsDistillation(T)], student_loss_weight=alpha, config=config
        )

    def logits_annealed(teacher, teachers, student, data, config):
        return distill(
            teacher,
            student,
            data,
            distillation_losses=[LogitsDistillation(8.0, final_temperature=2.0)],
            student_loss_weight=alpha,
            config=config,
        )

    def calibrated(teacher, teachers, student, data, config):
        outputs = {"train": predict_logits(teacher, data.x_train), "val": predict_logits(teacher, data.x_val)}
        calibration = calibrate_logits(outputs["val"], data.y_val)
        outputs = {k: calibration.apply(v) for k, v in outputs.items()}
        student, history = distill(
            teacher,
            student,
            data,
            distillation_losses=[LogitsDistillation(T)],
            student_loss_weight=alpha,
            config=config,
            teacher_outputs=outputs,
        )
        history["calibration"] = calibration.to_dict()
        return student, history

    def hint(teacher, teachers, student, data, config):
        return distill(
            teacher,
            student,
            data,
            distillation_losses=[FeatureDistillation("block2_relu", "block2_relu")],
            student_loss_weight=alpha,
            config=config,
        )

    def attention(teacher, teachers, student, data, config):
        return distill(
            teacher,
            student,
            data,
            distillation_losses=[AttentionTransfer("block2_relu", "block2_relu")],
            student_loss_weight=alpha,
            config=config,
        )

    def rkd(teacher, teachers, student, data, config):
        return distill(
            teacher, student, data, distillation_losses=[RelationalDistillation()], student_loss_weight=alpha, config=config
        )

    def multi(teacher, teachers, student, data, config):
        return pair(distill_multi_teacher(teachers, student, data, training=training(config)))

    def self_ema(teacher, teachers, student, data, config):
        return pair(self_distill(student, data, mode="ema", ema_decay=0.99, training=training(config)))

    def mutual(teacher, teachers, student, data, config):
        return pair(mutual_distill(student, data, training=training(config)))

    def assistant(teacher, teachers, student, data, config):
        # The scheme as `--scheme teacher_assistant` runs it: it builds the `cnn` assistant itself.
        options = {"assistant_widths": (args.assistant_width,), "assistant_preset": "cnn"}
        return pair(run_scheme("teacher_assistant", teacher, student, data, options=options, training=training(config)))

    def patient(teacher, teachers, student, data, config):
        return pair(
            patient_distill(
                teacher,
                student,
                data,
                mixup_alpha=1.0,
                translation=0.1,
                training=training(config, LogitsDistillation(1.0), 0.0),
            )
        )

    def data_free(teacher, teachers, student, data, config):
        return pair(
            data_free_distill(
                teacher,
                student,
                data,
                num_samples=args.data_free_samples,
                steps=args.data_free_steps,
                training=training(config, weight=0.0),
            )
        )

    def scratch(teacher, teachers, student, data, config):
        return student, train_classifier(student, data, config=config, stage="scratch")

    return {
        "scratch": scratch,
        "logits": logits,
        "logits_annealed_T8to2": logits_annealed,
        "logits_calibrated_teacher": calibrated,
        "feature_hint": hint,
        "attention_transfer": attention,
        "rkd": rkd,
        "multi_teacher": multi,
        "self_ema": self_ema,
        "mutual_dml": mutual,
        "teacher_assistant": assistant,
        "patient_mixup": patient,
        "data_free": data_free,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-train-samples", type=int, default=10000)
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--student-width", type=float, default=0.125)
    parser.add_argument("--assistant-width", type=float, default=0.375)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.5, help="student_loss_weight")
    parser.add_argument("--data-free-samples", type=int, default=2000)
    parser.add_argument("--data-free-steps", type=int, default=100)
    parser.add_argument("--methods", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--output", default=None)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the (seed, method) results already in the output file and run only the missing ones",
    )
    parser.add_argument(
        "--teacher-cache",
        default="runs/method_zoo_teachers",
        help="folder where each seed's teachers are saved, so a resumed seed distills from the same teacher",
    )
    args = parser.parse_args()

    from edgedistill.config import StudentConfig
    from edgedistill.data import load_dataset
    from edgedistill.models import build_model
    from edgedistill.preprocessing import with_preprocessing
    from edgedistill.stages import build_student, student_preprocessing_of
    from edgedistill.tflite_model import runtime_versions
    from edgedistill.training import TrainConfig, accuracy, train_classifier

    table = methods(args)
    chosen = [m for m in args.methods.split(",") if m] or list(table)
    output = (
        Path(args.output)
        if args.output
        else ROOT
        / "results"
        / ("method_zoo.json" if args.data == "fashion_mnist" else f"method_zoo_{args.data.split(':')[0]}.json")
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": vars(args),
        "versions": runtime_versions(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "note": "2 cores shared with other jobs: wall times are indicative",
        },
        "runs": [],
    }
    if args.resume and output.is_file():
        previous = json.loads(output.read_text())
        result["runs"] = previous.get("runs", [])
        result["resumed"] = previous.get("resumed", []) + [previous.get("command")]
        if previous.get("note"):
            result["note"] = previous["note"]
    done = {(r["seed"], r["method"]) for r in result["runs"]}
    for seed in [int(s) for s in args.seeds.split(",")]:
        todo = [name for name in chosen if (seed, name) not in done]
        if not todo:
            continue
        data = load_dataset(args.data, validation_fraction=0.05, seed=seed, max_train_samples=args.max_train_samples)
        result["data"] = data.summary()  # its values (raw bytes or floats) and split sizes
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            patience=args.patience,
            seed=seed,
            verbose=0,
        )
        teacher_config = TrainConfig(
            epochs=args.teacher_epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            patience=args.patience,
            seed=seed,
            verbose=0,
        )
        teachers = []
        # the second teacher (width 0.5) is only needed by multi_teacher
        for index, width in enumerate((1.0, 0.5) if "multi_teacher" in chosen else (1.0,)):
            started = time.perf_counter()
            # The preset a teacher stage trains: the student's preprocessing as its first layer (no weights).
            teacher = with_preprocessing(
                build_model("cnn", data.input_shape, data.num_classes, width=width, name=f"teacher{index}"),
                student_preprocessing_of(data),
            )
            cached = Path(args.teacher_cache) / f"{args.data.split(':')[0]}_seed{seed}_cnn_w{width:g}.weights.h5"
            method = f"teacher_cnn_w{width:g}"
            loaded = cached.is_file()
            if loaded:
                teacher.load_weights(str(cached))
            else:
                train_classifier(teacher, data, config=teacher_config)
                cached.parent.mkdir(parents=True, exist_ok=True)
                teacher.save_weights(str(cached))
            teachers.append(teacher)
            if (seed, method) in done and loaded:
                continue  # the same teacher as the seed's earlier methods: already recorded
            record = {
                "seed": seed,
                "method": method if (seed, method) not in done else f"{method}_resumed",
                "parameters": int(teacher.count_params()),
                "float_accuracy": accuracy(teacher, data.x_test, data.y_test),
                "seconds": round(time.perf_counter() - started, 1),
                "teacher": "loaded from " + str(cached) if loaded else "trained",
            }
            # "_resumed": a seed resumed from a run that did not save its teacher; this one was
            # retrained with the same seed (TF's threaded kernels make it close, not identical).
            result["runs"].append(record)
            print(
                f"seed {seed} {record['method']:<28} {record['parameters']:>8} params  {record['float_accuracy']:.2f}%  "
                f"{record['seconds']:.0f} s",
                flush=True,
            )
        for name in todo:
            started = time.perf_counter()
            student, _, _ = build_student(StudentConfig(student_preset="cnn", student_width=args.student_width), data)
            student, history = table[name](teachers[0], teachers, student, data, config)
            record = {
                "seed": seed,
                "method": name,
                "parameters": int(student.count_params()),
                "float_accuracy": accuracy(student, data.x_test, data.y_test),
                "int8_accuracy": int8_accuracy(student, data),
                "epochs_run": len(history.get("loss", [])),
                "seconds": round(time.perf_counter() - started, 1),
            }
            for key in ("calibration", "synthesis", "chain"):
                if key in history:
                    record[key] = history[key]
            result["runs"].append(record)
            print(
                f"seed {seed} {name:<28} {record['parameters']:>8} params  float {record['float_accuracy']:.2f}%  int8 "
                f"{record['int8_accuracy']:.2f}%  {record['seconds']:.0f} s",
                flush=True,
            )
            result["summary"] = summarize(result["runs"])
            output.write_text(json.dumps(result, indent=2))
    print_table(result["summary"])
    print(f"-> {output}")
    return 0


def summarize(runs: list[dict]) -> list[dict]:
    """Mean (and per-seed values) per method; gain = method - scratch of the same seed."""
    scratch = {r["seed"]: r["float_accuracy"] for r in runs if r["method"] == "scratch"}
    scratch_int8 = {r["seed"]: r.get("int8_accuracy") for r in runs if r["method"] == "scratch"}
    teacher = {r["seed"]: r["float_accuracy"] for r in runs if r["method"] == "teacher_cnn_w1"}
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        selected = [r for r in runs if r["method"] == method]
        row = {
            "method": method,
            "seeds": [r["seed"] for r in selected],
            "parameters": selected[0]["parameters"],
            "float_accuracy_mean": float(np.mean([r["float_accuracy"] for r in selected])),
            "float_accuracy_per_seed": [round(r["float_accuracy"], 2) for r in selected],
            "seconds_mean": float(np.mean([r["seconds"] for r in selected])),
        }
        if "int8_accuracy" in selected[0]:
            row["int8_accuracy_mean"] = float(np.mean([r["int8_accuracy"] for r in selected]))
        gains = [r["float_accuracy"] - scratch[r["seed"]] for r in selected if r["seed"] in scratch and "int8_accuracy" in r]
        if gains:
            row["gain_over_scratch_mean"] = float(np.mean(gains))
            row["gain_over_scratch_per_seed"] = [round(g, 2) for g in gains]
            int8_gains = [
                r["int8_accuracy"] - scratch_int8[r["seed"]] for r in selected if scratch_int8.get(r["seed"]) is not None
            ]
            row["int8_gain_over_scratch_mean"] = float(np.mean(int8_gains)) if int8_gains else None
            gaps = [
                (r["float_accuracy"] - scratch[r["seed"]]) / (teacher[r["seed"]] - scratch[r["seed"]])
                for r in selected
                if r["seed"] in teacher and teacher[r["seed"]] != scratch[r["seed"]]
            ]
            row["gap_recovered_mean"] = float(np.mean(gaps)) if gaps else None
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'method':<28} {'params':>8} {'float %':>8} {'int8 %':>8} {'gain':>7} {'gap rec.':>8} {'s':>6}  per-seed gain")
    for row in rows:
        int8 = f"{row['int8_accuracy_mean']:.2f}" if "int8_accuracy_mean" in row else "-"
        gain = f"{row['gain_over_scratch_mean']:+.2f}" if "gain_over_scratch_mean" in row else "-"
        gap = f"{row['gap_recovered_mean']:+.2f}" if row.get("gap_recovered_mean") is not None else "-"
        per_seed = ", ".join(f"{g:+.2f}" for g in row.get("gain_over_scratch_per_seed", []))
        print(
            f"{row['method']:<28} {row['parameters']:>8} {row['float_accuracy_mean']:>8.2f} {int8:>8} {gain:>7} {gap:>8} "
            f"{row['seconds_mean']:>6.0f}  {per_seed}"
        )


if __name__ == "__main__":
    sys.exit(main())
