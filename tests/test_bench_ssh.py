"""The ssh target against a real OpenSSH server on loopback (tests/sshd_fixture.py), as if it were a Pi."""

from __future__ import annotations

import glob
import re
import json
import shutil
import sys
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner

from bench_helpers import free_port, make_models
from edgedistill.bench import run_benchmark, run_grid
from edgedistill.cli import cli
from edgedistill.errors import InputError, StageError
from edgedistill.targets import TargetOptions, make_target
from edgedistill.targets.base import BenchConfig
from sshd_fixture import keygen, start_sshd

pytestmark = pytest.mark.skipif(
    shutil.which("sshd") is None and not __import__("os").path.exists("/usr/sbin/sshd"),
    reason="needs openssh-server (apt-get install openssh-server)",
)

# The "device" is this machine: its Python with ai-edge-litert plays the Pi's venv.
DEVICE_PYTHON = sys.executable


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("ssh_models"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except (RuntimeError, PermissionError) as error:
        pytest.skip(f"cannot start sshd here: {error}")
    yield server
    server.stop()


def options(server, name="pi", **overrides):
    config = overrides.pop("ssh_config", None) or server.client_config(name)
    return TargetOptions(
        ssh_config=str(config), remote_python=overrides.pop("remote_python", DEVICE_PYTHON), connect_timeout_s=5, **overrides
    )


def remote_dirs():
    return set(glob.glob("/tmp/edgedistill.*"))


def test_measures_over_ssh_and_cleans_up(server, models, tmp_path):
    before = remote_dirs()
    results = tmp_path / "bench.jsonl"
    m = run_benchmark(
        models["tiny_int8"], target=make_target("ssh://pi", options(server)), num_runs=20, warmup_runs=2, results_path=results
    )
    assert m.ok and m.kind == "measured" and len(m.samples_ms) == 20
    assert m.runtime == "ai_edge_litert" and m.peak_rss_bytes > 0
    device = m.target["device"]
    assert device["machine"] and device["num_cores"] >= 1 and "Linux" in device["uname"]
    assert m.target["name"] == "ssh" and m.target["host"] == "pi"
    assert json.loads(results.read_text())["target"]["device"]["uname"] == device["uname"]
    assert remote_dirs() == before  # the private folder on the device is gone


def test_spec_with_user_and_port(server, models):
    config = server.folder / "ssh_config_plain"
    config.write_text(
        f"Host 127.0.0.1\n  IdentityFile {server.client_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {server.known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
    )
    target = make_target(f"ssh://{server.user}@127.0.0.1:{server.port}", options(server, ssh_config=config))
    assert run_benchmark(models["tiny_int8"], target=target, num_runs=3).ok


def test_model_path_with_spaces_and_shell_characters(server, models, tmp_path):
    import pathlib

    # Unquoted, `$(touch edgedistill-pwned)` would create the file in the remote shell's folder (home).
    marker = pathlib.Path.home() / "edgedistill-pwned"
    marker.unlink(missing_ok=True)
    folder = tmp_path / "my models"
    folder.mkdir()
    model = folder / "a b;$(touch edgedistill-pwned) 'q'&.tflite"
    shutil.copy(models["tiny_int8"], model)
    m = run_benchmark(model, target=make_target("ssh://pi", options(server)), num_runs=3)
    assert m.ok
    assert not marker.exists()


def test_unknown_host_key_refused_unless_opted_in(server, models, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = server.client_config("fresh", known_hosts=empty)
    with pytest.raises(StageError, match="host key is not in known_hosts.*--accept-new-host-key"):
        run_benchmark(models["tiny_int8"], target=make_target("ssh://fresh", options(server, ssh_config=config)), num_runs=3)
    assert empty.read_text() == ""
    m = run_benchmark(
        models["tiny_int8"],
        num_runs=3,
        target=make_target("ssh://fresh", options(server, ssh_config=config, accept_new_host_key=True)),
    )
    assert m.ok
    assert server.host_public_key.split()[1] in empty.read_text()  # now recorded for next time


def test_refused_authentication(server, models, tmp_path):
    stranger = tmp_path / "stranger_ed25519"
    keygen(stranger)
    config = server.client_config("stranger", key=stranger)
    with pytest.raises(StageError, match="authentication refused.*ssh-copy-id"):
        run_benchmark(models["tiny_int8"], target=make_target("ssh://stranger", options(server, ssh_config=config)), num_runs=3)


def test_unreachable_host(server, models):
    config = server.client_config("nobody", port=free_port())  # nothing listens there
    with pytest.raises(StageError, match="cannot reach the device \\(Connection refused\\)"):
        run_benchmark(models["tiny_int8"], target=make_target("ssh://nobody", options(server, ssh_config=config)), num_runs=3)


def test_remote_without_interpreter(server, models):
    system_python = "/usr/bin/python3"
    m = run_benchmark(
        models["tiny_int8"],
        num_runs=3,
        raise_on_failure=False,
        target=make_target("ssh://pi", options(server, remote_python=system_python)),
    )
    if m.ok:
        pytest.skip("/usr/bin/python3 has a TFLite interpreter here")
    assert "has no TFLite interpreter" in m.error and "-m pip install ai-edge-litert" in m.error
    assert "--remote-python" in m.error
    assert m.target["device"]["machine"]  # the device was reached and described


def test_remote_python_missing(server, models):
    m = run_benchmark(
        models["tiny_int8"],
        num_runs=3,
        raise_on_failure=False,
        target=make_target("ssh://pi", options(server, remote_python="/opt/no such/python3")),
    )
    assert m.status == "failed" and "was not found on the device" in m.error and "--remote-python" in m.error


def test_bad_specs(server):
    with pytest.raises(InputError, match="Expected ssh://\\[user@\\]host\\[:port\\]"):
        make_target("ssh://", TargetOptions())
    with pytest.raises(InputError, match="Bad port"):
        make_target("ssh://pi@host:notaport", TargetOptions())
    with pytest.raises(InputError, match="ssh config file not found"):
        make_target("ssh://pi", TargetOptions(ssh_config="/nonexistent/config"))


def test_device_disappears_mid_run_grid_goes_on(server, models, tmp_path):
    """The link drops while the first pair runs: its samples so far are kept, it is marked failed,
    and the grid still measures the other target."""
    results = tmp_path / "bench.jsonl"
    config = BenchConfig(num_runs=1, min_secs=30, timeout_s=60)
    target_options = options(server)
    dropped = []

    def drop_link():
        # Wait until the runner runs on the "device" (a loaded machine can take seconds to connect and
        # deploy), then long enough for it to load the model and flush samples (about once a second).
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            found = subprocess.run(["pgrep", "-f", "edgedistill_runner.py"], capture_output=True)
            if found.returncode == 0:
                break
            time.sleep(0.2)
        time.sleep(6.0)
        dropped.append(server.drop_connections())

    killer = threading.Thread(target=drop_link)
    killer.start()
    measured = run_grid([models["conv_int8"]], ["ssh://pi"], config, results_path=results, target_options=target_options)
    killer.join()
    assert dropped and dropped[0] >= 1
    (lost,) = measured
    assert lost.status == "failed" and "connection lost" in lost.error
    assert len(lost.samples_ms) > 0 and lost.latency_ms["p50"] is not None
    # The grid goes on: the next pair in the same run is measured normally.
    rest = run_grid(
        [models["tiny_int8"], models["tiny_float"]],
        ["ssh://pi", "local"],
        BenchConfig(num_runs=3),
        results_path=results,
        target_options=target_options,
        jobs=2,
    )
    assert all(m.ok for m in rest) and len(rest) == 4
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [line["status"] for line in lines].count("failed") == 1 and len(lines) == 5


def test_grid_lost_device_mid_grid(server, models, tmp_path):
    """A device lost between pairs: the remaining pairs on it fail with a clear message, others go on."""
    results = tmp_path / "bench.jsonl"
    target_options = options(server)
    seen = []

    def on_result(measurement):
        seen.append(measurement)
        if len(seen) == 1:
            server.drop_connections()

    # ssh pairs run one after another on one session; the link drops after the first.
    measured = run_grid(
        [models["tiny_int8"], models["tiny_float"]],
        ["ssh://pi"],
        BenchConfig(num_runs=3),
        results_path=results,
        target_options=target_options,
        on_result=on_result,
    )
    assert measured[0].ok
    # The second pair reconnects (ControlMaster=auto) or fails cleanly; either way it is recorded.
    assert len(results.read_text().splitlines()) == 2
    assert measured[1].ok or "ssh" in measured[1].error or "pi" in measured[1].error


def test_cli_over_ssh(server, models, tmp_path):
    results = tmp_path / "bench.jsonl"
    outcome = CliRunner().invoke(
        cli,
        [
            "bench",
            str(models["tiny_int8"]),
            "--target",
            "ssh://pi",
            "--ssh-config",
            str(server.client_config("pi")),
            "--remote-python",
            DEVICE_PYTHON,
            "--num-runs",
            "5",
            "--results",
            str(results),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert "tiny_int8.tflite" in outcome.output and "ssh://pi" in outcome.output
    assert json.loads(results.read_text())["status"] == "ok"


def test_cli_unknown_host_key_exit_code(server, models, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    outcome = CliRunner().invoke(
        cli,
        [
            "bench",
            str(models["tiny_int8"]),
            "--target",
            "ssh://fresh2",
            "--ssh-config",
            str(server.client_config("fresh2", known_hosts=empty)),
            "--remote-python",
            DEVICE_PYTHON,
            "--num-runs",
            "3",
            "--results",
            str(tmp_path / "r.jsonl"),
        ],
    )
    assert outcome.exit_code == 1
    assert "Error: ssh://fresh2: the device's host key is not in known_hosts" in outcome.output
    assert "--accept-new-host-key" in outcome.output
    assert "Traceback" not in outcome.output


# -- issue 12: hostile model names, changed host keys, nothing left behind -------------------------------------------

HOSTILE_NAME = "m;cd;touch pwned1;x $(touch pwned2) `touch pwned3` 'q\"&|<>*?[a]{b,c}~!#.tflite"
MARKERS = ("pwned1", "pwned2", "pwned3")


def _scp_wrapper(folder, protocol):
    """An `scp` first on PATH that forces `-O` (legacy protocol: the remote shell reads the path, as with
    OpenSSH clients before 9.0, e.g. Ubuntu 22.04) or `-s` (SFTP); it logs each call."""
    import os

    real = shutil.which("scp")
    folder.mkdir()
    wrapper = folder / "scp"
    flag = "-O" if protocol == "legacy" else "-s"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {folder}/calls\nexec {real} {flag} "$@"\n')
    wrapper.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize("protocol", ["sftp", "legacy"])
def test_shell_metacharacters_in_model_name_under_both_scp_protocols(server, models, tmp_path, monkeypatch, protocol):
    import pathlib

    places = [pathlib.Path.home(), pathlib.Path("/tmp"), pathlib.Path.cwd()]
    for place in places:
        for marker in MARKERS:
            (place / marker).unlink(missing_ok=True)
    monkeypatch.setenv("PATH", _scp_wrapper(tmp_path / "bin", protocol))
    model = tmp_path / HOSTILE_NAME
    shutil.copy(models["tiny_int8"], model)
    other = tmp_path / "other" / HOSTILE_NAME  # same name, other bytes: must not be confused with the first
    other.parent.mkdir()
    shutil.copy(models["conv_int8"], other)
    measured = run_grid([model, other], ["ssh://pi"], BenchConfig(num_runs=3), target_options=options(server))
    assert [m.ok for m in measured] == [True, True], [m.error for m in measured]
    # Each measured its own bytes on the device (tiny is 8x8x1, conv 32x32x3).
    assert [m.extra["inputs"][0]["shape"] for m in measured] == [[1, 8, 8, 1], [1, 32, 32, 3]]
    calls = (tmp_path / "bin" / "calls").read_text()
    assert "edgedistill." in calls  # the wrapper (and so the protocol under test) was used
    for place in places:
        for marker in MARKERS:
            assert not (place / marker).exists(), f"{place / marker}: the name ran as a command"


def test_remote_file_names_are_safe_and_distinct():
    from edgedistill.targets.ssh import remote_file_name

    names = {remote_file_name(i, HOSTILE_NAME) for i in range(3)}
    assert len(names) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in names)
    assert "/" not in remote_file_name(0, "../../.bashrc")  # stays inside the session folder


def test_changed_host_key_is_reported_as_changed_never_trusted(models, tmp_path):
    try:
        own = start_sshd(tmp_path / "sshd")
    except (RuntimeError, PermissionError) as error:
        pytest.skip(f"cannot start sshd here: {error}")
    try:
        assert run_benchmark(models["tiny_int8"], num_runs=2, target=make_target("ssh://dev", options(own, "dev"))).ok
        recorded = own.known_hosts.read_text()
        own.rotate_host_key()
        for accept_new in (False, True):
            target = make_target("ssh://dev", options(own, "dev", accept_new_host_key=accept_new))
            with pytest.raises(StageError) as caught:
                run_benchmark(models["tiny_int8"], num_runs=2, target=target)
            message = str(caught.value)
            assert "host key has CHANGED" in message and "man-in-the-middle" in message
            assert "to trust it" not in message and "not in known_hosts" not in message
        assert own.known_hosts.read_text() == recorded  # nothing was trusted or rewritten
        outcome = CliRunner().invoke(
            cli,
            [
                "bench",
                str(models["tiny_int8"]),
                "--target",
                "ssh://dev",
                "--ssh-config",
                str(own.client_config("dev")),
                "--accept-new-host-key",
                "--remote-python",
                DEVICE_PYTHON,
                "--num-runs",
                "2",
                "--results",
                str(tmp_path / "r.jsonl"),
            ],
        )
        assert outcome.exit_code == 1, outcome.output
        errors = [line for line in outcome.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "host key has CHANGED" in errors[0]
    finally:
        own.stop()


def test_failed_connection_leaves_no_control_folder(server, models, tmp_path, monkeypatch):
    import tempfile

    # A short private temp folder (the control socket path must stay under 108 characters).
    private = pathlib_short_tempdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    try:
        config = server.client_config("nobody2", port=free_port())  # nothing listens there
        for _ in range(2):
            with pytest.raises(StageError, match="cannot reach the device"):
                run_benchmark(
                    models["tiny_int8"], num_runs=2, target=make_target("ssh://nobody2", options(server, ssh_config=config))
                )
        empty = tmp_path / "empty_known_hosts"
        empty.write_text("")
        with pytest.raises(StageError, match="not in known_hosts"):
            run_benchmark(
                models["tiny_int8"],
                num_runs=2,
                target=make_target("ssh://fresh3", options(server, ssh_config=server.client_config("fresh3", known_hosts=empty))),
            )
        assert run_benchmark(models["tiny_int8"], num_runs=2, target=make_target("ssh://pi", options(server))).ok
        assert list(private.glob("edgedistill-ssh-*")) == []
    finally:
        shutil.rmtree(private, ignore_errors=True)


def pathlib_short_tempdir():
    import pathlib
    import tempfile

    return pathlib.Path(tempfile.mkdtemp(prefix="ed12-", dir="/tmp"))


def test_prepared_pi_that_never_answers_is_recorded_emulated_not_measured(server, models, tmp_path):
    """A Pi folder's ssh_config sits beside its manifest: a bench that fails before connecting is still an
    emulated device's record (the label never claims a real device it could not check)."""
    folder = tmp_path / "image"
    folder.mkdir()
    config = folder / "ssh_config"
    config.write_text(server.client_config("gone_pi", port=free_port()).read_text())  # nothing listens there
    (folder / "manifest.json").write_text(json.dumps({"device": "cortex-a72 (QEMU TCG)"}))
    results = tmp_path / "bench.jsonl"
    outcome = CliRunner().invoke(
        cli,
        [
            "bench",
            str(models["tiny_int8"]),
            "--target",
            "ssh://gone_pi",
            "--ssh-config",
            str(config),
            "--num-runs",
            "3",
            "--results",
            str(results),
        ],
    )
    assert outcome.exit_code != 0 and "Error: " in outcome.output and "Traceback" not in outcome.output
    record = json.loads(results.read_text())  # the failed pair is recorded, with the emulated label
    assert record["status"] == "failed" and record["kind"] == "emulated", record
    assert record["target"]["emulated_device"] == "cortex-a72 (QEMU TCG)" and "[emulated]" in outcome.output
    target = make_target("ssh://gone_pi", options(server, ssh_config=config))
    assert target.kind == "emulated" and target.describe()["emulated_device"] == "cortex-a72 (QEMU TCG)"
    plain = make_target("ssh://pi", options(server))  # no manifest beside the config: a real device
    assert plain.kind == "measured" and "emulated_device" not in plain.describe()
