"""``edgedistill devices prepare-pi|start-pi|stop-pi|status-pi``: thin click commands over devices.pi."""

from __future__ import annotations

import json

import click

from edgedistill.config import number_type, positive

SECONDS = number_type(float, positive, "a finite number > 0")
_dir_argument = click.argument("directory", required=False, metavar="[DIR]")
_DIR_HELP = "DIR defaults to $EDGEDISTILL_PI_DIR, else ~/.cache/edgedistill/pi."


def _bench_hint(state: dict) -> str:
    return f"Measure there: edgedistill bench MODEL --target {state['target']} --ssh-config {json.dumps(state['ssh_config'])}"


@click.group("devices")
def devices() -> None:
    """Emulated devices to benchmark on: a Raspberry Pi (Debian 12 arm64) in qemu-system-aarch64."""


@devices.command("prepare-pi", epilog=_DIR_HELP)
@_dir_argument
@click.option("--mirror", default=None, metavar="URL", help="Debian mirror (default: the host's apt mirror).")
def prepare_pi_command(directory: str | None, mirror: str | None) -> None:
    """Build the emulated Pi's disk image in DIR (once; a second call does nothing)."""
    from edgedistill.devices.pi import pi_layout, prepare_pi

    layout = pi_layout(directory)
    manifest = prepare_pi(layout, mirror=mirror, log=lambda line: click.echo(line, err=True))
    how = "already prepared" if manifest.get("cached") else f"built in {manifest['prepare_s']:g} s"
    click.echo(f"Emulated Pi image {how}: {layout.image}")


@devices.command("start-pi", epilog=_DIR_HELP)
@_dir_argument
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Host port forwarded to the VM's sshd (default: a free one)."
)
@click.option(
    "--timeout", "timeout_s", type=SECONDS, default=900.0, show_default=True, help="Seconds to wait for sshd to answer."
)
@click.option(
    "--clock",
    type=click.Choice(["wall", "icount"]),
    default="wall",
    show_default=True,
    help="wall: the guest's clock is the host's (noisy: the host's other work is counted in). icount: 1 ns of guest "
    "time per instruction (QEMU -icount shift=0): latencies are instruction counts, the same on a loaded host; "
    "use it for per-op profiles and to compare models.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the VM's state as JSON.")
def start_pi_command(directory: str | None, port: int | None, timeout_s: float, clock: str, as_json: bool) -> None:
    """Boot the emulated Pi; return once its sshd answers."""
    from edgedistill.devices.pi import pi_layout, start_pi

    state = start_pi(
        pi_layout(directory), port=port, timeout_s=timeout_s, clock=clock, log=lambda line: click.echo(line, err=True)
    )
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    if state["already_running"]:
        click.echo(f"The emulated Pi already runs (pid {state['pid']}, port {state['port']}).")
    else:
        click.echo(f"The emulated Pi is up in {state['boot_s']:g} s (pid {state['pid']}, port {state['port']}).")
    click.echo(_bench_hint(state))


@devices.command("stop-pi", epilog=_DIR_HELP)
@_dir_argument
def stop_pi_command(directory: str | None) -> None:
    """Stop the emulated Pi (and drop its overlay: the prepared image is never changed)."""
    from edgedistill.devices.pi import pi_layout, stop_pi

    click.echo("Stopped the emulated Pi." if stop_pi(pi_layout(directory)) else "The emulated Pi was not running.")


@devices.command("status-pi", epilog=_DIR_HELP)
@_dir_argument
def status_pi_command(directory: str | None) -> None:
    """Print whether the image is prepared and the VM runs and answers ssh (JSON)."""
    from edgedistill.devices.pi import pi_layout, pi_status

    click.echo(json.dumps(pi_status(pi_layout(directory)), indent=2))
