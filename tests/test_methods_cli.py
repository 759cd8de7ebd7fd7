"""The methods' options of `edgedistill run`: names and combinations checked before any training."""

from __future__ import annotations

import pytest
from click.testing import CliRunner


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["--scheme", "nope"],
            "Unknown distillation scheme 'nope'. Expected one of: data_free, multi_teacher, mutual, patient, self, standard, teacher_assistant",
        ),
        (["--distillation-loss", "hint"], "Unknown distillation loss 'hint'. Expected one of: attention, feature, logits, rkd"),
        (["--prune-sparsity", "0.5", "--scheme", "mutual"], "--prune-sparsity works with the standard scheme only"),
        (["--prune-sparsity", "1.5"], "`prune_sparsity` must be in [0, 1)"),
        (["--max-arena-kb", "0"], "`max_arena_kb` must be > 0"),
    ],
)
def test_run_rejects_bad_method_options(arguments, message, tmp_path):
    from edgedistill.cli import cli

    result = CliRunner().invoke(cli, ["run", "--output-dir", str(tmp_path), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_loss_spec_with_arguments():
    from edgedistill.config import RunConfig
    from edgedistill.distill.losses import AttentionTransfer, LogitsDistillation
    from edgedistill.distill.pipeline_hooks import resolve_loss
    from edgedistill.errors import InputError

    loss = resolve_loss(
        RunConfig(distillation_loss="attention:teacher_layer_name=block2_relu,student_layer_name=block2_pw_relu,beta=500")
    )
    assert isinstance(loss, AttentionTransfer) and loss.student_layer_name == "block2_pw_relu" and loss.beta == 500.0
    logits = resolve_loss(RunConfig(temperature=6.0, final_temperature=2.0))
    assert isinstance(logits, LogitsDistillation) and logits.get_config() == {
        "temperature": 6.0,
        "final_temperature": 2.0,
        "schedule": "linear",
    }
    assert resolve_loss(RunConfig()).get_config() == {"temperature": 4.0}  # today's default unchanged
    with pytest.raises(InputError, match="not key=value"):
        resolve_loss(RunConfig(distillation_loss="attention:block2_relu"))
    with pytest.raises(InputError, match="Bad arguments for distillation loss 'rkd'"):
        resolve_loss(RunConfig(distillation_loss="rkd:gamma=2"))
