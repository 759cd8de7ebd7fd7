"""scripts/ci-tflm.sh: the TFLM checkout `make test` hands the firmware tests (TFLM_DIR).

Offline copies are made here as folders with an unpack.sh, like ../shared/tflm: one that unpacks a
git checkout at another commit than the pin, and (when ../shared/tflm exists) the real one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "ci-tflm.sh"
SHARED = REPO.parent / "shared" / "tflm"
PINNED = (REPO / "firmware" / "tflm.env").read_text().split("TFLM_COMMIT=")[1].split()[0]


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in ("TFLM_DIR", "TFLM_OFFLINE", "CI")}
    environment.update(XDG_CACHE_HOME=str(tmp_path / "cache"), **env)
    return subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, env=environment, stdin=subprocess.DEVNULL, timeout=300
    )


def _offline_copy_at_another_commit(tmp_path: Path) -> Path:
    folder = tmp_path / "offline"
    folder.mkdir()
    (folder / "unpack.sh").write_text(
        '#!/usr/bin/env bash\nset -e\nmkdir -p "$1" && cd "$1" && git init -q\n'
        "git -c user.email=t@example.com -c user.name=t commit -q --allow-empty -m 'not the pin'\npwd\n"
    )
    return folder


def test_tflm_dir_wins(tmp_path):
    completed = _run(tmp_path, TFLM_DIR="/some/checkout")
    assert completed.returncode == 0 and completed.stdout.strip() == "/some/checkout"


def test_an_offline_copy_at_another_commit_skips_locally_and_fails_ci(tmp_path):
    offline = _offline_copy_at_another_commit(tmp_path)
    local = _run(tmp_path, TFLM_OFFLINE=str(offline))
    assert local.returncode == 0 and local.stdout == ""  # the firmware tests then skip with their reason
    assert f"the pin (firmware/tflm.env) is {PINNED}" in local.stderr and "will skip" in local.stderr
    ci = _run(tmp_path, TFLM_OFFLINE=str(offline), CI="true")
    assert ci.returncode == 1 and ci.stdout == ""
    errors = [line for line in ci.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "TFLM_OFFLINE" in errors[0]
    assert not (tmp_path / "cache" / "edgedistill" / "tflm-src" / PINNED).exists()  # nothing half-made left


@pytest.mark.skipif(not (SHARED / "unpack.sh").is_file(), reason="needs the offline TFLM copy ../shared/tflm (the CI machine's)")
def test_the_shared_offline_copy_is_unpacked_once_outside_the_clone(tmp_path):
    first = _run(tmp_path)
    checkout = Path(first.stdout.strip())
    assert first.returncode == 0, first.stderr
    assert checkout == tmp_path / "cache" / "edgedistill" / "tflm-src" / PINNED
    assert (checkout / "tensorflow/lite/micro/tools/make/Makefile").is_file()
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert head.stdout.strip() == PINNED
    again = _run(tmp_path)
    assert again.stdout == first.stdout and "Unpacking" not in again.stderr
