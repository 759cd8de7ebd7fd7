"""An offline memory plan for TensorFlow Lite Micro: tensor offsets below TFLM's own greedy planner.

TFLM places every non-constant tensor in the head section of the arena with a greedy first-fit
planner (``GreedyMemoryPlanner``, largest buffer first). It can instead take the offsets from the
model itself: a metadata entry named ``OfflineMemoryAllocation`` pointing at a buffer of int32
``[version=1, number of subgraphs, n, offset_0 ... offset_{n-1}]``, one offset (bytes from the
start of the head) per tensor of *all* subgraphs, constants included, ``-1`` meaning "plan this
one online". TFLM checks only ``n``; everything else must be exact here. (Read at the pinned
commit of ``firmware/tflm.env``: ``micro_allocation_info.cc``, ``micro_allocator.cc``,
``memory_planner/greedy_memory_planner.cc``, ``docs/memory_management.md``.)

This module:

1. reads the lifetimes TFLM gives each tensor (``AllocationInfoBuilder::MarkAllocationLifetimes``:
   scope 0 before the first operator, operator ``i`` at scope ``i + 1``; graph inputs from scope 0,
   graph outputs to the last scope), sizes aligned up to 16 bytes, and the lower bound of any
   placement (the largest sum of bytes live at one scope);
2. reproduces TFLM's greedy placement exactly (its order of buffers, its first-fit), the baseline;
3. solves the placement exactly with OR-Tools CP-SAT (2D no-overlap of offset x lifetime,
   minimising the head), the greedy placement as hint and as fallback on a time-out;
4. for graphs with branches, searches the topological orders of the operators (dynamic
   programming over the sets of executed operators) for one with a lower peak of live bytes;
5. writes the plan (and the new operator order) into the flatbuffer, and verifies it with the real
   TFLM interpreter (:mod:`edgedistill.tflm`): the smallest arena of both models by bisection and
   every output identical. :func:`plan_and_verify` hands back planned bytes only when they verified.

Scratch buffers that kernels request at ``Prepare`` are not in the flatbuffer; TFLM places them
online around the fixed offsets (first fit), so the measured arena is the figure to trust.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import logging
import time
from typing import Any

import numpy as np

from edgedistill.errors import InputError, StageError

logger = logging.getLogger(__name__)

METADATA_NAME = "OfflineMemoryAllocation"
PLAN_FORMAT_VERSION = 1  # word 0 of the buffer; TFLM ignores it, its tests write 1
ONLINE = -1  # TFLM's kOnlinePlannedBuffer
ALIGNMENT = 16  # MicroArenaBufferAlignment(): sizes aligned up, offsets kept on it
DEFAULT_TIME_LIMIT_S = 10.0
DEFAULT_MAX_ORDER_STATES = 2_000  # sets of run operators kept per layer; ~1 s of Python at 100 operators

# TfLiteTypeSizeOf for the element types a planned (non-constant) tensor may have.
_TYPE_BYTES = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float64": 8,
    "int32": 4,
    "uint32": 4,
    "int16": 2,
    "uint16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "int64": 8,
    "uint64": 8,
    "complex64": 8,
    "complex128": 16,
}

# Operators with effects beyond their output tensors: the order among them is not free.
_ORDER_BOUND_OPS = {
    "ASSIGN_VARIABLE",
    "READ_VARIABLE",
    "VAR_HANDLE",
    "CALL_ONCE",
    "IF",
    "WHILE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "SVDF",
}


def _align(size: int) -> int:
    return -(-size // ALIGNMENT) * ALIGNMENT


# ---------------------------------------------------------------------------------------
# Reading the graph


@dataclasses.dataclass(frozen=True)
class _Graph:
    """What planning needs from the flatbuffer (subgraph 0; ``num_tensors`` counts all subgraphs)."""

    num_tensors: int
    num_subgraphs: int
    sizes: tuple[int, ...]  # aligned bytes per tensor of subgraph 0; 0 when TFLM does not plan it
    op_names: tuple[str, ...]
    op_inputs: tuple[tuple[int, ...], ...]
    op_outputs: tuple[tuple[int, ...], ...]
    graph_inputs: tuple[int, ...]
    graph_outputs: tuple[int, ...]
    variables: tuple[int, ...]
    existing_plan: tuple[int, ...] | None  # offsets of an OfflineMemoryAllocation entry, if any
    existing_count: int | None  # its n

    @property
    def planned(self) -> list[int]:
        """Tensors TFLM places in the head: not constant, not variable, not empty (``needs_allocating``)."""
        return [t for t, size in enumerate(self.sizes) if size > 0]


def _tensor_bytes(tensor: Any, type_names: dict[int, str], index: int, source: str) -> int:
    """``TfLiteEvalTensorByteLength``: elements x element size (a scalar has one element)."""
    dtype = type_names.get(tensor.Type(), f"type_{tensor.Type()}")
    if dtype in ("resource", "variant"):
        raise InputError(
            f"{source}: tensor {index} is a {dtype} tensor (resource variables: VAR_HANDLE, READ_VARIABLE, "
            "ASSIGN_VARIABLE); the offline memory planner does not handle them. Use --memory-plan greedy for this model."
        )
    if dtype not in _TYPE_BYTES:
        raise InputError(
            f"{source}: tensor {index} has element type {dtype}, which the memory planner cannot size "
            f"(expected one of {', '.join(sorted(_TYPE_BYTES))}). Use --memory-plan greedy for this model."
        )
    shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
    return int(np.prod(shape, dtype=np.int64)) * _TYPE_BYTES[dtype] if shape else _TYPE_BYTES[dtype]


def _existing_plan(model: Any) -> tuple[tuple[int, ...] | None, int | None]:
    """The offsets of an ``OfflineMemoryAllocation`` metadata entry (read as TFLM reads them), or ``(None, None)``."""
    for m in range(model.MetadataLength()):
        entry = model.Metadata(m)
        if entry.Name() is not None and entry.Name().decode() == METADATA_NAME:
            words = model.Buffers(entry.Buffer()).DataAsNumpy()
            words = np.frombuffer(np.asarray(words, dtype=np.uint8).tobytes(), dtype="<i4")
            count = int(words[2]) if len(words) >= 3 else -1
            return tuple(int(v) for v in words[3 : 3 + max(count, 0)]), count
    return None, None


def _read_graph(tflite_bytes: bytes, source: str) -> _Graph:
    """Sizes, operators and graph inputs/outputs of subgraph 0, as TFLM's allocator sees them."""
    from edgedistill.tflite_model import operator_names, schema_module, check_flatbuffer, tensor_type_names

    check_flatbuffer(tflite_bytes, source=source)
    schema = schema_module()
    try:
        model = schema.Model.GetRootAs(tflite_bytes, 0)
        names = operator_names(model, schema)
        subgraph = model.Subgraphs(0)
        type_names = tensor_type_names()
        sizes, variables = [], []
        for k in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(k)
            buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
            constant = buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1)
            if tensor.IsVariable():
                variables.append(k)
            planned = not constant and not tensor.IsVariable()
            sizes.append(_align(_tensor_bytes(tensor, type_names, k, source)) if planned else 0)
        operators = [subgraph.Operators(j) for j in range(subgraph.OperatorsLength())]
        existing, count = _existing_plan(model)
        return _Graph(
            num_tensors=sum(model.Subgraphs(s).TensorsLength() for s in range(model.SubgraphsLength())),
            num_subgraphs=model.SubgraphsLength(),
            sizes=tuple(sizes),
            op_names=tuple(names[op.OpcodeIndex()] for op in operators),
            op_inputs=tuple(tuple(int(t) for t in op.InputsAsNumpy()) if op.InputsLength() else () for op in operators),
            op_outputs=tuple(tuple(int(t) for t in op.OutputsAsNumpy()) if op.OutputsLength() else () for op in operators),
            graph_inputs=tuple(int(t) for t in subgraph.InputsAsNumpy()) if subgraph.InputsLength() else (),
            graph_outputs=tuple(int(t) for t in subgraph.OutputsAsNumpy()) if subgraph.OutputsLength() else (),
            variables=tuple(variables),
            existing_plan=existing,
            existing_count=count,
        )
    except InputError:
        raise
    except Exception as error:  # a truncated or corrupt flatbuffer fails anywhere in parsing
        raise InputError(f"The {source} flatbuffer is corrupt ({type(error).__name__}: {error}). Re-export it.") from None


def _check_plannable(graph: _Graph, source: str) -> None:
    """One clear error for what an offline plan cannot serve: control flow, resource variables, ops TFLM lacks."""
    from edgedistill.micro.resolver import TFLM_RESOLVER_METHODS

    if graph.num_subgraphs != 1:
        raise InputError(
            f"{source} has {graph.num_subgraphs} subgraphs (control flow: WHILE, IF or CALL_ONCE); the offline "
            "memory planner handles single-subgraph models only. Use --memory-plan greedy for this model."
        )
    unsupported = sorted({op for op in graph.op_names if op not in TFLM_RESOLVER_METHODS})
    if unsupported:
        raise InputError(
            f"{source} uses op(s) TFLite Micro's op resolver does not register: {', '.join(unsupported)}; TFLM would refuse the "
            "model, planned or not. Change the layers that produce them before planning its memory."
        )


# ---------------------------------------------------------------------------------------
# Lifetimes and the lower bound


@dataclasses.dataclass(frozen=True)
class TensorLifetime:
    """One buffer of the head: a tensor's aligned size and the scopes it is live in (inclusive)."""

    tensor: int
    size_bytes: int
    first: int
    last: int

    def overlaps(self, other: TensorLifetime) -> bool:
        return self.first <= other.last and other.first <= self.last


def _lifetimes(graph: _Graph, order: tuple[int, ...]) -> list[TensorLifetime]:
    """TFLM's ``MarkAllocationLifetimes`` for operators run in ``order``, for the tensors it plans.

    As TFLM does: an operator's outputs are (re)created at its scope, its inputs last used there;
    graph inputs and outputs are marked at scope 0, outputs kept to the last scope; a tensor no
    operator touches keeps the lifetime ``[-1, -1]``.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for tensor in graph.graph_inputs + graph.graph_outputs:
        first[tensor] = last[tensor] = 0
    for scope, op in enumerate(order, start=1):
        for tensor in graph.op_outputs[op]:
            first[tensor] = last[tensor] = scope
        for tensor in graph.op_inputs[op]:
            if tensor >= 0:
                last[tensor] = scope
    for tensor in graph.graph_outputs:
        last[tensor] = len(order)
    return [TensorLifetime(t, graph.sizes[t], first.get(t, -1), last.get(t, -1)) for t in graph.planned]


def lower_bound_bytes(lifetimes: list[TensorLifetime]) -> int:
    """The largest sum of bytes live at one scope: no placement of these lifetimes needs less."""
    live: dict[int, int] = {}
    for buffer in lifetimes:
        for scope in range(buffer.first, buffer.last + 1):
            live[scope] = live.get(scope, 0) + buffer.size_bytes
    return max(live.values(), default=0)


def head_bytes(lifetimes: list[TensorLifetime], offsets: list[int]) -> int:
    """The head section a placement needs (TFLM's ``GetMaximumMemorySize``)."""
    return max((offset + b.size_bytes for b, offset in zip(lifetimes, offsets)), default=0)


# ---------------------------------------------------------------------------------------
# TFLM's greedy planner, reproduced


def greedy_offsets(lifetimes: list[TensorLifetime], fixed: dict[int, int] | None = None) -> list[int]:
    """``GreedyMemoryPlanner::CalculateOffsetsIfNeeded``, step for step, so the baseline is TFLM's own.

    Buffers with a ``fixed`` (offline) offset come first, in tensor order; the others follow in
    decreasing size. TFLM fills its array of online buffers from the back and bubble-sorts it
    stably, so equal sizes go in *reverse* tensor order. Each buffer takes the first gap, in offset
    order, between the buffers live at the same time, else goes after the last of them.
    """
    fixed = fixed or {}
    pinned = [i for i, b in enumerate(lifetimes) if b.tensor in fixed]
    online = [i for i, b in enumerate(lifetimes) if b.tensor not in fixed][::-1]
    online.sort(key=lambda i: -lifetimes[i].size_bytes)
    offsets = [0] * len(lifetimes)
    placed_offsets: list[int] = []  # the placed buffers sorted by offset, ties in insertion order
    placed: list[int] = []
    for i in pinned + online:
        wanted = lifetimes[i]
        candidate = fixed.get(wanted.tensor, 0)
        if wanted.tensor not in fixed:
            for offset, j in zip(placed_offsets, placed):
                if not wanted.overlaps(lifetimes[j]):
                    continue
                if offset - candidate >= wanted.size_bytes:
                    break
                candidate = max(candidate, offset + lifetimes[j].size_bytes)
        offsets[i] = candidate
        position = bisect.bisect_right(placed_offsets, candidate)
        placed_offsets.insert(position, candidate)
        placed.insert(position, i)
    return offsets


# ---------------------------------------------------------------------------------------
# The exact placement (CP-SAT)


@dataclasses.dataclass(frozen=True)
class _Placement:
    offsets: list[int]
    head_bytes: int
    status: str  # optimal | feasible | fallback
    bound_bytes: int  # the best lower bound known (solver's or the live-bytes bound)
    seconds: float


def solve_placement(
    lifetimes: list[TensorLifetime], *, time_limit_s: float = DEFAULT_TIME_LIMIT_S, num_workers: int = 2
) -> _Placement:
    """Offsets minimising the head: CP-SAT over 16-byte units, no two buffers live at the same scope overlapping.

    The greedy placement is the hint and the upper bound, so the answer is never worse than TFLM's;
    on a time-out with no solution it is the answer ("fallback"). When greedy already meets the
    lower bound it is optimal and the solver is not run.
    """
    greedy = greedy_offsets(lifetimes)
    greedy_head = head_bytes(lifetimes, greedy)
    bound = lower_bound_bytes(lifetimes)
    if greedy_head <= bound:
        return _Placement(greedy, greedy_head, "optimal", bound, 0.0)
    from ortools.sat.python import cp_model

    unit = ALIGNMENT
    model = cp_model.CpModel()
    head = model.NewIntVar(bound // unit, greedy_head // unit, "head")
    starts, x_intervals, y_intervals = [], [], []
    for k, (buffer, hint) in enumerate(zip(lifetimes, greedy)):
        size = buffer.size_bytes // unit
        start = model.NewIntVar(0, greedy_head // unit - size, f"offset_{k}")
        model.Add(start + size <= head)
        model.AddHint(start, hint // unit)
        starts.append(start)
        x_intervals.append(model.NewFixedSizeIntervalVar(start, size, f"x_{k}"))
        y_intervals.append(model.NewFixedSizeIntervalVar(buffer.first, buffer.last - buffer.first + 1, f"y_{k}"))
    model.AddNoOverlap2D(x_intervals, y_intervals)
    model.AddHint(head, greedy_head // unit)
    model.Minimize(head)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(float(time_limit_s), 0.0)
    solver.parameters.num_workers = max(1, int(num_workers))
    started = time.monotonic()
    status = solver.Solve(model)
    seconds = time.monotonic() - started
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        logger.warning(
            "CP-SAT found no placement in %.1f s (%s): TFLM's greedy placement is kept", seconds, solver.StatusName(status)
        )
        return _Placement(greedy, greedy_head, "fallback", bound, seconds)
    offsets = [int(solver.Value(start)) * unit for start in starts]
    solved_bound = max(bound, int(np.ceil(solver.BestObjectiveBound() - 1e-9)) * unit)
    name = "optimal" if status == cp_model.OPTIMAL else "feasible"
    return _Placement(offsets, head_bytes(lifetimes, offsets), name, solved_bound, seconds)


def check_placement(lifetimes: list[TensorLifetime], offsets: list[int]) -> None:
    """Raise ``StageError`` if two buffers live at the same scope share bytes, or an offset is off the 16-byte grid."""
    for i, a in enumerate(lifetimes):
        if offsets[i] < 0 or offsets[i] % ALIGNMENT:
            raise StageError(f"memory plan: tensor {a.tensor} got offset {offsets[i]}; expected a multiple of {ALIGNMENT}")
        for j in range(i + 1, len(lifetimes)):
            b = lifetimes[j]
            if a.overlaps(b) and offsets[i] < offsets[j] + b.size_bytes and offsets[j] < offsets[i] + a.size_bytes:
                raise StageError(
                    f"memory plan: tensors {a.tensor} and {b.tensor} are live together but overlap in the arena "
                    f"({offsets[i]}+{a.size_bytes} vs {offsets[j]}+{b.size_bytes}); this is a bug in the planner"
                )


# ---------------------------------------------------------------------------------------
# The operator order


def order_bound_reason(graph: _Graph) -> str | None:
    """Why the operators must keep their order (stateful operators, variable tensors), or None."""
    stateful = sorted({op for op in graph.op_names if op in _ORDER_BOUND_OPS or op.startswith("CUSTOM")})
    if stateful:
        return f"stateful or custom operators ({', '.join(stateful)})"
    if graph.variables:
        return f"{len(graph.variables)} variable tensor(s)"
    return None


def _dependencies(graph: _Graph) -> tuple[list[int], dict[int, list[int]]]:
    """Per operator, the bit mask of operators it needs; per tensor, its consumers."""
    producer = {t: op for op, outputs in enumerate(graph.op_outputs) for t in outputs}
    needs: list[int] = []
    consumers: dict[int, list[int]] = {}
    for op, inputs in enumerate(graph.op_inputs):
        mask = 0
        for tensor in set(t for t in inputs if t >= 0):
            consumers.setdefault(tensor, []).append(op)
            if tensor in producer and producer[tensor] != op:
                mask |= 1 << producer[tensor]
        needs.append(mask)
    return needs, consumers


def _step(graph: _Graph, consumers: dict[int, list[int]], done: int, op: int, live: int) -> tuple[int, int]:
    """(bytes live while ``op`` runs, bytes live after it) when the operators of mask ``done`` ran before it.

    While it runs: everything live before, plus its outputs. After: minus the inputs no operator
    still to run reads (graph outputs stay to the end), minus outputs nobody reads.
    """
    outputs = set(graph.op_outputs[op])
    running = live + sum(graph.sizes[t] for t in outputs)
    after = running
    finished = done | (1 << op)
    kept = set(graph.graph_outputs)
    for tensor in outputs:
        if tensor not in kept and not consumers.get(tensor):
            after -= graph.sizes[tensor]
    for tensor in set(t for t in graph.op_inputs[op] if t >= 0) - kept - outputs:
        if all(finished >> c & 1 for c in consumers[tensor]):
            after -= graph.sizes[tensor]
    return running, after


def best_operator_order(graph: _Graph, *, max_states: int = DEFAULT_MAX_ORDER_STATES) -> tuple[tuple[int, ...], bool]:
    """A topological order of the operators with the lowest peak of live bytes: ``(order, exact)``.

    Dynamic programming over the sets of operators already run (each set reached by its lowest
    peak so far), layer by layer. For a chain there is one set per layer; each independent branch
    multiplies them. Past ``max_states`` sets in a layer only the best are kept (a beam) and the
    answer is no longer proven best (``exact`` False).
    """
    needs, consumers = _dependencies(graph)
    sources = set(graph.graph_inputs) | {t for t in consumers if not any(t in o for o in graph.op_outputs)}
    start_live = sum(graph.sizes[t] for t in sources if consumers.get(t) or t in graph.graph_outputs)
    layer: dict[int, tuple[int, int]] = {0: (start_live, start_live)}  # done mask -> (peak, live)
    parents: dict[int, tuple[int, int]] = {}
    exact = True
    for _ in range(len(graph.op_names)):
        following: dict[int, tuple[int, int]] = {}
        for done, (peak, live) in layer.items():
            for op in range(len(graph.op_names)):
                if done >> op & 1 or needs[op] & ~done:
                    continue
                running, after = _step(graph, consumers, done, op, live)
                key, value = done | (1 << op), (max(peak, running), after)
                if key not in following or value < following[key]:
                    following[key] = value
                    parents[key] = (done, op)
        if len(following) > max_states:
            exact = False
            following = dict(sorted(following.items(), key=lambda item: item[1])[:max_states])
        layer = following
    order, done = [], (1 << len(graph.op_names)) - 1
    while done:
        done, op = parents[done]
        order.append(op)
    return tuple(reversed(order)), exact


# ---------------------------------------------------------------------------------------
# The plan


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """An offline memory plan for one model: the offsets to write and what they are worth.

    ``offsets`` has one entry per tensor of all subgraphs (``-1``: planned online by TFLM), as the
    metadata needs it. Head figures are the tensor section TFLM's planner computes, in bytes;
    the whole arena (head + persistent tail) is measured by :func:`verify_plan`.
    """

    model_sha256: str  # of the model the plan was made for; apply_plan checks it
    num_tensors: int
    offsets: tuple[int, ...]
    operator_order: tuple[int, ...]  # original operator indices, in the planned order
    greedy_head_bytes: int  # TFLM's greedy planner on the original order
    planned_head_bytes: int
    lower_bound_bytes: int  # of the planned order
    original_lower_bound_bytes: int  # of the original order
    solver_status: str  # optimal | feasible | fallback | existing
    solver_bound_bytes: int  # no placement of the planned order needs less
    solver_seconds: float
    order_search: str  # exact | beam | off | kept: <why>
    num_planned_tensors: int

    @property
    def order_changed(self) -> bool:
        return self.operator_order != tuple(range(len(self.operator_order)))

    @property
    def gap_bytes(self) -> int:
        """How far the planned head may be above the best possible for its order (0 when optimal)."""
        return max(0, self.planned_head_bytes - self.solver_bound_bytes)

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.planned_head_bytes / self.greedy_head_bytes if self.greedy_head_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The figures for micro_export.json and the report (the offsets are in the model itself)."""
        return {
            "greedy_head_bytes": self.greedy_head_bytes,
            "planned_head_bytes": self.planned_head_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "original_lower_bound_bytes": self.original_lower_bound_bytes,
            "solver_status": self.solver_status,
            "solver_bound_bytes": self.solver_bound_bytes,
            "gap_bytes": self.gap_bytes,
            "solver_seconds": round(self.solver_seconds, 3),
            "order_changed": self.order_changed,
            "order_search": self.order_search,
            "num_planned_tensors": self.num_planned_tensors,
            "num_tensors": self.num_tensors,
        }


def _offsets_vector(graph: _Graph, lifetimes: list[TensorLifetime], offsets: list[int]) -> tuple[int, ...]:
    """One offset per tensor of all subgraphs: the planned ones, ``-1`` for constants, variables and the rest."""
    vector = [ONLINE] * graph.num_tensors
    for buffer, offset in zip(lifetimes, offsets):
        vector[buffer.tensor] = offset
    return tuple(vector)


def _respect_existing(graph: _Graph, tflite_bytes: bytes, source: str, greedy_head: int) -> MemoryPlan:
    """The plan a model already carries (e.g. from Vela), described, not changed."""
    if graph.existing_count != graph.num_tensors:
        raise InputError(
            f"{source} carries an {METADATA_NAME} plan for {graph.existing_count} tensors but has "
            f"{graph.num_tensors}; TFLM refuses such a model. Replace the plan (replace_existing=True)."
        )
    existing = graph.existing_plan
    assert existing is not None  # plan_memory calls this only for a model that carries a plan
    order = tuple(range(len(graph.op_names)))
    lifetimes = _lifetimes(graph, order)
    fixed = {t: o for t, o in enumerate(existing) if o != ONLINE and graph.sizes[t] > 0}
    offsets = greedy_offsets(lifetimes, fixed)
    bound = lower_bound_bytes(lifetimes)
    logger.info("%s already carries an offline memory plan (head %d bytes): kept", source, head_bytes(lifetimes, offsets))
    return MemoryPlan(
        model_sha256=hashlib.sha256(tflite_bytes).hexdigest(),
        num_tensors=graph.num_tensors,
        offsets=existing,
        operator_order=order,
        greedy_head_bytes=greedy_head,
        planned_head_bytes=head_bytes(lifetimes, offsets),
        lower_bound_bytes=bound,
        original_lower_bound_bytes=bound,
        solver_status="existing",
        solver_bound_bytes=bound,
        solver_seconds=0.0,
        order_search="off",
        num_planned_tensors=len(lifetimes),
    )


def _candidate_orders(graph: _Graph, reorder: bool, max_order_states: int) -> tuple[list[tuple[int, ...]], str]:
    """The orders worth placing, best first: a better topological order (if reordering may and does
    lower the peak of live bytes), then the original one."""
    original = tuple(range(len(graph.op_names)))
    if not reorder:
        return [original], "off"
    reason = order_bound_reason(graph)
    if reason is not None:
        return [original], f"kept: {reason}"
    order, exact = best_operator_order(graph, max_states=max_order_states)
    search = "exact" if exact else "beam"
    if lower_bound_bytes(_lifetimes(graph, order)) < lower_bound_bytes(_lifetimes(graph, original)):
        return [order, original], search
    return [original], search


def _place_orders(
    graph: _Graph, orders: list[tuple[int, ...]], time_limit_s: float, num_workers: int
) -> tuple[tuple[int, ...], list[TensorLifetime], _Placement, float]:
    """The best placement over the candidate orders, within ``time_limit_s`` in all.

    The first (reordered) order gets half the time; if its head is already at or below the original
    order's lower bound, no placement of the original order can beat it and that is skipped.
    """
    started = time.monotonic()
    best: tuple[tuple[int, ...], list[TensorLifetime], _Placement] | None = None
    for rank, order in enumerate(orders):
        lifetimes = _lifetimes(graph, order)
        if best is not None and best[2].head_bytes <= lower_bound_bytes(lifetimes):
            break
        remaining = time_limit_s - (time.monotonic() - started)
        share = remaining / 2 if rank == 0 and len(orders) > 1 else remaining
        placement = solve_placement(lifetimes, time_limit_s=max(share, 0.0), num_workers=num_workers)
        if best is None or placement.head_bytes < best[2].head_bytes:
            best = (order, lifetimes, placement)
    assert best is not None  # orders holds at least the original order
    return (*best, time.monotonic() - started)


def plan_memory(
    tflite_bytes: bytes,
    *,
    time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    reorder: bool = True,
    replace_existing: bool = False,
    num_workers: int = 2,
    max_order_states: int = DEFAULT_MAX_ORDER_STATES,
    source: str = "model",
) -> MemoryPlan:
    """An offline memory plan for a ``.tflite`` model: the head section below TFLM's greedy planner.

    ``time_limit_s`` bounds the CP-SAT solving (in all); on a time-out without a solution the
    greedy placement is kept (``solver_status`` "fallback"). ``reorder`` lets the operators run in
    another topological order when that lowers the peak of live bytes. A model that already
    carries a plan keeps it (``solver_status`` "existing") unless ``replace_existing``.
    """
    graph = _read_graph(tflite_bytes, source)
    _check_plannable(graph, source)
    original = tuple(range(len(graph.op_names)))
    original_lifetimes = _lifetimes(graph, original)
    greedy_head = head_bytes(original_lifetimes, greedy_offsets(original_lifetimes))
    if graph.existing_plan is not None and not replace_existing:
        return _respect_existing(graph, tflite_bytes, source, greedy_head)
    logger.info(
        "planning the memory of %s (%d operators, %d tensors in the head) ...", source, len(original), len(original_lifetimes)
    )
    orders, order_search = _candidate_orders(graph, reorder, max_order_states)
    order, lifetimes, placement, seconds = _place_orders(graph, orders, time_limit_s, num_workers)
    check_placement(lifetimes, placement.offsets)
    plan = MemoryPlan(
        model_sha256=hashlib.sha256(tflite_bytes).hexdigest(),
        num_tensors=graph.num_tensors,
        offsets=_offsets_vector(graph, lifetimes, placement.offsets),
        operator_order=order,
        greedy_head_bytes=greedy_head,
        planned_head_bytes=placement.head_bytes,
        lower_bound_bytes=lower_bound_bytes(lifetimes),
        original_lower_bound_bytes=lower_bound_bytes(original_lifetimes),
        solver_status=placement.status,
        solver_bound_bytes=placement.bound_bytes,
        solver_seconds=seconds,
        order_search=order_search,
        num_planned_tensors=len(lifetimes),
    )
    logger.info(
        "memory plan of %s: head %d bytes (greedy %d, lower bound %d; %s, %.2f s%s)",
        source,
        plan.planned_head_bytes,
        plan.greedy_head_bytes,
        plan.lower_bound_bytes,
        plan.solver_status,
        plan.solver_seconds,
        ", operators reordered" if plan.order_changed else "",
    )
    return plan


# ---------------------------------------------------------------------------------------
# Writing the plan into the flatbuffer


def plan_buffer_words(num_subgraphs: int, offsets: tuple[int, ...] | list[int]) -> np.ndarray:
    """The metadata buffer: int32 little endian ``[version, subgraphs, n, offset_0 ... offset_{n-1}]``."""
    return np.array([PLAN_FORMAT_VERSION, num_subgraphs, len(offsets), *offsets], dtype="<i4")


def read_offline_plan(tflite_bytes: bytes, *, source: str = "model") -> dict[str, Any] | None:
    """The ``OfflineMemoryAllocation`` entry of a model as written (``version``, ``num_subgraphs``,
    ``count``, ``offsets``), or None when it has none."""
    from edgedistill.tflite_model import schema_module, check_flatbuffer

    check_flatbuffer(tflite_bytes, source=source)
    model = schema_module().Model.GetRootAs(tflite_bytes, 0)
    for m in range(model.MetadataLength()):
        entry = model.Metadata(m)
        if entry.Name() is not None and entry.Name().decode() == METADATA_NAME:
            raw = np.asarray(model.Buffers(entry.Buffer()).DataAsNumpy(), dtype=np.uint8).tobytes()
            words = np.frombuffer(raw, dtype="<i4")
            return {
                "version": int(words[0]),
                "num_subgraphs": int(words[1]),
                "count": int(words[2]),
                "offsets": [int(v) for v in words[3:]],
                "buffer": int(entry.Buffer()),
            }
    return None


def _unpack(tflite_bytes: bytes, source: str = "model") -> tuple[Any, Any]:
    """The object model (:func:`edgedistill.tflite_model.unpack_model`), with the fix for the planner."""
    from edgedistill.tflite_model import unpack_model

    return unpack_model(tflite_bytes, source=source, fix="Use --memory-plan greedy for this model.")


def roundtrip_model(tflite_bytes: bytes) -> bytes:
    """The model read and written again unchanged (what :func:`apply_plan` does, without the plan)."""
    from edgedistill.tflite_model import pack_model

    schema, model = _unpack(tflite_bytes)
    return pack_model(schema, model)


def _set_plan_metadata(schema: Any, model: Any, words: np.ndarray) -> None:
    """Put the plan in the model: overwrite an existing entry's buffer, else add a buffer and an entry."""
    name = METADATA_NAME.encode()
    for entry in model.metadata or []:
        entry_name = entry.name.encode() if isinstance(entry.name, str) else entry.name
        if entry_name == name:
            model.buffers[entry.buffer].data = np.frombuffer(words.tobytes(), dtype=np.uint8)
            return
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(words.tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]


def apply_plan(tflite_bytes: bytes, plan: MemoryPlan, *, source: str = "model") -> bytes:
    """The model with the plan's operator order and its ``OfflineMemoryAllocation`` metadata.

    A kept ("existing") plan returns the model unchanged. The result is read back and checked:
    ``n`` equals the number of tensors of all subgraphs and every offset is the plan's.
    """
    if hashlib.sha256(tflite_bytes).hexdigest() != plan.model_sha256:
        raise InputError(
            f"The memory plan was made for another model than {source} (sha256 {plan.model_sha256[:12]}...). "
            "Plan this model with plan_memory() and apply that plan."
        )
    if plan.solver_status == "existing":
        return tflite_bytes
    from edgedistill.tflite_model import pack_model

    schema, model = _unpack(tflite_bytes, source)
    subgraph = model.subgraphs[0]
    if plan.order_changed:
        subgraph.operators = [subgraph.operators[op] for op in plan.operator_order]
    _set_plan_metadata(schema, model, plan_buffer_words(len(model.subgraphs), plan.offsets))
    planned = pack_model(schema, model)
    written = read_offline_plan(planned, source=source)
    if written is None or written["count"] != plan.num_tensors or tuple(written["offsets"]) != plan.offsets:
        raise StageError(f"memory plan: the plan read back from the written {source} differs from the plan; not written")
    return planned


# ---------------------------------------------------------------------------------------
# Verification on the TFLM interpreter


@dataclasses.dataclass(frozen=True)
class PlanVerification:
    """The planned model against the original on the host TFLM interpreter (same allocator as the firmware)."""

    greedy_arena_bytes: int  # smallest arena of the original model (bisection)
    planned_arena_bytes: int  # smallest arena of the planned model
    greedy_tflm_head_bytes: int  # the head TFLM's allocator reported for each
    planned_tflm_head_bytes: int
    outputs_identical: bool
    num_samples: int

    @property
    def passed(self) -> bool:
        """Identical outputs, and neither the arena nor TFLM's head above what TFLM's own plan gives.

        The head is checked too: scratch buffers that kernels request at ``Prepare`` are planned
        online around the fixed offsets and can land higher than among TFLM's own placement, which
        a minimum arena set by init-time temporaries would hide.
        """
        return (
            self.outputs_identical
            and self.planned_arena_bytes <= self.greedy_arena_bytes
            and self.planned_tflm_head_bytes <= self.greedy_tflm_head_bytes
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


def default_test_inputs(tflite_bytes: bytes, *, num_samples: int = 4, seed: int = 0) -> np.ndarray:
    """Random raw inputs in the input tensor's dtype and range (one row per sample), when no test vectors are given."""
    from edgedistill.tflite_model import read_model_info

    detail = read_model_info(tflite_bytes).inputs[0]
    shape = (num_samples, *[max(int(d), 1) for d in detail.shape[1:]])
    dtype = np.dtype(detail.dtype)
    rng = np.random.default_rng(seed)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def _check_single_io(tflite_bytes: bytes, source: str) -> None:
    from edgedistill.tflite_model import read_model_info

    info = read_model_info(tflite_bytes, source=source)
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise InputError(
            f"{source} has {len(info.inputs)} inputs and {len(info.outputs)} outputs; verifying a memory plan runs "
            "TFLM on input 0 and compares output 0 only, so it needs one of each. Use --memory-plan greedy."
        )


def verify_plan(
    original: bytes, planned: bytes, test_inputs: np.ndarray | None = None, *, source: str = "model"
) -> PlanVerification:
    """Measure both models' smallest arena with TFLM (bisection, in subprocesses) and compare their
    outputs on ``test_inputs`` (raw, in the input dtype; random ones when None) bit for bit.

    A model TFLM refuses raises ``StageError`` with TFLM's own message (from :mod:`edgedistill.tflm`).
    """
    from edgedistill.tflm import allocation_breakdown, smallest_arena, tflm_outputs

    _check_single_io(original, source)
    inputs = default_test_inputs(original) if test_inputs is None else np.asarray(test_inputs)
    logger.info("verifying the memory plan of %s on TFLM (%d samples) ...", source, len(inputs))
    greedy_arena = smallest_arena(original, source=f"{source} (greedy plan)").arena_bytes
    planned_arena = smallest_arena(planned, source=f"{source} (offline plan)").arena_bytes
    greedy_outputs = tflm_outputs(original, inputs, arena_bytes=greedy_arena, source=source)
    planned_outputs = tflm_outputs(planned, inputs, arena_bytes=planned_arena, source=f"{source} (offline plan)")
    identical = greedy_outputs.dtype == planned_outputs.dtype and np.array_equal(greedy_outputs, planned_outputs)
    verification = PlanVerification(
        greedy_arena_bytes=greedy_arena,
        planned_arena_bytes=planned_arena,
        greedy_tflm_head_bytes=allocation_breakdown(original, arena_bytes=greedy_arena).head_bytes,
        planned_tflm_head_bytes=allocation_breakdown(planned, arena_bytes=planned_arena).head_bytes,
        outputs_identical=bool(identical),
        num_samples=len(inputs),
    )
    logger.info(
        "memory plan of %s on TFLM: arena %d -> %d bytes, outputs %s",
        source,
        greedy_arena,
        planned_arena,
        "identical" if identical else "DIFFERENT",
    )
    return verification


@dataclasses.dataclass(frozen=True)
class PlannedModel:
    """What :func:`plan_and_verify` decided: ``model_bytes`` is the planned model only when it verified
    and needs a smaller arena; otherwise the original, unchanged (``used_plan`` False, ``reason`` says why)."""

    model_bytes: bytes
    used_plan: bool
    reason: str
    plan: MemoryPlan
    verification: PlanVerification | None

    def to_dict(self) -> dict[str, Any]:
        """For micro_export.json and the report: the plan's figures, the measured arenas, the decision."""
        return {
            "memory_plan": "offline" if self.used_plan else "greedy",
            "used_plan": self.used_plan,
            "reason": self.reason,
            **self.plan.to_dict(),
            "verification": self.verification.to_dict() if self.verification is not None else None,
        }


def plan_and_verify(
    tflite_bytes: bytes,
    test_inputs: np.ndarray | None = None,
    *,
    time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    reorder: bool = True,
    replace_existing: bool = False,
    num_workers: int = 2,
    verify_always: bool = False,
    source: str = "model",
) -> PlannedModel:
    """Plan, write, verify: the planned model when TFLM runs it with identical outputs in a smaller
    arena, else the original model. A plan that fails verification is never handed back.

    A plan that cannot help (same head as TFLM's greedy plan, same operator order) is not verified,
    which saves two arena bisections, unless ``verify_always`` (the benchmark measures every model).
    """
    plan = plan_memory(
        tflite_bytes,
        time_limit_s=time_limit_s,
        reorder=reorder,
        replace_existing=replace_existing,
        num_workers=num_workers,
        source=source,
    )
    if plan.solver_status == "existing":
        return PlannedModel(tflite_bytes, False, "the model carries its own offline plan; kept", plan, None)
    if plan.planned_head_bytes >= plan.greedy_head_bytes and not plan.order_changed and not verify_always:
        reason = f"TFLM's greedy plan is already the best placement (head {plan.greedy_head_bytes} bytes); model kept"
        return PlannedModel(tflite_bytes, False, reason, plan, None)
    planned = apply_plan(tflite_bytes, plan, source=source)
    verification = verify_plan(tflite_bytes, planned, test_inputs, source=source)
    if not verification.outputs_identical:
        reason = "the planned model's TFLM outputs differ from the original's; plan discarded"
        logger.warning("memory plan of %s: %s", source, reason)
        return PlannedModel(tflite_bytes, False, reason, plan, verification)
    if not verification.passed or verification.planned_arena_bytes >= verification.greedy_arena_bytes:
        reason = (
            f"the planned arena ({verification.planned_arena_bytes} bytes, head {verification.planned_tflm_head_bytes}) "
            f"is not smaller than TFLM's greedy plan's ({verification.greedy_arena_bytes} bytes, head "
            f"{verification.greedy_tflm_head_bytes}); the model is kept as it was"
        )
        return PlannedModel(tflite_bytes, False, reason, plan, verification)
    saved = verification.greedy_arena_bytes - verification.planned_arena_bytes
    return PlannedModel(planned, True, f"verified on TFLM: {saved} bytes less arena, outputs identical", plan, verification)


__all__ = [
    "ALIGNMENT",
    "METADATA_NAME",
    "MemoryPlan",
    "PlanVerification",
    "PlannedModel",
    "TensorLifetime",
    "apply_plan",
    "best_operator_order",
    "check_placement",
    "default_test_inputs",
    "greedy_offsets",
    "head_bytes",
    "lower_bound_bytes",
    "plan_and_verify",
    "plan_buffer_words",
    "plan_memory",
    "read_offline_plan",
    "roundtrip_model",
    "solve_placement",
    "verify_plan",
]
