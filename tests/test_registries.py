"""One contract over every registry entry: targets, data loaders and model presets.

(Losses and schemes have theirs in test_losses.py and test_schemes.py.) A new entry without a
row in the tables below fails here, so every registered name is covered.
"""

from __future__ import annotations

import pytest

from edgedistill.errors import InputError

TARGET_SPECS = {
    "local": "local",
    "ssh": "ssh://pi@127.0.0.1:2222",
    "adb": "adb:emulator-5554",
    "qemu-aarch64": "qemu-aarch64",
    "tflm": "tflm",
}


def test_every_target_has_a_contract_row():
    from edgedistill.targets import TARGETS

    assert set(TARGETS.names()) == set(TARGET_SPECS)


@pytest.mark.parametrize("name", sorted(TARGET_SPECS))
def test_target_contract(name):
    """Built from its spec without touching a device; says what it is; measures through one method."""
    from edgedistill.targets import Target, make_target

    target = make_target(TARGET_SPECS[name])
    assert isinstance(target, Target) and target.scheme == name
    assert target.kind in ("measured", "emulated")
    description = target.describe()
    assert description["name"] == name and description["kind"] == target.kind
    assert callable(target.measure) and callable(target.open) and callable(target.close)


def test_unknown_target_lists_the_valid_ones():
    from edgedistill.targets import make_target

    with pytest.raises(InputError, match="Expected one of: adb, local, qemu-aarch64, ssh, tflm"):
        make_target("gpu://box")


def test_every_loader_refuses_a_missing_source_in_one_line(tmp_path):
    """Each data loader given a path that does not exist fails with one InputError line naming it."""
    from edgedistill.data import LOADERS, load_dataset

    for name in LOADERS.names():
        if name == "digits":  # embedded: takes no argument
            assert load_dataset("digits").num_classes == 10
            continue
        missing = tmp_path / f"no-such-{name}"
        with pytest.raises(InputError) as raised:
            load_dataset(f"{name}:{missing}")
        message = str(raised.value)
        assert "\n" not in message and str(missing) in message, (name, message)


def test_every_preset_builds_a_classifier_of_the_asked_size():
    from edgedistill.models import PRESETS, build_model, count_parameters

    for name in PRESETS.names():
        shape = (32, 32, 3) if name in ("mobilenet_v2",) else (16, 16, 1)
        try:
            small = build_model(name, shape, 4, width=0.25)
        except InputError as error:  # a preset that needs another input rank or size says so in one line
            assert "\n" not in str(error)
            continue
        assert small.output_shape[-1] == 4, name
        assert count_parameters(build_model(name, shape, 4, width=0.5)) > count_parameters(small), name
