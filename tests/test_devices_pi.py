"""The emulated Raspberry Pi (edgedistill.devices): Debian 12 arm64 in qemu-system-aarch64, measured over ssh.

Fast tests need no image: the bad inputs that fail before a VM boots run against a stand-in image folder
(a manifest and an ssh config in prepare-pi's shape, no disk image), the real sshd of tests/sshd_fixture.py
and the real qemu-system-aarch64. The slow ones boot the real VM. They run whenever a prepared image is in
``$EDGEDISTILL_PI_DIR`` (else ~/.cache/edgedistill/pi, kept between runs like the TFLM libraries), so
`make test` and CI run them once `make test-devices` has prepared it; without an image they skip (a cold
prepare takes 15-50 min, more than CI's time), unless EDGEDISTILL_TEST_DEVICES=1 (`make test-devices`)
asks to prepare it first (root, mmdebstrap, binfmt_misc).
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
from edgedistill.errors import InputError, StageError
from edgedistill.devices.pi import pi_layout, prepare_pi, start_pi, stop_pi


def qemu_processes(layout) -> list[int]:
    """Pids of QEMU processes running this folder's overlay (there must be none after a stop)."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and pi_module._pid_is_our_qemu(int(entry.name), layout)
    ]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("models"))


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
    assert "-icount" not in command and command[command.index("-append") + 1].endswith(" edgedistill.clock=wall")


def test_icount_clock_is_on_the_qemu_line_and_the_kernel_line(tmp_path):
    command = pi_module.qemu_command(pi_layout(tmp_path / "pi"), 2222, clock="icount")
    assert command[command.index("-icount") + 1] == "shift=0,sleep=on"
    assert command[command.index("-append") + 1].split()[-1] == "edgedistill.clock=icount"


def test_unknown_clock_and_a_running_vm_with_another_clock_are_refused(tmp_path):
    layout = fake_image(tmp_path / "pi")
    result = invoke("devices", "start-pi", layout.root, "--clock", "cycles")
    assert result.exit_code == 2 and "'cycles' is not one of 'wall', 'icount'" in result.output
    with pytest.raises(InputError, match="Unknown clock 'cycles'"):
        start_pi(layout, clock="cycles")
    state = {"pid": 1, "port": 2222, "clock": "wall"}
    with pytest.raises(InputError, match="already runs with --clock wall \\(asked: icount\\).*stop-pi"):
        pi_module._check_running_matches(layout, state, None, "icount")
    pi_module._check_running_matches(layout, state, 2222, "wall")  # the same port and clock: no error


def test_emulated_label_names_the_icount_clock():
    from edgedistill.targets.ssh import emulated_label

    assert emulated_label("cortex-a72 (QEMU TCG)\n", "root=/dev/vda quiet edgedistill.clock=wall\n") == (
        "cortex-a72 (QEMU TCG)",
        "wall",
    )
    device, clock = emulated_label("cortex-a72 (QEMU TCG)\n", "root=/dev/vda quiet edgedistill.clock=icount\n")
    assert clock == "icount" and device == "cortex-a72 (QEMU TCG), -icount: 1 ns per instruction"
    assert emulated_label("cortex-a72 (QEMU TCG)", "quiet xedgedistill.clock=icount")[1] == "wall"  # whole words only


def test_host_mirror_reads_deb822_and_skips_security(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n\nTypes: deb\nURIs: http://mirror.example/debian\n"
    )
    assert pi_module.host_mirror(tmp_path) == "http://mirror.example/debian"
    assert pi_module.host_mirror(tmp_path / "nothing") == pi_module.DEFAULT_MIRROR


def test_marker_labels_an_ssh_device_emulated_and_outputs_are_checked(tmp_path, monkeypatch, models):
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
        marker = tmp_path / "edgedistill-emulated"
        marker.write_text("cortex-a72 (QEMU TCG)\n")
        monkeypatch.setattr(ssh_module, "EMULATED_MARKER", str(marker))
        options = TargetOptions(ssh_config=str(server.client_config("pi")), remote_python=sys.executable, connect_timeout_s=5)
        emulated = run_benchmark(models["tiny_int8"], target=make_target("ssh://pi", options), num_runs=5)
        assert emulated.kind == "emulated" and emulated.target["emulated_device"] == "cortex-a72 (QEMU TCG)"
        assert emulated.extra["outputs_match_host"] is True and emulated.extra["outputs_max_abs_diff"] == 0.0
        assert "output_values" not in emulated.extra and emulated.target["emulated_clock"] == "wall"
        kernel_line = tmp_path / "cmdline"
        kernel_line.write_text("root=/dev/vda rw quiet edgedistill.clock=icount\n")
        monkeypatch.setattr(ssh_module, "GUEST_CMDLINE", str(kernel_line))
        counted = run_benchmark(models["tiny_int8"], target=make_target("ssh://pi", options), num_runs=5)
        assert counted.kind == "emulated" and counted.target["emulated_clock"] == "icount"
        assert counted.target["emulated_device"] == "cortex-a72 (QEMU TCG), -icount: 1 ns per instruction"
        monkeypatch.setattr(ssh_module, "EMULATED_MARKER", str(tmp_path / "absent"))
        measured = run_benchmark(models["tiny_int8"], target=make_target("ssh://pi", options), num_runs=5)
        assert measured.kind == "measured" and "emulated_device" not in measured.target
    finally:
        server.stop()


# -- fast bad inputs: a stand-in image folder, the real sshd and qemu-system-aarch64 ---------------------


def fake_image(root: Path, *, known_hosts_line: str = "", kernel: bool = False) -> "pi_module.PiLayout":
    """A stand-in for a prepared image: what `prepare-pi` leaves (manifest, ssh config in its shape, keys, a
    1 MiB rootfs.raw), no bootable system. ``kernel`` False: no vmlinuz, so QEMU stops at once."""
    layout = pi_layout(root)
    layout.image.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(layout.image / "id_ed25519")], check=True)
    (layout.image / "known_hosts").write_text(known_hosts_line)
    layout.ssh_config.write_text(
        "Host 127.0.0.1 localhost\n  User pi\n"
        f'  IdentityFile "{layout.image / "id_ed25519"}"\n  IdentitiesOnly yes\n'
        f'  UserKnownHostsFile "{layout.image / "known_hosts"}"\n  GlobalKnownHostsFile /dev/null\n'
        "  HostKeyAlias edgedistill-pi\n  StrictHostKeyChecking yes\n"
    )
    (layout.image / "rootfs.raw").write_bytes(bytes(1 << 20))
    (layout.image / "initrd.img").write_bytes(b"")
    if kernel:
        (layout.image / "vmlinuz").write_bytes(b"")
    layout.manifest.write_text(json.dumps({"device": "cortex-a72 (QEMU TCG)", "stand_in": True}))
    return layout


def _need(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (make system-deps)")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    from sshd_fixture import start_sshd

    if shutil.which("sshd") is None and not os.path.exists("/usr/sbin/sshd"):
        pytest.skip("needs openssh-server (apt-get install openssh-server)")
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except (RuntimeError, PermissionError) as error:
        pytest.skip(f"cannot start sshd here: {error}")
    yield server
    server.stop()


def test_port_taken(tmp_path):
    _need("qemu-system-aarch64", "qemu-img")
    layout = fake_image(tmp_path / "pi")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("devices", "start-pi", layout.root, "--port", port)
    assert result.exit_code == 2 and result.output.startswith(f"Error: Port {port} on 127.0.0.1 is taken")
    assert "--port" in result.output and len(result.output.strip().splitlines()) == 1
    assert qemu_processes(layout) == [] and not layout.state.exists()


def test_vm_that_stops_while_booting_leaves_nothing_running(tmp_path):
    """QEMU exits at once (the image has no kernel): one Error line with QEMU's reason, no state, no overlay."""
    _need("qemu-system-aarch64", "qemu-img")
    layout = fake_image(tmp_path / "pi")
    result = invoke("devices", "start-pi", layout.root, "--timeout", "60")
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: The emulated Pi stopped while booting (QEMU exit ") and "vmlinuz" in last
    assert qemu_processes(layout) == [] and not layout.state.exists()
    assert not (layout.run / "overlay.qcow2").exists()


def test_bench_on_a_vm_still_booting_fails_clearly(tmp_path, models):
    """Stand-in for the VM's forwarded port before the guest's sshd listens: QEMU's user network accepts the
    connection and drops it. The bench says the device cannot be reached; bench.jsonl holds only a failed row."""
    _need("ssh")
    layout = fake_image(tmp_path / "pi")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drop_connections() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            connection.close()

    thread = threading.Thread(target=drop_connections, daemon=True)
    thread.start()
    results = tmp_path / "bench.jsonl"
    try:
        result = invoke(
            "bench",
            models["tiny_int8"],
            "--target",
            f"ssh://pi@127.0.0.1:{listener.getsockname()[1]}",
            "--ssh-config",
            layout.ssh_config,
            "--num-runs",
            "2",
            "--connect-timeout",
            "5",
            "--results",
            results,
        )
    finally:
        stop.set()
        thread.join()
        listener.close()
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code != 0 and last.startswith("Error: ") and "cannot reach the device" in last
    assert "Traceback" not in result.output
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    assert all(row["status"] == "failed" for row in rows)


def _other_host_key(folder: Path) -> str:
    key = folder / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return "edgedistill-pi " + " ".join(key.with_suffix(".pub").read_text().split()[:2]) + "\n"


def test_wrong_host_key_refused_by_bench(sshd, models, tmp_path):
    """A Pi folder whose recorded host key is not the one the server answers with (the real sshd)."""
    layout = fake_image(tmp_path / "pi", known_hosts_line=_other_host_key(tmp_path))
    results = tmp_path / "bench.jsonl"
    result = invoke(
        "bench",
        models["tiny_int8"],
        "--target",
        f"ssh://pi@127.0.0.1:{sshd.port}",
        "--ssh-config",
        layout.ssh_config,
        "--num-runs",
        "2",
        "--results",
        results,
    )
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code != 0 and last.startswith("Error: ") and "host key has CHANGED" in last
    assert "--accept-new-host-key does not apply" in last
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    assert all(row["status"] == "failed" for row in rows)


def test_wrong_host_key_while_waiting_for_boot_is_refused(sshd, tmp_path):
    """start-pi's wait for sshd refuses a host key other than the recorded one at once (not after its timeout);
    a sleeping process stands in for QEMU, the real sshd for the guest's."""
    layout = fake_image(tmp_path / "pi", known_hosts_line=_other_host_key(tmp_path))
    stand_in = subprocess.Popen(["sleep", "60"])
    started = time.monotonic()
    try:
        with pytest.raises(StageError, match="host key that is not the one recorded"):
            pi_module._wait_for_ssh(layout, stand_in, sshd.port, started, 120.0)
    finally:
        stand_in.kill()
        stand_in.wait()
    assert time.monotonic() - started < 60


# -- slow: the real VM ----------------------------------------------------------------------------

# What the VM tests cost, measured (see README.md's emulated Pi section): a cold prepare (39-49 min at load 12-20),
# and the VM tests on a prepared image under `make test` (one boot: 24 s idle, 12 min at load 17 with the VM at
# nice 10; then about 3 min of tests). `make test-devices` adds the crash test, which boots a second time.
COLD_PREPARE = "15-50 min"
WARM_MODULE = "one boot, 24 s idle to 12 min on a loaded host, then about 3 min"


def _opted_in() -> bool:
    return os.environ.get("EDGEDISTILL_TEST_DEVICES", "") not in ("", "0")


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_reason(layout) -> str | None:
    """Why the VM tests cannot run here, or None: they run on a prepared image (`make test`, CI) and prepare
    one only when asked (EDGEDISTILL_TEST_DEVICES=1, `make test-devices`), never under CI."""
    for tool in ("qemu-system-aarch64", "qemu-img", "ssh"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make system-deps)"
    if layout.prepared():
        return None
    if _under_ci():
        return (
            f"no prepared emulated Pi image in {layout.root}, and CI does not prepare one: a cold prepare takes "
            f"{COLD_PREPARE}, beyond CI's time. Run `make test-devices` once on this machine (the image is kept "
            f"in ~/.cache); then `make test` and CI run these tests ({WARM_MODULE} warm)"
        )
    if not _opted_in():
        return (
            f"no prepared emulated Pi image in {layout.root}: `make test-devices` prepares it ({COLD_PREPARE} "
            f"cold, once) and runs these tests; with the image in place `make test` runs them ({WARM_MODULE})"
        )
    if os.geteuid() != 0:
        return "prepare-pi needs root (mmdebstrap root mode)"
    for tool in ("mmdebstrap", "qemu-aarch64-static", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make system-deps)"
    return None


def test_skip_reasons_name_the_fix_and_the_cost(tmp_path, monkeypatch):
    if shutil.which("qemu-system-aarch64") is None or shutil.which("qemu-img") is None:
        pytest.skip("qemu-system-aarch64 / qemu-img are not installed (make system-deps)")
    empty = pi_layout(tmp_path / "none")
    monkeypatch.delenv("EDGEDISTILL_TEST_DEVICES", raising=False)
    monkeypatch.setenv("CI", "true")
    reason = skip_reason(empty)
    assert "CI does not prepare one" in reason and COLD_PREPARE in reason and "make test-devices" in reason
    monkeypatch.setenv("EDGEDISTILL_TEST_DEVICES", "1")
    assert "CI does not prepare one" in skip_reason(empty)  # asked for, but a cold prepare never runs under CI
    monkeypatch.delenv("CI")
    monkeypatch.delenv("EDGEDISTILL_TEST_DEVICES")
    assert "make test-devices" in skip_reason(empty) and COLD_PREPARE in skip_reason(empty)
    assert skip_reason(fake_image(tmp_path / "prepared")) is None  # a prepared image: the VM tests run


@pytest.fixture(scope="module")
def layout():
    layout = pi_layout(None)
    reason = skip_reason(layout)
    if reason:
        pytest.skip(reason)
    prepare_pi(layout)  # cached: a no-op once built
    stop_pi(layout)
    yield layout
    stop_pi(layout)
    assert qemu_processes(layout) == []


@pytest.mark.slow
def test_prepare_twice_is_a_no_op(layout):
    started = time.monotonic()
    result = invoke("devices", "prepare-pi", layout.root)
    assert result.exit_code == 0 and "already prepared" in result.output
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_interrupted_start_leaves_no_vm(layout):
    result = invoke("devices", "start-pi", layout.root, "--timeout", "3")
    assert result.exit_code == 1 and "did not answer ssh" in result.output
    assert qemu_processes(layout) == [] and not layout.state.exists()


@pytest.fixture(scope="module")
def running(layout, models, tmp_path_factory):
    """Boot once; while it boots, a bench on the not-ready VM must fail with a clear line."""
    booted: dict = {}
    # The icount clock: the guest's timings are instruction counts, so the profile check below holds on a
    # loaded CI host (the wall clock's share of the host is what `make test-devices`' second boot runs).
    thread = threading.Thread(
        target=lambda: booted.update(start_pi(layout, timeout_s=1800, clock="icount", log=lambda _line: None))
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not layout.state.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    state = json.loads(layout.state.read_text())
    results = tmp_path_factory.mktemp("booting") / "bench.jsonl"
    early = invoke(
        "bench",
        models["tiny_int8"],
        "--target",
        state["target"],
        "--ssh-config",
        state["ssh_config"],
        "--num-runs",
        "2",
        "--connect-timeout",
        "5",
        "--results",
        results,
    )
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
    rows = (
        [json.loads(line) for line in running["early_results"].read_text().splitlines() if line.strip()]
        if running["early_results"].exists()
        else []
    )
    assert all(row["status"] == "failed" for row in rows)


@pytest.mark.slow
def test_bench_in_the_vm_is_emulated_and_matches_host(running, models, tmp_path):
    results = tmp_path / "bench.jsonl"
    result = invoke(
        "bench",
        models["default_student_int8"],
        models["conv_int8"],
        "--target",
        running["target"],
        "--ssh-config",
        running["ssh_config"],
        "--num-runs",
        "20",
        "--profile",
        "--results",
        results,
    )
    assert result.exit_code == 0, result.output
    rows = {Path(row["model"]).stem: row for row in map(json.loads, results.read_text().splitlines())}
    assert sorted(rows) == ["conv_int8", "default_student_int8"]
    for row in rows.values():
        assert row["status"] == "ok" and row["kind"] == "emulated"
        assert row["target"]["emulated_device"] == "cortex-a72 (QEMU TCG), -icount: 1 ns per instruction"
        assert row["target"]["emulated_clock"] == "icount" and row["target"]["device"]["machine"] == "aarch64"
        assert row["runtime"] == "ai_edge_litert" and len(row["samples_ms"]) == 20 and row["peak_rss_bytes"] > 0
        assert row["extra"]["outputs_match_host"] is True and row["extra"]["outputs_max_abs_diff"] == 0.0
        # The per-op profile measured in the VM. Under -icount a guest timing counts instructions, not the host's
        # other work: the rows add up to the whole invoke within the 100 +- 2 % on a loaded host too
        # (benchmarks/emulated_pi.py --clock icount: 99.8-100.2 % at load 3.5 on four models; with the wall
        # clock 0.84-0.88 at load 10-17).
        summary = row["extra"]["profile_summary"]
        assert summary["source"] == "litert one-op models" and 0.98 <= summary["share_ratio"] <= 1.02, summary
        samples = sorted(row["samples_ms"])
        assert samples[len(samples) // 2] <= samples[0] * 1.02  # instruction counts: the median is the minimum's
        files = row["extra"]["profile_files"]
        assert os.path.isfile(files["csv"]) and os.path.isfile(files["trace"])
    assert rows["conv_int8"]["extra"]["profile_summary"]["num_ops"] == 6  # five operators and the invoke call's row


@pytest.mark.slow
def test_wrong_host_key_refused(running, models, tmp_path):
    config = tmp_path / "ssh_config"
    other_key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    (tmp_path / "known_hosts").write_text(
        "edgedistill-pi " + " ".join((other_key.with_suffix(".pub")).read_text().split()[:2]) + "\n"
    )
    text = Path(running["ssh_config"]).read_text()
    config.write_text(text.replace(str(Path(running["ssh_config"]).parent / "known_hosts"), str(tmp_path / "known_hosts")))
    result = invoke("bench", models["tiny_int8"], "--target", running["target"], "--ssh-config", config, "--num-runs", "2")
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
    result = invoke(
        "bench",
        broken,
        "--target",
        running["target"],
        "--ssh-config",
        running["ssh_config"],
        "--num-runs",
        "2",
        "--results",
        results,
    )
    assert result.exit_code != 0 and "cannot load" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row["status"] for row in rows] == ["failed"] and rows[0]["kind"] == "emulated"


def _runner_is_running() -> bool:
    """Whether an ssh client on this host runs the deployed runner (the bench has reached the VM)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"edgedistill_runner.py" in (entry / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def _kill_once_measuring(pid: int, stop: threading.Event, limit_s: float = 900.0) -> None:
    # Killed once the runner measures in the VM, not after a fixed delay: on a loaded host the guest's sshd can
    # take longer than any fixed delay to let the bench in, and a crash before that is another case (unreachable).
    deadline = time.monotonic() + limit_s
    while not stop.is_set() and not _runner_is_running() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not stop.wait(3.0):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_vm_crash_mid_run_then_next_start_works(running, layout, models, tmp_path):
    if not _opted_in():
        pytest.skip(
            "boots the VM a second time (24 s idle, 12 min measured at load 17): `make test-devices` runs it; "
            "`make test` and CI keep to one boot"
        )
    results = tmp_path / "bench.jsonl"
    stop = threading.Event()
    killer = threading.Thread(target=_kill_once_measuring, args=(running["pid"], stop), daemon=True)
    killer.start()
    result = invoke(
        "bench",
        models["conv_int8"],
        "--target",
        running["target"],
        "--ssh-config",
        running["ssh_config"],
        "--num-runs",
        "100000",
        "--connect-timeout",
        "60",
        "--results",
        results,
    )
    stop.set()
    killer.join()
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row["status"] for row in rows] == ["failed"] and rows[0]["kind"] == "emulated"
    assert qemu_processes(layout) == []
    again = start_pi(layout, timeout_s=1800, log=lambda _line: None)  # the dead run's state file does not block
    assert again["already_running"] is False
    assert stop_pi(layout) is True and qemu_processes(layout) == []
