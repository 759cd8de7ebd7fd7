"""`edgedistill search`: grid, random and Optuna on 3 tiny trials; the Pareto front; bad input.

Each trial distills a width-0.125/0.25 cnn student for 1 epoch on digits; the teacher is the
session's tiny cnn (conftest ``teacher_file``), given as a file as users do.
"""

from __future__ import annotations

import json

import pytest

from edgedistill.errors import InputError


def _settings(teacher_file, **overrides):
    from edgedistill.search import search_config

    return search_config(**{"teacher": str(teacher_file), "student_preset": "cnn", "epochs": 1, "patience": 0, **overrides})


def _space():
    from edgedistill.search import SearchSpace

    return SearchSpace(temperatures=(2.0, 4.0), student_loss_weights=(0.5,), student_widths=(0.125, 0.25))


def _check(result, output_dir, expected_trials):
    assert result["num_trials"] == expected_trials
    for record in result["trials"]:
        assert 0.0 <= record["int8_val_accuracy"] <= 100.0 and record["int8_bytes"] > 0
    # the Pareto front: no trial on it is dominated, every trial off it is
    trials, front = result["trials"], set(result["pareto_front"])
    for i, a in enumerate(trials):
        dominated = any(
            b["int8_val_accuracy"] >= a["int8_val_accuracy"]
            and b["int8_bytes"] <= a["int8_bytes"]
            and b != a
            and (b["int8_val_accuracy"] > a["int8_val_accuracy"] or b["int8_bytes"] < a["int8_bytes"])
            for b in trials
        )
        assert (i in front) == (not dominated)
    saved = json.loads((output_dir / "search.json").read_text())
    assert saved["trials"] == result["trials"]
    assert "| front |" in (output_dir / "search.md").read_text()


def test_grid_search_runs_every_combination(teacher_file, tmp_path):
    from edgedistill.search import SearchSpace, run_search

    space = SearchSpace(temperatures=(2.0, 4.0), student_loss_weights=(0.5,), student_widths=(0.125,))
    result = run_search(_settings(teacher_file), space, method="grid", output_dir=tmp_path, measure_arena=True)
    _check(result, tmp_path, 2)
    assert sorted(r["params"]["temperature"] for r in result["trials"]) == [2.0, 4.0]
    assert all(r["arena_bytes"] > 0 for r in result["trials"])
    assert (tmp_path / "pareto.png").stat().st_size > 0


@pytest.mark.slow  # > 30 s on the shared 2-core machine
def test_random_search(teacher_file, tmp_path):
    from edgedistill.search import run_search

    result = run_search(
        _settings(teacher_file), _space(), method="random", num_trials=3, output_dir=tmp_path, measure_arena=False
    )
    _check(result, tmp_path, 3)
    combos = {tuple(sorted(r["params"].items())) for r in result["trials"]}
    assert len(combos) == 3  # drawn without replacement


@pytest.mark.slow  # > 30 s on the shared 2-core machine
def test_optuna_search(teacher_file, tmp_path):
    pytest.importorskip("optuna")
    from edgedistill.search import run_search

    result = run_search(
        _settings(teacher_file), _space(), method="optuna", num_trials=3, output_dir=tmp_path, measure_arena=False
    )
    _check(result, tmp_path, 3)
    for record in result["trials"]:  # optuna searches the range the values span
        assert 2.0 <= record["params"]["temperature"] <= 4.0
        assert record["params"]["student_width"] in (0.125, 0.25)


def test_pareto_front():
    from edgedistill.search import pareto_front

    records = [
        {"int8_val_accuracy": 90.0, "int8_bytes": 100},
        {"int8_val_accuracy": 80.0, "int8_bytes": 50},
        {"int8_val_accuracy": 85.0, "int8_bytes": 120},  # dominated by the first
        {"int8_val_accuracy": 95.0, "int8_bytes": 300},
    ]
    assert pareto_front(records) == [1, 0, 3]


def test_search_bad_input(teacher_file, tmp_path):
    from edgedistill.search import SearchSpace, run_search, search_config

    with pytest.raises(InputError, match="Unknown search method 'bayes'"):
        run_search(_settings(teacher_file), _space(), method="bayes", output_dir=tmp_path)
    with pytest.raises(InputError, match="student_loss_weights"):
        SearchSpace(student_loss_weights=(1.5,))
    with pytest.raises(InputError, match="Unknown model preset 'tiny'"):
        run_search(_settings(teacher_file, student_preset="tiny"), _space(), output_dir=tmp_path)
    with pytest.raises(InputError, match="strategy"):
        search_config(strategy="tpu")


def test_search_cli_help_and_bad_values():
    from click.testing import CliRunner

    from edgedistill.commands.search import search

    runner = CliRunner()
    assert "Pareto" in runner.invoke(search, ["--help"]).output
    result = runner.invoke(search, ["--temperatures", "two"])
    assert result.exit_code == 2 and "comma-separated numbers" in result.output


@pytest.mark.slow
def test_ray_backend_local_runtime(teacher_file, tmp_path):
    """The same search on a local Ray runtime (started and stopped by the search)."""
    pytest.importorskip("ray.tune")
    from edgedistill.search import SearchSpace, run_search

    space = SearchSpace(temperatures=(2.0,), student_loss_weights=(0.5,), student_widths=(0.125, 0.25))
    result = run_search(_settings(teacher_file), space, method="grid", backend="ray", output_dir=tmp_path, measure_arena=False)
    _check(result, tmp_path, 2)
    assert sorted(r["params"]["student_width"] for r in result["trials"]) == [0.125, 0.25]


@pytest.fixture()
def ray_head_node(tmp_path):
    """A real Ray head node started with `ray start --head`, as on a cluster's head machine.

    Ray's `ray start` turns token authentication on (the token goes to ~/.ray/auth_token); its
    clients need RAY_AUTH_MODE=token in their environment, as the README tells users.
    """
    import os

    import shutil
    import socket
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("ray.tune")
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_cli is None:
        pytest.skip("needs the `ray` command line (pip install 'ray[tune]')")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        ray_cli,
        "start",
        "--head",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--num-cpus",
        "2",
        "--include-dashboard",
        "false",
        "--disable-usage-stats",
    ]
    # Processes a local runtime of an earlier test may have left (they break a new head node's scheduling).
    subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
    started = subprocess.run(command, capture_output=True, text=True, timeout=180, env={**os.environ, "RAY_AUTH_MODE": "token"})
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)


@pytest.mark.slow
def test_ray_backend_on_a_cluster_address(teacher_file, tmp_path, ray_head_node):
    """`edgedistill search --backend ray --ray-address`: the trials run on a separately started Ray
    cluster, which stays up afterwards. A fresh process, as users run it (a process that already
    started and shut down a local Ray runtime cannot then schedule on a cluster: Ray 2.60)."""
    import os
    import subprocess
    import sys

    command = [
        sys.executable,
        "-c",
        "from edgedistill.cli import main; main()",
        "search",
        "--data",
        "digits",
        "--teacher",
        str(teacher_file),
        "--student-preset",
        "cnn",
        "--temperatures",
        "2",
        "--student-loss-weights",
        "0.5",
        "--widths",
        "0.125",
        "--epochs",
        "1",
        "--patience",
        "0",
        "--qat-epochs",
        "0",
        "--no-measure-arena",
        "--backend",
        "ray",
        "--ray-address",
        ray_head_node,
        "--output-dir",
        str(tmp_path),
    ]
    environment = {**os.environ, "RAY_AUTH_MODE": "token"}  # what a user of a `ray start` cluster sets
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    result = json.loads((tmp_path / "search.json").read_text())
    _check(result, tmp_path, 1)
    # The head node reports its own IP (not necessarily loopback) with the port it was started on.
    assert result["ray"]["address"].endswith(":" + ray_head_node.rsplit(":", 1)[1])
    assert result["ray"]["started_here"] is False
    assert result["ray"]["nodes"] == 1 and result["ray"]["cpus"] == 2


@pytest.mark.slow
def test_ray_address_without_a_cluster_is_a_clear_error(teacher_file, tmp_path):
    pytest.importorskip("ray.tune")
    import socket

    from edgedistill.search import SearchSpace, run_search

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here
    space = SearchSpace(temperatures=(2.0,), student_loss_weights=(0.5,), student_widths=(0.125,))
    with pytest.raises(InputError, match=f"Could not connect to the Ray cluster at --ray-address '127.0.0.1:{port}'"):
        run_search(
            _settings(teacher_file),
            space,
            backend="ray",
            ray_address=f"127.0.0.1:{port}",
            output_dir=tmp_path,
            measure_arena=False,
        )
