"""The emulated Raspberry Pi (edgedistill.devices): Debian 12 arm64 in qemu-system-aarch64, measured over ssh.

Fast tests need no image. The slow ones (``make test-devices``) prepare the image once into
``$EDGEDISTILL_PI_DIR`` (else ~/.cache/edgedistill/pi; ~25 min cold, a no-op when cached), boot it
under TCG and benchmark over ssh; they skip with a reason where the image cannot be built
(not root, no mmdebstrap, no binfmt_misc).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from bench_helpers import make_models
from conftest import invoke

from edgedistill.devices import pi as pi_module
from edgedistill.devices.pi import pi_layout, prepare_pi, start_pi, stop_pi


def qemu_processes(layout) -> list[int]:
    """Pids of QEMU processes running this folder's overlay (there must be none after a stop)."""
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and pi_module._pid_is_our_qemu(int(entry.name), layout)]


# -- fast: no image needed ------------------------------------------------------------------------


def test_start_without_image_says_how_to_prepare(tmp_path):
    result = invoke("devices", "start-pi", tmp_path / "pi")
    assert result.exit_code == 2
    assert result.output.startswith("Error: No emulated Pi image in ") and "prepare-pi" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDISTILL_PI_DIR", str(tmp_path / "from-env"))
    assert pi_layout(None).root == tmp_path / "from-env"
    assert pi_layout(tmp_path / "given").root == tmp_path / "given"


def test_stale_state_never_blocks(tmp_path):
    layout = pi_layout(tmp_path / "pi")
    layout.run.mkdir(parents=True)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a pid that no longer runs
    layout.state.write_text(json.dumps({"pid": dead, "port": 1}))
    (layout.run / "overlay.qcow2").write_bytes(b"left over")
    result = invoke("devices", "stop-pi", layout.root)
    assert result.exit_code == 0 and "was not running" in result.output
    assert not layout.state.exists() and not (layout.run / "overlay.qcow2").exists()
    status = json.loads(invoke("devices", "status-pi", layout.root).output)
    assert status["prepared"] is False and status["running"] is False


def test_qemu_command_is_a_list_with_escaped_paths(tmp_path):
    layout = pi_layout(tmp_path / "a,b c")
    command = pi_module.qemu_command(layout, 2222)
    drive = command[command.index("-drive") + 1]
    assert "a,,b c" in drive and drive.endswith(",format=qcow2,id=hd")
    assert command[:9] == ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "4", "-m", "2048"]
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in command[command.index("-netdev") + 1]
    assert "-enable-kvm" not in command and command[command.index("-accel") + 1] == "tcg"


def test_host_mirror_reads_deb822_and_skips_security(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n\nTypes: deb\nURIs: http://mirror.example/debian\n")
    assert pi_module.host_mirror(tmp_path) == "http://mirror.example/debian"
    assert pi_module.host_mirror(tmp_path / "nothing") == pi_module.DEFAULT_MIRROR


def test_marker_labels_an_ssh_device_emulated_and_outputs_are_checked(tmp_path, monkeypatch):
    """The ssh target against the loopback sshd (tests/sshd_fixture.py) with a marker file standing in for
    the VM's /etc/edgedistill-emulated: the result is labelled emulated and compared with the host."""
    import sys

    from sshd_fixture import start_sshd

    from edgedistill.bench import run_benchmark
    from edgedistill.targets import TargetOptions, make_target
    from edgedistill.targets import ssh as ssh_module

    if shutil.which("sshd") is None and not os.path.exists("/usr/sbin/sshd"):
        pytest.skip("needs openssh-server (apt-get install openssh-server)")
    try:
        server = start_sshd(tmp_path / "sshd")
    except (RuntimeError, PermissionError) as error:
        pytest.skip(f"cannot start sshd here: {error}")
    try:
        models = make_models(tmp_path / "models")
        marker = tmp_path / "edgedistill-emulated"
        marker.write_text("cortex-a72 (QEMU TCG)\n")
        monkeypatch.setattr(ssh_module, "EMULATED_MARKER", str(marker))
        options = TargetOptions(ssh_config=str(server.client_config("pi")), remote_python=sys.executable,
                                connect_timeout_s=5)
        emulated = run_benchmark(models["tiny_int8"], target=make_target("ssh://pi", options), num_runs=5)
        assert emulated.kind == "emulated" and emulated.target["emulated_device"] == "cortex-a72 (QEMU TCG)"
        assert emulated.extra["outputs_match_host"] is True and emulated.extra["outputs_max_abs_diff"] == 0.0
        assert "output_values" not in emulated.extra
        monkeypatch.setattr(ssh_module, "EMULATED_MARKER", str(tmp_path / "absent"))
        measured = run_benchmark(models["tiny_int8"], target=make_target("ssh://pi", options), num_runs=5)
        assert measured.kind == "measured" and "emulated_device" not in measured.target
    finally:
        server.stop()


# -- slow: the real VM ----------------------------------------------------------------------------


def _can_build() -> str | None:
    if not os.environ.get("EDGEDISTILL_TEST_DEVICES"):
        return "the emulated Pi tests boot a VM (minutes): run them with `make test-devices` (EDGEDISTILL_TEST_DEVICES=1)"
    if os.geteuid() != 0:
        return "prepare-pi needs root (mmdebstrap root mode)"
    for tool in ("mmdebstrap", "qemu-system-aarch64", "qemu-aarch64-static", "mkfs.ext4", "qemu-img"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make system-deps)"
    return None


@pytest.fixture(scope="module")
def layout():
    reason = _can_build()
    layout = pi_layout(None)
    if reason and (not layout.prepared() or not os.environ.get("EDGEDISTILL_TEST_DEVICES")):
        pytest.skip(reason)
    prepare_pi(layout)  # cached: a no-op once built
    stop_pi(layout)
    yield layout
    stop_pi(layout)
    assert qemu_processes(layout) == []


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.mark.slow
def test_prepare_twice_is_a_no_op(layout):
    started = time.monotonic()
    result = invoke("devices", "prepare-pi", layout.root)
    assert result.exit_code == 0 and "already prepared" in result.output
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_port_taken(layout):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("devices", "start-pi", layout.root, "--port", port)
    assert result.exit_code == 2 and f"Port {port} on 127.0.0.1 is taken" in result.output
    assert qemu_processes(layout) == []


@pytest.mark.slow
def test_interrupted_start_leaves_no_vm(layout):
    result = invoke("devices", "start-pi", layout.root, "--timeout", "3")
    assert result.exit_code == 1 and "did not answer ssh" in result.output
    assert qemu_processes(layout) == [] and not layout.state.exists()


@pytest.fixture(scope="module")
def running(layout, models, tmp_path_factory):
    """Boot once; while it boots, a bench on the not-ready VM must fail with a clear line."""
    booted: dict = {}
    thread = threading.Thread(target=lambda: booted.update(start_pi(layout, log=lambda _line: None)))
    thread.start()
    deadline = time.monotonic() + 60
    while not layout.state.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    state = json.loads(layout.state.read_text())
    results = tmp_path_factory.mktemp("booting") / "bench.jsonl"
    early = invoke("bench", models["tiny_int8"], "--target", state["target"], "--ssh-config", state["ssh_config"],
                   "--num-runs", "2", "--connect-timeout", "5", "--results", results)
    thread.join()
    assert booted.get("port") == state["port"], "the VM did not boot"
    booted["early"] = early
    booted["early_results"] = results
    return booted


@pytest.mark.slow
def test_bench_on_a_booting_vm_fails_clearly(running):
    early = running["early"]
    last = early.output.strip().splitlines()[-1]
    assert early.exit_code != 0 and last.startswith("Error: ") and "cannot reach the device" in last
    assert "Traceback" not in early.output
    rows = [json.loads(line) for line in running["early_results"].read_text().splitlines() if line.strip()] \
        if running["early_results"].exists() else []
    assert all(row["status"] == "failed" for row in rows)


@pytest.mark.slow
def test_bench_in_the_vm_is_emulated_and_matches_host(running, models, tmp_path):
    results = tmp_path / "bench.jsonl"
    result = invoke("bench", models["conv_int8"], "--target", running["target"], "--ssh-config",
                    running["ssh_config"], "--num-runs", "20", "--results", results)
    assert result.exit_code == 0, result.output
    row = json.loads(results.read_text().splitlines()[-1])
    assert row["status"] == "ok" and row["kind"] == "emulated"
    assert row["target"]["emulated_device"] == "cortex-a72 (QEMU TCG)"
    assert row["target"]["device"]["machine"] == "aarch64"
    assert row["runtime"] == "ai_edge_litert" and len(row["samples_ms"]) == 20 and row["peak_rss_bytes"] > 0
    assert row["extra"]["outputs_match_host"] is True and row["extra"]["outputs_max_abs_diff"] == 0.0


@pytest.mark.slow
def test_wrong_host_key_refused(running, models, tmp_path):
    config = tmp_path / "ssh_config"
    other_key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    (tmp_path / "known_hosts").write_text("edgedistill-pi " + " ".join(
        (other_key.with_suffix(".pub")).read_text().split()[:2]) + "\n")
    text = Path(running["ssh_config"]).read_text()
    config.write_text(text.replace(str(Path(running["ssh_config"]).parent / "known_hosts"),
                                   str(tmp_path / "known_hosts")))
    result = invoke("bench", models["tiny_int8"], "--target", running["target"], "--ssh-config", config,
                    "--num-runs", "2")
    assert result.exit_code != 0 and result.output.strip().splitlines()[-1].startswith("Error: ")
    assert "host key has CHANGED" in result.output


@pytest.mark.slow
def test_model_litert_cannot_load_in_vm(running, models, tmp_path):
    from edgedistill.tflite_model import pack_model, unpack_model

    # A well-formed flatbuffer whose first operator is a custom op no LiteRT build registers.
    schema, model = unpack_model(models["tiny_int8"].read_bytes())
    code = model.operatorCodes[model.subgraphs[0].operators[0].opcodeIndex]
    code.builtinCode, code.deprecatedBuiltinCode, code.customCode = 32, 32, b"EdgedistillNoSuchOp"
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(pack_model(schema, model))
    results = tmp_path / "bench.jsonl"
    result = invoke("bench", broken, "--target", running["target"], "--ssh-config", running["ssh_config"],
                    "--num-runs", "2", "--results", results)
    assert result.exit_code != 0 and "cannot load" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row["status"] for row in rows] == ["failed"] and rows[0]["kind"] == "emulated"


@pytest.mark.slow
def test_vm_crash_mid_run_then_next_start_works(running, layout, models, tmp_path):
    results = tmp_path / "bench.jsonl"
    killer = threading.Timer(25.0, lambda: os.kill(running["pid"], signal.SIGKILL))
    killer.start()
    result = invoke("bench", models["conv_int8"], "--target", running["target"], "--ssh-config",
                    running["ssh_config"], "--num-runs", "100000", "--results", results)
    killer.cancel()
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row["status"] for row in rows] == ["failed"] and rows[0]["kind"] == "emulated"
    assert qemu_processes(layout) == []
    again = start_pi(layout, log=lambda _line: None)  # the dead run's state file does not block
    assert again["already_running"] is False
    assert stop_pi(layout) is True and qemu_processes(layout) == []
