"""The offline memory plan (edgedistill.micro.memory_plan): lifetimes, bounds, placement, order, metadata, TFLM."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgedistill.errors import InputError
from edgedistill.micro import memory_plan as mp

# ---------------------------------------------------------------------------------------
# Tiny models (their memory plans depend on shapes and the converter's operator order only)


def _chain(keras):
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def _residual(keras):
    """A stem, a residual (Add) block with a 1x1 projection, two branches: TFLM's greedy planner leaves a gap here."""
    layers = keras.layers
    inputs = keras.Input((16, 16, 1))
    stem = layers.Conv2D(24, 3, strides=2, padding="same", activation="relu")(inputs)
    main = layers.Conv2D(32, 3, padding="same", activation="relu")(stem)
    main = layers.Conv2D(32, 3, padding="same")(main)
    x = layers.ReLU()(layers.Add()([layers.Conv2D(32, 1)(stem), main]))
    a = layers.Conv2D(16, 3, padding="same", activation="relu")(layers.Conv2D(16, 1, activation="relu")(x))
    b = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(layers.Concatenate()([a, b]))
    return keras.Model(inputs, layers.Dense(5)(x))


def _two_branch(keras):
    """Two branches off the input, concatenated, written the way round that makes the converter run the
    small branch between the two layers of the big one: the peak holds all three activations."""
    layers = keras.layers
    inputs = keras.Input((16, 16, 1))
    big = layers.Conv2D(32, 1, activation="relu")(inputs)
    small = layers.Conv2D(8, 1, activation="relu")(inputs)
    big = layers.Conv2D(8, 3, padding="same", activation="relu")(big)
    x = layers.GlobalAveragePooling2D()(layers.Concatenate()([small, big]))
    return keras.Model(inputs, layers.Dense(5)(x))


BUILDERS = {"chain": _chain, "residual": _residual, "two_branch": _two_branch}


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    from edgedistill._keras import keras
    from edgedistill.convert import convert_keras_model

    x = np.random.default_rng(0).random((16, 16, 16, 1), dtype=np.float32)
    built = {}
    for name, builder in BUILDERS.items():
        keras.utils.set_random_seed(0)
        built[name] = convert_keras_model(builder(keras), quantization="int8", representative_data=x)
    return built


@pytest.fixture(scope="module")
def verified(models) -> dict[str, mp.PlannedModel]:
    """plan_and_verify of every model, once (each runs TFLM's arena bisection twice)."""
    return {name: mp.plan_and_verify(data, verify_always=True, source=name) for name, data in models.items()}


def schema_module():
    from edgedistill.tflite_model import schema_module

    return schema_module()


def _edit(data: bytes, change) -> bytes:
    """The model after ``change(schema, model_object)``, written back as apply_plan writes."""
    from edgedistill.tflite_model import pack_model, unpack_model

    schema, model = unpack_model(data)
    change(schema, model)
    return pack_model(schema, model)


# ---------------------------------------------------------------------------------------
# Lifetimes, bounds, greedy, solver (no TFLM)


def test_lifetimes_follow_tflm_rules(models):
    graph = mp._read_graph(models["chain"], "chain")
    order = tuple(range(len(graph.op_names)))
    lifetimes = {b.tensor: b for b in mp._lifetimes(graph, order)}
    (graph_input,) = graph.graph_inputs
    (graph_output,) = graph.graph_outputs
    assert lifetimes[graph_input].first == 0  # inputs live from the start
    assert lifetimes[graph_output].last == len(order)  # outputs to the end
    assert all(b.size_bytes % 16 == 0 and b.size_bytes > 0 for b in lifetimes.values())
    assert lifetimes[graph_input].size_bytes == 256  # 16 x 16 x 1 int8
    constants = [t for t, size in enumerate(graph.sizes) if size == 0]
    assert constants and not set(constants) & set(lifetimes)


def test_lower_bound_is_the_peak_of_live_bytes():
    lifetimes = [
        mp.TensorLifetime(0, 80, 3, 4),
        mp.TensorLifetime(1, 48, 4, 5),
        mp.TensorLifetime(2, 96, 5, 5),
        mp.TensorLifetime(3, 80, 0, 3),
    ]
    assert mp.lower_bound_bytes(lifetimes) == 160  # scope 3: 80 + 80; scope 5: 48 + 96 = 144
    greedy = mp.greedy_offsets(lifetimes)
    assert mp.head_bytes(lifetimes, greedy) == 208  # first fit by decreasing size leaves a hole
    placement = mp.solve_placement(lifetimes, time_limit_s=5, num_workers=1)
    assert (placement.status, placement.head_bytes, placement.bound_bytes) == ("optimal", 160, 160)
    mp.check_placement(lifetimes, placement.offsets)


def test_greedy_respects_fixed_offsets():
    lifetimes = [mp.TensorLifetime(0, 32, 0, 2), mp.TensorLifetime(1, 64, 1, 3), mp.TensorLifetime(2, 16, 2, 2)]
    offsets = mp.greedy_offsets(lifetimes, fixed={0: 64})
    assert offsets[0] == 64 and offsets[1] == 0  # the online 64-byte buffer fits below the fixed one
    mp.check_placement(lifetimes, offsets)


def test_solver_time_out_falls_back_to_greedy(models):
    lifetimes = [
        mp.TensorLifetime(0, 80, 3, 4),
        mp.TensorLifetime(1, 48, 4, 5),
        mp.TensorLifetime(2, 96, 5, 5),
        mp.TensorLifetime(3, 80, 0, 3),
    ]
    placement = mp.solve_placement(lifetimes, time_limit_s=0.0)
    assert placement.status == "fallback" and placement.offsets == mp.greedy_offsets(lifetimes)
    plan = mp.plan_memory(models["residual"], time_limit_s=0.0, reorder=False)
    assert plan.solver_status == "fallback"
    assert plan.planned_head_bytes == plan.greedy_head_bytes
    assert plan.to_dict()["solver_status"] == "fallback"


def test_best_order_is_the_best_topological_order(models):
    """The dynamic programme against every topological order of the two-branch model."""
    graph = mp._read_graph(models["two_branch"], "two_branch")
    needs, _ = mp._dependencies(graph)
    best_bound = min(
        mp.lower_bound_bytes(mp._lifetimes(graph, order))
        for order in itertools.permutations(range(len(graph.op_names)))
        if all(not needs[op] & ~sum(1 << p for p in order[:k]) for k, op in enumerate(order))
    )
    order, exact = mp.best_operator_order(graph)
    assert exact
    assert mp.lower_bound_bytes(mp._lifetimes(graph, order)) == best_bound
    original = mp.lower_bound_bytes(mp._lifetimes(graph, tuple(range(len(graph.op_names)))))
    assert best_bound < original


# ---------------------------------------------------------------------------------------
# The plan on TFLM


@pytest.mark.parametrize("name", list(BUILDERS))
def test_plan_bounds_outputs_and_arena(name, verified):
    result = verified[name]
    plan, verification = result.plan, result.verification
    assert plan.lower_bound_bytes <= plan.planned_head_bytes <= plan.greedy_head_bytes
    assert plan.solver_status in ("optimal", "feasible")
    assert verification.outputs_identical
    assert verification.planned_arena_bytes <= verification.greedy_arena_bytes
    # The greedy planner reproduced exactly, and TFLM placed the tensors where the plan says.
    assert verification.greedy_tflm_head_bytes == plan.greedy_head_bytes
    assert verification.planned_tflm_head_bytes == plan.planned_head_bytes


def test_plan_goes_below_greedy(verified, models):
    residual = verified["residual"]
    assert residual.plan.planned_head_bytes < residual.plan.greedy_head_bytes
    assert residual.used_plan and residual.model_bytes != b""
    assert residual.verification.planned_arena_bytes < residual.verification.greedy_arena_bytes
    chain = verified["chain"]  # nothing to gain on a chain: the model is handed back unchanged
    assert not chain.used_plan and "not smaller" in chain.reason and chain.model_bytes == models["chain"]


def test_a_plan_that_cannot_help_is_not_verified(models, monkeypatch):
    monkeypatch.setattr(mp, "verify_plan", lambda *args, **kwargs: pytest.fail("verified a plan that cannot help"))
    result = mp.plan_and_verify(models["chain"])
    assert not result.used_plan and result.verification is None and result.model_bytes == models["chain"]
    assert result.to_dict()["memory_plan"] == "greedy"


def test_reordering_lowers_the_bound(verified, models):
    result = verified["two_branch"]
    assert result.plan.order_changed and result.plan.order_search == "exact"
    assert result.plan.lower_bound_bytes < result.plan.original_lower_bound_bytes
    assert result.used_plan and result.verification.outputs_identical
    reordered = mp._read_graph(result.model_bytes, "planned")
    original = mp._read_graph(models["two_branch"], "original")
    assert reordered.op_names == tuple(original.op_names[op] for op in result.plan.operator_order)


def test_metadata_layout_is_exact(verified, models):
    result = verified["residual"]
    written = mp.read_offline_plan(result.model_bytes)
    graph = mp._read_graph(models["residual"], "residual")
    assert written["version"] == 1 and written["num_subgraphs"] == 1
    assert written["count"] == graph.num_tensors == len(written["offsets"])
    assert tuple(written["offsets"]) == result.plan.offsets
    for tensor, offset in enumerate(written["offsets"]):
        assert (offset == -1) == (graph.sizes[tensor] == 0)  # constants and the like: planned online
        assert offset == -1 or offset % 16 == 0
    model = schema_module().Model.GetRootAs(result.model_bytes, 0)
    buffer = model.Buffers(written["buffer"])
    assert buffer._tab.Vector(buffer._tab.Offset(4)) % 16 == 0  # TFLM reads the words in place
    assert mp.read_offline_plan(models["residual"]) is None


def test_roundtrip_keeps_outputs_and_alignment(models):
    from edgedistill.tflm import tflm_outputs

    data = models["residual"]
    again = mp.roundtrip_model(data)
    inputs = mp.default_test_inputs(data)
    assert np.array_equal(tflm_outputs(data, inputs, arena_bytes=64_000), tflm_outputs(again, inputs, arena_bytes=64_000))
    model = schema_module().Model.GetRootAs(again, 0)
    for k in range(model.BuffersLength()):
        buffer = model.Buffers(k)
        if buffer.DataLength():
            assert buffer._tab.Vector(buffer._tab.Offset(4)) % 16 == 0


# ---------------------------------------------------------------------------------------
# Bad input


def test_existing_plan_is_kept_unless_replaced(verified, models):
    planned = verified["residual"].model_bytes
    kept = mp.plan_memory(planned)
    assert kept.solver_status == "existing"
    assert kept.planned_head_bytes == verified["residual"].plan.planned_head_bytes
    assert mp.apply_plan(planned, kept) == planned
    replaced = mp.plan_memory(planned, replace_existing=True)
    assert replaced.solver_status in ("optimal", "feasible")
    rewritten = mp.apply_plan(planned, replaced)
    model = schema_module().Model.GetRootAs(rewritten, 0)
    names = [model.Metadata(m).Name().decode() for m in range(model.MetadataLength())]
    assert names.count(mp.METADATA_NAME) == 1
    assert model.BuffersLength() == schema_module().Model.GetRootAs(planned, 0).BuffersLength()


def test_existing_plan_with_wrong_count_is_refused(verified):
    def shorten(schema, model):
        entry = next(e for e in model.metadata if e.name in (mp.METADATA_NAME, mp.METADATA_NAME.encode()))
        words = mp.plan_buffer_words(1, [-1, -1])
        model.buffers[entry.buffer].data = np.frombuffer(words.tobytes(), dtype=np.uint8)

    broken = _edit(verified["residual"].model_bytes, shorten)
    with pytest.raises(InputError, match="plan for 2 tensors"):
        mp.plan_memory(broken)


def test_several_subgraphs_are_refused(models):
    import copy

    two = _edit(models["chain"], lambda schema, model: model.subgraphs.append(copy.deepcopy(model.subgraphs[0])))
    with pytest.raises(InputError, match="2 subgraphs"):
        mp.plan_memory(two)


def test_variable_tensors_stay_online_and_in_order(models):
    data = models["two_branch"]
    graph = mp._read_graph(data, "two_branch")
    hidden = graph.op_outputs[0][0]

    def make_variable(schema, model):
        model.subgraphs[0].tensors[hidden].isVariable = True

    stateful = _edit(data, make_variable)
    plan = mp.plan_memory(stateful)
    assert plan.offsets[hidden] == -1
    assert not plan.order_changed and plan.order_search.startswith("kept: 1 variable")
    planned = mp.apply_plan(stateful, plan)
    assert mp.verify_plan(stateful, planned).outputs_identical


def test_a_model_tflm_refuses_is_one_clear_error(models):
    def unknown_op(schema, model):
        code = model.operatorCodes[model.subgraphs[0].operators[-1].opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.SEGMENT_SUM

    refused = _edit(models["chain"], unknown_op)
    with pytest.raises(InputError, match="does not register: SEGMENT_SUM") as caught:
        mp.plan_memory(refused)
    assert "\n" not in str(caught.value)


def test_a_plan_for_another_model_is_refused(verified, models):
    with pytest.raises(InputError, match="another model"):
        mp.apply_plan(models["chain"], verified["residual"].plan)


def test_a_plan_failing_verification_is_never_handed_back(models, monkeypatch):
    failing = mp.PlanVerification(10_000, 9_000, 0, 0, outputs_identical=False, num_samples=4)
    monkeypatch.setattr(mp, "verify_plan", lambda *args, **kwargs: failing)
    result = mp.plan_and_verify(models["residual"])
    assert result.model_bytes == models["residual"] and not result.used_plan
    assert "differ" in result.reason
    # A smaller arena but a larger head on TFLM (scratch buffers placed around the fixed offsets): not used either.
    higher_head = mp.PlanVerification(10_000, 9_000, 4_096, 4_112, outputs_identical=True, num_samples=4)
    monkeypatch.setattr(mp, "verify_plan", lambda *args, **kwargs: higher_head)
    result = mp.plan_and_verify(models["residual"])
    assert not higher_head.passed and not result.used_plan and result.model_bytes == models["residual"]


def test_micro_command_writes_the_verified_plan(models, tmp_path):
    """`edgedistill micro` plans offline by default; `--memory-plan greedy` keeps TFLM's planner; same outputs."""
    import json

    from conftest import invoke

    model = tmp_path / "residual.tflite"
    model.write_bytes(models["residual"])
    exports = {}
    for mode in ("offline", "greedy"):
        result = invoke("micro", model, "-o", tmp_path / mode, "--memory-plan", mode)
        assert result.exit_code == 0, result.output
        exports[mode] = json.loads((tmp_path / mode / "micro_export.json").read_text())
    offline, greedy = exports["offline"], exports["greedy"]
    assert offline["memory_plan"]["memory_plan"] == "offline" and offline["memory_plan"]["used_plan"] is True
    assert offline["memory_plan"]["planned_head_bytes"] < offline["memory_plan"]["greedy_head_bytes"]
    assert offline["arena_bytes_host"] < greedy["arena_bytes_host"]
    assert greedy["memory_plan"]["memory_plan"] == "greedy"
    expected = {mode: (tmp_path / mode / "test_data.cc").read_text().split("g_test_expected_outputs")[1] for mode in exports}
    assert expected["offline"] == expected["greedy"]  # the planned model computes the same outputs


def test_unknown_memory_plan_is_one_error_line(models, tmp_path):
    from conftest import invoke

    model = tmp_path / "chain.tflite"
    model.write_bytes(models["chain"])
    result = invoke("micro", model, "-o", tmp_path / "m", "--memory-plan", "best")
    assert result.exit_code == 2 and "`memory_plan` must be one of: offline, greedy" in result.output
    assert not (tmp_path / "m").exists()
