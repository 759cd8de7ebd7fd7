"""Search over temperature, alpha (``student_loss_weight``) and student width.

Each trial is a full distillation of a fresh student (optionally followed by QAT), converted
to int8 and scored on the *validation* split: float accuracy, int8 accuracy on LiteRT, int8
bytes and the TFLM arena. The test split is never looked at. The Pareto front (accuracy vs
int8 bytes: no other trial is both more accurate and smaller) is written with every trial to
``search.json`` and ``search.md``, and drawn in ``pareto.png`` when matplotlib is installed.

Methods: ``grid`` (every combination), ``random`` (``num_trials`` combinations drawn from the
given values), ``optuna`` (Bayesian TPE over the ranges the values span; widths stay
categorical). Backends: ``local`` (this process) and ``ray`` (Ray Tune; a local runtime, or a
cluster with ``ray_address``). The teacher is trained once (or loaded) before any trial.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Sequence

from edgedistill.config import WIDTH_RANGE, RunConfig, _width_ok
from edgedistill.errors import InputError

logger = logging.getLogger(__name__)
METHODS = ("grid", "random", "optuna")
BACKENDS = ("local", "ray")


MAX_TRIALS = 10_000  # each trial trains a student: more is a typo, not a search


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Values to search. ``optuna`` searches the ranges ``[min, max]`` of the first two."""

    temperatures: tuple[float, ...] = (2.0, 4.0, 8.0)
    student_loss_weights: tuple[float, ...] = (0.1, 0.5, 0.9)
    student_widths: tuple[float, ...] = (0.25, 0.5)

    def __post_init__(self) -> None:
        for name, values, ok, expected in (
            ("temperatures", self.temperatures, lambda v: v > 0, "> 0"),
            ("student_loss_weights", self.student_loss_weights, lambda v: 0 <= v <= 1, "in [0, 1]"),
            ("student_widths", self.student_widths, _width_ok, WIDTH_RANGE),  # the preset's bound, before the teacher trains
        ):
            if not values:
                raise InputError(f"`{name}` needs at least one value.")
            bad = [v for v in values if not ok(v)]
            if bad:
                raise InputError(f"Every value of `{name}` must be {expected}. Received: {list(values)}.")

    def grid(self) -> list[dict[str, float]]:
        return [
            {"temperature": t, "student_loss_weight": a, "student_width": w}
            for t, a, w in itertools.product(self.temperatures, self.student_loss_weights, self.student_widths)
        ]

    def sample(self, num_trials: int, seed: int) -> list[dict[str, float]]:
        rng = random.Random(seed)
        grid = self.grid()
        if num_trials >= len(grid):
            return grid
        return rng.sample(grid, num_trials)


# The search's own defaults where a trial should be shorter than a run (one place, shown by --help).
SEARCH_DEFAULTS: dict[str, Any] = {"epochs": 20, "patience": 5, "qat_epochs": 0, "verbose": 0}


def search_config(**options: Any) -> RunConfig:
    """A :class:`RunConfig` for trials: the run's options, with :data:`SEARCH_DEFAULTS` under ``options``."""
    return RunConfig.from_options({**SEARCH_DEFAULTS, **options})


def prepare_teacher(config: RunConfig, data, output_dir: Path) -> str:
    """The teacher's path: the user's file, or a preset trained once and saved in ``output_dir``."""
    from edgedistill import stages
    from edgedistill.fileio import save_model_atomic

    from edgedistill._keras import keras

    if not config.teacher.teacher:
        logger.info("== teacher: training preset %s once for every trial", config.teacher.teacher_preset)
    # A teacher file too: its preprocessing (declared or detected) and the teacher gate, once; the saved
    # copy takes the data's raw values, as every trial's student does.
    teacher, _ = stages.prepare_teacher(
        config.teacher, config.training, data, seed=config.data.seed, chance_gate=config.verify.chance_gate
    )
    if config.teacher.teacher and not isinstance(teacher.model, keras.Model):
        formula = (teacher.preprocessing or {}).get("formula", "x")
        if formula != "x":
            raise InputError(
                f"search: the teacher {config.teacher.teacher} (Keras 3 or SavedModel) expects {formula} of the raw "
                "values, which search cannot save for its trials. Re-save it as a tf_keras model, or use `edgedistill run`."
            )
        return config.teacher.teacher  # takes the raw values as they are
    return str(save_model_atomic(teacher.model, output_dir / "teacher.keras"))


def _teacher(teacher_path: str, data, teacher_outputs: dict | None):
    from edgedistill import stages
    from edgedistill.models import load_model_file, predict_logits

    model = load_model_file(teacher_path)
    if teacher_outputs is None:
        teacher_outputs = {"train": predict_logits(model, data.x_train), "val": predict_logits(model, data.x_val)}
    return stages.Teacher(model=model, outputs=teacher_outputs, source=teacher_path)


def run_trial(
    params: dict[str, float],
    *,
    config: RunConfig,
    teacher_path: str,
    data=None,
    teacher_outputs: dict | None = None,
    measure_arena: bool = True,
) -> dict[str, Any]:
    """One trial: distill (+ QAT) a fresh student with ``params``, convert to int8, measure on validation."""
    from edgedistill import stages
    from edgedistill.convert import convert_keras_model
    from edgedistill.tflite_model import LiteRTModel
    from edgedistill.training import accuracy, strategy_scope

    started = time.perf_counter()
    config = config.replace(**{key: float(value) for key, value in params.items()})
    data = data if data is not None else stages.load_data(config.data)[0]
    teacher = _teacher(teacher_path, data, teacher_outputs)
    seed = config.data.seed
    with strategy_scope(config.training.strategy):
        student, _, _ = stages.build_student(config.student, data)
        distilled, _ = stages.distill_student(config.distill, config.training, teacher, student, data, seed=seed)
        qat, _ = stages.quantize_student(config.qat, config.distill, config.training, teacher, distilled, data, seed=seed)
    final = qat if qat is not None else distilled.student
    int8 = convert_keras_model(
        final, quantization="int8", representative_data=data.x_train, input_range=(0.0, 255.0) if data.raw_bytes else None
    )  # byte data: int8 = byte - 128
    int8_predictions = LiteRTModel(int8).predict(data.x_val).argmax(axis=-1)
    record: dict[str, Any] = {
        "params": {key: float(value) for key, value in params.items()},
        "parameters": int(distilled.student.count_params()),
        "val_accuracy": accuracy(distilled.student, data.x_val, data.y_val),
        "qat_val_accuracy": accuracy(qat, data.x_val, data.y_val) if qat is not None else None,
        "int8_val_accuracy": float((int8_predictions == data.y_val).mean() * 100.0),
        "int8_bytes": len(int8),
        "arena_bytes": None,
        "epochs_run": len(distilled.history.get("loss", [])),
    }
    if measure_arena:
        from edgedistill.micro import measure_arena as measure

        record["arena_bytes"] = int(measure(int8)["arena_bytes"])
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def pareto_front(records: Sequence[dict], *, accuracy_key: str = "int8_val_accuracy", size_key: str = "int8_bytes") -> list[int]:
    """Indices of the records no other record dominates (at least as accurate and as small, better in one)."""
    front = []
    for i, a in enumerate(records):
        dominated = any(
            b[accuracy_key] >= a[accuracy_key]
            and b[size_key] <= a[size_key]
            and (b[accuracy_key] > a[accuracy_key] or b[size_key] < a[size_key])
            for j, b in enumerate(records)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: records[i][size_key])


# ---------------------------------------------------------------------------------------
# Backends


def _run_local(
    method: str, space: SearchSpace, num_trials: int, config: RunConfig, teacher_path: str, data, measure_arena: bool
) -> list[dict]:
    from edgedistill.models import load_model_file, predict_logits

    teacher = load_model_file(teacher_path)
    cached = {"train": predict_logits(teacher, data.x_train), "val": predict_logits(teacher, data.x_val)}

    def trial(params: dict, index: int) -> dict:
        logger.info(
            f"== trial {index + 1}: T={params['temperature']:.3g} alpha={params['student_loss_weight']:.3g} "
            f"width={params['student_width']:.3g}"
        )
        record = run_trial(
            params, config=config, teacher_path=teacher_path, data=data, teacher_outputs=cached, measure_arena=measure_arena
        )
        logger.info(
            f"   val {record['val_accuracy']:.2f}%, int8 val {record['int8_val_accuracy']:.2f}%, {record['int8_bytes']} bytes "
            f"int8, {record['seconds']:.1f} s"
        )
        return record

    if method in ("grid", "random"):
        trials = space.grid() if method == "grid" else space.sample(num_trials, config.data.seed)
        return [trial(params, index) for index, params in enumerate(trials)]
    optuna = _import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records: list[dict] = []

    def objective(optuna_trial) -> float:
        record = trial(_suggest(optuna_trial, space), len(records))
        records.append(record)
        return record["int8_val_accuracy"]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.data.seed))
    study.optimize(objective, n_trials=num_trials)
    return records


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise InputError("--method optuna needs Optuna: pip install 'edgedistill[search]' (or pip install optuna).") from None
    return optuna


def _suggest(trial, space: SearchSpace) -> dict[str, float]:
    def number(name: str, values: Sequence[float], *, log: bool = False) -> float:
        low, high = min(values), max(values)
        return float(low) if low == high else trial.suggest_float(name, low, high, log=log)

    return {
        "temperature": number("temperature", space.temperatures, log=True),
        "student_loss_weight": number("student_loss_weight", space.student_loss_weights),
        "student_width": float(trial.suggest_categorical("student_width", list(space.student_widths))),
    }


def _ray_trial(params: dict, options: dict, teacher_path: str, measure_arena: bool) -> None:
    """Ray Tune function trainable: one trial in a Ray worker (loads its own data and teacher)."""
    from ray import tune

    config = RunConfig.from_options(options)
    record = run_trial(params, config=config, teacher_path=teacher_path, measure_arena=measure_arena)
    flat = {key: value for key, value in record.items() if key != "params"}
    tune.report({**flat, "score": record["int8_val_accuracy"]})


def _check_reachable(address: str, timeout_seconds: float = 5.0) -> None:
    """Fail in seconds when nothing listens at a Ray address (Ray itself retries for minutes)."""
    import socket

    if address == "auto":  # Ray finds the cluster started on this machine
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray-address must be HOST:PORT of a Ray head node. Received: {address!r}.")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_seconds):
            pass
    except OSError as error:
        raise _connect_error(address, f"{error}.") from None


def _connect_error(address: str, reason: str) -> InputError:
    return InputError(
        f"Could not connect to the Ray cluster at --ray-address {address!r}: {reason} "
        "Expected the address of a running head node (`ray start --head` prints it)."
    )


def _import_ray_tune() -> tuple[Any, Any]:
    """The ``ray`` and ``ray.tune`` modules; InputError with the install command when Ray is missing."""
    try:
        import ray
        from ray import tune
    except ImportError:
        raise InputError("--backend ray needs Ray Tune: pip install 'ray[tune]'.") from None
    return ray, tune


def _connect_ray(ray: Any, ray_address: str | None) -> bool:
    """Start a local Ray runtime (or join the cluster at ``ray_address``) unless this process already has one.

    Returns whether this call started it: only then does the search shut it down afterwards.
    """
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if ray_address:
        _check_reachable(ray_address)
        options["address"] = ray_address
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError) as error:
        if not ray_address:
            raise
        raise _ray_init_error(ray_address, error) from None
    return True


def _ray_init_error(ray_address: str, error: Exception) -> InputError:
    """The one-line error of a cluster that refused ``ray.init``; token authentication is the usual cause."""
    reason = str(error).splitlines()[0][:200]
    if "auth" in str(error).lower():
        reason += (
            " The cluster uses token authentication: set RAY_AUTH_MODE=token and make its token available "
            "(~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)."
        )
    return _connect_error(ray_address, reason)


def _describe_cluster(ray: Any, *, started_here: bool, ray_address: str | None) -> dict[str, Any]:
    """Where the trials run (``address``, ``started_here``, ``nodes``, ``cpus``), logged and recorded in search.json."""
    cluster = {
        "address": ray.get_runtime_context().gcs_address,
        "started_here": started_here and not ray_address,
        "nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
        "cpus": ray.cluster_resources().get("CPU"),
    }
    logger.info(
        f"   ray: {'local runtime' if cluster['started_here'] else 'cluster'} at {cluster['address']}, "
        f"{cluster['nodes']} node(s), {cluster['cpus']:g} CPUs"
    )
    return cluster


@dataclasses.dataclass(frozen=True)
class _RayPlan:
    """What Ray Tune searches: the parameter space, how many samples it draws, and the search algorithm (None: Tune's own)."""

    param_space: dict[str, Any]
    num_samples: int
    search_alg: Any = None


def _ray_range(tune: Any, values: Sequence[float], *, log: bool = False) -> Any:
    """A Tune range over ``[min, max]`` of ``values``; the value itself when they are all equal."""
    low, high = min(values), max(values)
    if low == high:
        return low
    return tune.loguniform(low, high) if log else tune.uniform(low, high)


def _ray_plan(tune: Any, method: str, space: SearchSpace, num_trials: int, *, seed: int) -> _RayPlan:
    """The Tune search of ``method``: every combination, ``num_trials`` drawn ones, or Optuna's TPE over the ranges."""
    if method == "grid":
        grid = {
            "temperature": tune.grid_search(list(space.temperatures)),
            "student_loss_weight": tune.grid_search(list(space.student_loss_weights)),
            "student_width": tune.grid_search(list(space.student_widths)),
        }
        return _RayPlan(param_space=grid, num_samples=1)
    if method == "random":
        choices = {
            "temperature": tune.choice(list(space.temperatures)),
            "student_loss_weight": tune.choice(list(space.student_loss_weights)),
            "student_width": tune.choice(list(space.student_widths)),
        }
        return _RayPlan(param_space=choices, num_samples=num_trials)
    _import_optuna()
    from ray.tune.search.optuna import OptunaSearch

    ranges = {
        "temperature": _ray_range(tune, space.temperatures, log=True),
        "student_loss_weight": _ray_range(tune, space.student_loss_weights),
        "student_width": tune.choice(list(space.student_widths)),
    }
    search_alg = OptunaSearch(metric="score", mode="max", seed=seed)
    return _RayPlan(param_space=ranges, num_samples=num_trials, search_alg=search_alg)


def _fit_on_ray(tune: Any, plan: _RayPlan, config: RunConfig, teacher_path: str, output_dir: Path, measure_arena: bool) -> Any:
    """Run the trials of ``plan`` with Tune, one CPU each; Tune's ResultGrid."""
    trainable = tune.with_parameters(
        _ray_trial, options=config.to_options(), teacher_path=str(Path(teacher_path).resolve()), measure_arena=measure_arena
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=plan.param_space,
        tune_config=tune.TuneConfig(num_samples=plan.num_samples, search_alg=plan.search_alg, metric="score", mode="max"),
        run_config=tune.RunConfig(storage_path=str((output_dir / "ray").resolve()), name="search", verbose=0),
    )
    return tuner.fit()


# The figures of a trial record that Ray reports back as metrics (``params`` comes from the trial's config).
_RAY_RECORD_KEYS = (
    "parameters",
    "val_accuracy",
    "qat_val_accuracy",
    "int8_val_accuracy",
    "int8_bytes",
    "arena_bytes",
    "epochs_run",
    "seconds",
)


def _ray_records(results: Any) -> list[dict]:
    """The trial records of Tune's results, in the local backend's form; RuntimeError on the first failed trial."""
    records = []
    for result in results:
        if result.error is not None:
            raise RuntimeError(f"A Ray trial failed: {str(result.error).splitlines()[0][:300]}")
        metrics = dict(result.metrics)
        record = {key: metrics.get(key) for key in _RAY_RECORD_KEYS}
        record["params"] = {key: float(result.config[key]) for key in ("temperature", "student_loss_weight", "student_width")}
        records.append(record)
        logger.info(f"   ray trial {record['params']}: int8 val {record['int8_val_accuracy']:.2f}%")
    return records


def _run_ray(
    method: str,
    space: SearchSpace,
    num_trials: int,
    config: RunConfig,
    teacher_path: str,
    ray_address: str | None,
    output_dir: Path,
    measure_arena: bool,
) -> tuple[list[dict], dict[str, Any]]:
    """The trials' records, and where they ran (``address``, ``started_here``, ``nodes``, ``cpus``)."""
    ray, tune = _import_ray_tune()
    started_here = _connect_ray(ray, ray_address)
    cluster = _describe_cluster(ray, started_here=started_here, ray_address=ray_address)
    try:
        plan = _ray_plan(tune, method, space, num_trials, seed=config.data.seed)
        results = _fit_on_ray(tune, plan, config, teacher_path, output_dir, measure_arena)
        return _ray_records(results), cluster
    finally:
        if started_here:  # ends only what this search connected to; a Ray session of the caller is left alone
            ray.shutdown()


# ---------------------------------------------------------------------------------------
# Entry point


def run_search(
    config: RunConfig,
    space: SearchSpace,
    *,
    method: str = "grid",
    num_trials: int = 10,
    backend: str = "local",
    ray_address: str | None = None,
    output_dir: str | Path = "search",
    measure_arena: bool = True,
) -> dict[str, Any]:
    """Run the search; write ``search.json``, ``search.md`` (and ``pareto.png``) in ``output_dir``; return the result.

    Example::

        result = run_search(search_config(data="digits", epochs=10), SearchSpace(temperatures=(2, 4)), method="grid")
        result["pareto_front"]  # trials on the accuracy-vs-bytes front, smallest first
    """
    _check_search_arguments(method, backend, num_trials)
    from edgedistill import stages
    from edgedistill.tflite_model import runtime_versions

    stages.check_run_options(config)
    if stages.is_auto_loss(config.distill):  # its probe would overrule the temperatures and weights searched
        raise InputError(
            f"search varies --temperature and --student-loss-weight; --distillation-loss {config.distill.distillation_loss} "
            "would choose them itself. Name the loss (e.g. --distillation-loss logits)."
        )

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data, _ = stages.load_data(config.data)
    teacher_path = prepare_teacher(config, data, output_dir)
    cluster: dict[str, Any] = {}
    if backend == "local":
        records = _run_local(method, space, num_trials, config, teacher_path, data, measure_arena)
    else:
        records, cluster = _run_ray(method, space, num_trials, config, teacher_path, ray_address, output_dir, measure_arena)
    front = pareto_front(records)
    best = max(range(len(records)), key=lambda i: records[i]["int8_val_accuracy"])
    result = {
        "schema_version": 1,
        "method": method,
        "backend": backend,
        **({"ray": cluster} if cluster else {}),
        "num_trials": len(records),
        "settings": config.to_options() | {"measure_arena": measure_arena},
        "space": dataclasses.asdict(space),
        "data": data.summary(),
        "teacher": teacher_path,
        "score": "int8_val_accuracy (validation split, int8 model on LiteRT)",
        "trials": records,
        "pareto_front": front,
        "best": best,
        "versions": runtime_versions(),
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    write_search_report(result, output_dir)
    return result


def _check_search_arguments(method: str, backend: str, num_trials: int) -> None:
    """Bad method, backend or trial count (and Optuna missing for ``optuna``): InputError before any data is loaded."""
    if method not in METHODS:
        raise InputError(f"Unknown search method {method!r}. Expected one of: {', '.join(METHODS)}.")
    if backend not in BACKENDS:
        raise InputError(f"Unknown backend {backend!r}. Expected one of: {', '.join(BACKENDS)}.")
    if not isinstance(num_trials, int) or not 1 <= num_trials <= MAX_TRIALS:
        raise InputError(f"`num_trials` must be an integer in [1, {MAX_TRIALS}]. Received: num_trials={num_trials!r}.")
    if method == "optuna":
        _import_optuna()


def write_search_report(result: dict[str, Any], output_dir: Path) -> None:
    """``search.json``, ``search.md`` and (with matplotlib) ``pareto.png``."""
    from edgedistill.fileio import write_text_atomic

    output_dir = Path(output_dir)
    write_text_atomic(output_dir / "search.json", json.dumps(result, indent=2))
    front = set(result["pareto_front"])
    lines = [
        f"# Search: {result['method']} on {result['backend']}, {result['num_trials']} trials",
        "",
        f"Data {result['data']['name']} ({result['data']['num_train']} train / {result['data']['num_val']} val); "
        f"score: {result['score']}. Pareto front (accuracy vs int8 bytes) marked *.",
        "",
        "| # | T | alpha | width | parameters | float val % | int8 val % | int8 bytes | arena bytes | s | front |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, record in enumerate(result["trials"]):
        params = record["params"]
        lines.append(
            f"| {index + 1} | {params['temperature']:.3g} | {params['student_loss_weight']:.3g} | {params['student_width']:.3g} "
            f"| "
            f"{record['parameters']} | {record['val_accuracy']:.2f} | {record['int8_val_accuracy']:.2f} "
            f"| {record['int8_bytes']} | "
            f"{record['arena_bytes'] if record['arena_bytes'] is not None else '-'} | {record['seconds']:.1f} "
            f"| {'*' if index in front else ''} |"
        )
    if _plot_pareto(result, output_dir / "pareto.png"):
        lines += ["", "![Pareto front](pareto.png)"]
    write_text_atomic(output_dir / "search.md", "\n".join(lines) + "\n")


def _plot_pareto(result: dict[str, Any], path: Path) -> bool:
    # A Figure with its own Agg canvas: no pyplot, so a notebook's backend is left alone.
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    trials = result["trials"]
    sizes = [t["int8_bytes"] / 1024 for t in trials]
    accuracies = [t["int8_val_accuracy"] for t in trials]
    front = result["pareto_front"]
    figure = Figure(figsize=(5, 3.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.scatter(sizes, accuracies, c="lightgray", edgecolors="gray", label="trials")
    axes.plot([sizes[i] for i in front], [accuracies[i] for i in front], "o-", color="tab:red", label="Pareto front")
    axes.set_xlabel("int8 model size (KiB)")
    axes.set_ylabel("int8 validation accuracy (%)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return True


__all__ = [
    "SearchSpace",
    "SEARCH_DEFAULTS",
    "search_config",
    "prepare_teacher",
    "run_search",
    "run_trial",
    "pareto_front",
    "write_search_report",
    "METHODS",
    "BACKENDS",
]
