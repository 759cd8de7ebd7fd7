"""`--distillation-loss auto` (issue 21): a short probe of the candidate losses on the validation split, the winner
trained in full with the options it names; bad values are one-line errors before anything trains."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY_RUN, invoke


def _without_loss(arguments: list[str]) -> list[str]:
    index = arguments.index("--distillation-loss")
    return arguments[:index] + arguments[index + 2 :]


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("runs")
    run = [*_without_loss(TINY_RUN), "--epochs", "4", "--distillation-loss", "auto:epochs=2", "--no-bench"]
    result = invoke("run", *run, "--output-dir", output_dir, "--run-name", "auto")
    return result, output_dir / "auto"


def test_run_with_auto_reports_the_probe_and_trains_with_the_winner(auto_run):
    result, run_dir = auto_run
    assert result.exit_code == 0, result.output
    assert "loss probe: distilling with" in result.output
    report = json.loads((run_dir / "report.json").read_text())
    probe = report["student"]["loss_probe"]
    from edgedistill.config import LOSS_CANDIDATES

    assert probe["epochs"] == 2 and set(probe["candidates"]) == set(LOSS_CANDIDATES)
    scores = {name: entry["val_accuracy"] for name, entry in probe["candidates"].items()}
    assert all(0 <= score <= 100 for score in scores.values())
    assert scores[probe["chosen"]] == max(scores.values())
    assert probe["seconds"] >= sum(entry["seconds"] for entry in probe["candidates"].values()) - 0.2
    assert report["student"]["distill_epochs"] == 4  # the winner trained in full after the probe, not 2 epochs
    assert report["qat"]["epochs"] == 1
    markdown = (run_dir / "report.md").read_text()
    assert f"Loss chosen by `--distillation-loss auto`: {probe['chosen']}" in markdown
    options = LOSS_CANDIDATES[probe["chosen"]]
    assert f"hard-label weight {options['student_loss_weight']}" in markdown  # the chosen weight, not the config's


def test_resume_after_the_distill_stage_keeps_the_chosen_loss(auto_run):
    """QAT after `run --resume` needs the loss the probe chose, which is not in config.yaml (that says `auto`): it
    comes back from the distill stage's report section, and the probe does not run again."""
    result, run_dir = auto_run
    assert result.exit_code == 0, result.output
    before = json.loads((run_dir / "report.json").read_text())["student"]["loss_probe"]
    progress_path = run_dir / "progress.json"
    progress = json.loads(progress_path.read_text())
    progress["stages"] = {name: value for name, value in progress["stages"].items() if name in ("data", "teacher", "distill")}
    progress_path.write_text(json.dumps(progress))
    resumed = invoke("run", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output
    assert "loss probe" not in resumed.output
    again = json.loads((run_dir / "report.json").read_text())
    assert "distill" in again["resumed"]["restored_stages"] and again["qat"]["epochs"] == 1
    assert again["student"]["loss_probe"] == before


class _FakeResult:
    def __init__(self, student, accuracy: float) -> None:
        self.student, self.history = student, {"val_accuracy": [0.1, accuracy]}


def _probe_with(monkeypatch, accuracies: dict[str, float]):
    """choose_loss with distill_student replaced by one that scribbles on the student's weights and reports the
    given final validation accuracy per loss: what is chosen, the report, and whether the weights came back."""
    from edgedistill import stages
    from edgedistill.config import LOSS_CANDIDATES, DistillConfig, TrainingConfig
    from edgedistill.models import build_model

    by_loss = {options["distillation_loss"]: accuracies[name] for name, options in LOSS_CANDIDATES.items()}
    seen_epochs = []

    def fake_distill(config, training, teacher, student, data, *, seed=0, log_dir=None, schedule_epochs=None):
        seen_epochs.append((config.epochs, schedule_epochs))
        student.set_weights([np.full_like(w, 7.0) for w in student.get_weights()])
        return _FakeResult(student, by_loss[config.distillation_loss]), {}

    monkeypatch.setattr(stages, "distill_student", fake_distill)
    student = build_model("mlp", (8, 8, 1), 10, width=0.25)
    initial = [w.copy() for w in student.get_weights()]
    config = DistillConfig(distillation_loss="auto", epochs=40, temperature=9.0, final_temperature=1.0)
    chosen, report = stages.choose_loss(config, TrainingConfig(), None, student, None)
    restored = all(np.array_equal(a, b) for a, b in zip(initial, student.get_weights()))
    return chosen, report, restored, seen_epochs


def test_the_probe_keeps_the_best_candidate_and_gives_back_the_initial_weights(monkeypatch):
    from edgedistill.config import LOSS_CANDIDATES

    chosen, report, restored, seen_epochs = _probe_with(monkeypatch, {"dist_t4": 0.90, "logits_t20": 0.93})
    assert report["chosen"] == "logits_t20" and restored
    # The default: AUTO_PROBE_EPOCHS, a quarter of 40 being more; each the first 5 of a 40-epoch schedule.
    assert seen_epochs == [(5, 40), (5, 40)]
    assert (chosen.distillation_loss, chosen.temperature, chosen.student_loss_weight) == tuple(
        LOSS_CANDIDATES["logits_t20"][key] for key in ("distillation_loss", "temperature", "student_loss_weight")
    )
    assert chosen.final_temperature is None and chosen.epochs == 40  # the full run's epochs, not the probe's
    assert report["candidates"]["dist_t4"]["val_accuracy"] == 90.0


def test_a_tie_keeps_the_default(monkeypatch):
    _, report, _, _ = _probe_with(monkeypatch, {"dist_t4": 0.91, "logits_t20": 0.91})
    assert report["chosen"] == "dist_t4"


def test_the_first_candidate_is_the_default_loss():
    """A tie keeps the first candidate, which must be what a run without --distillation-loss uses."""
    from edgedistill.config import LOSS_CANDIDATES, DistillConfig

    first = next(iter(LOSS_CANDIDATES.values()))
    default = DistillConfig()
    assert first == {key: getattr(default, key) for key in first}


def test_probe_epochs_default_to_a_quarter_of_short_runs():
    from edgedistill.config import DistillConfig
    from edgedistill.stages import auto_probe_epochs

    assert auto_probe_epochs(DistillConfig(distillation_loss="auto", epochs=8)) == 2
    assert auto_probe_epochs(DistillConfig(distillation_loss="auto", epochs=400)) == 5
    assert auto_probe_epochs(DistillConfig(distillation_loss="auto:epochs=7", epochs=400)) == 7


def test_resumed_run_without_the_probe_in_its_report_is_refused():
    from edgedistill.config import DistillConfig
    from edgedistill.errors import StageError
    from edgedistill.stages import chosen_options

    config = DistillConfig(distillation_loss="auto")
    assert chosen_options(config, {"chosen": "logits_t20"}).temperature == 20.0
    assert chosen_options(DistillConfig(), None) == DistillConfig()
    with pytest.raises(StageError, match="not in this run's report"):
        chosen_options(config, None)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--distillation-loss", "auto:epochs=0"], "the probe's epochs must be a whole number >= 1 and below --epochs (40)"),
        (["--distillation-loss", "auto:epochs=2.5"], "Received: 2.5"),
        (["--distillation-loss", "auto:epochs=40"], "below --epochs (40)"),
        (["--distillation-loss", "auto:rounds=2"], "auto takes `epochs=N` only. Received: rounds"),
        (["--distillation-loss", "auto:epochs"], "is not key=value"),
        (["--distillation-loss", "auto", "--scheme", "mutual"], "probes losses of the standard scheme without pruning"),
        (["--distillation-loss", "auto", "--prune-sparsity", "0.5"], "prune_sparsity=0.5"),
        (["--distillation-loss", "automatic"], "or auto (a short probe chooses between dist and logits)"),
    ],
)
def test_bad_auto_options_are_one_line_errors(arguments, message, tmp_path):
    result = invoke("run", "--output-dir", tmp_path, *arguments)
    assert result.exit_code == 2, result.output
    assert message in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # refused before a run folder was made


def test_quantize_refuses_auto(tmp_path, teacher_file):
    student = tmp_path / "student.keras"
    student.write_bytes(teacher_file.read_bytes())
    result = invoke(
        "quantize", "--teacher", teacher_file, "--student", student, "--distillation-loss", "auto", "-o", tmp_path / "q.h5"
    )
    assert result.exit_code == 2, result.output
    assert "auto chooses a loss while distilling" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "q.h5").exists()


def test_search_refuses_auto(tmp_path):
    from edgedistill.errors import InputError
    from edgedistill.search import SearchSpace, run_search, search_config

    with pytest.raises(InputError, match="would choose them itself"):
        run_search(search_config(data="digits", distillation_loss="auto"), SearchSpace(), output_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_temperature_with_auto_is_reported_as_ignored(caplog):
    from edgedistill.config import RunConfig
    from edgedistill.stages import warn_ineffective_options

    config = RunConfig.from_options({"distillation_loss": "auto", "temperature": 8.0, "student_loss_weight": 0.3})
    assert set(warn_ineffective_options(config)) == {"temperature", "student_loss_weight"}
    assert "is set by the loss --distillation-loss auto chooses" in caplog.text


def test_distill_command_probes_for_a_keras3_student(tmp_path, teacher_file):
    """The stage command chooses too, and the probe resets a Keras 3 student's weights as it does a tf_keras one's."""
    from tests.test_keras3_cli import _save_keras3_student

    student = _save_keras3_student(tmp_path / "k3.keras")
    output = tmp_path / "distilled.keras"
    quick = ["--max-train-samples", "600", "--verbose", "0", "--epochs", "3"]
    probe = ["--distillation-loss", "auto:epochs=1"]
    result = invoke("distill", "--teacher", teacher_file, "--student", student, *quick, *probe, "-o", output)
    assert result.exit_code == 0, result.output
    assert "(chosen by a 1-epoch probe" in result.output and output.exists()
