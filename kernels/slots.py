"""How every backend lays a graph out over a list of slots: inputs, constants, shared values, nodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..graph.evaluate import leaf_value
from ..graph.var import Input, Shared, Var, toposort


@dataclass
class Layout:
    """Slots 0..n_inputs-1 hold the inputs; `template` holds the constants' values in their slots;
    `shared` lists (slot, container) to read at each call; `steps` are (var, argument slots, slot)
    in execution order; `output_slots` are the outputs' slots."""

    n_inputs: int
    template: list
    shared: list
    constants: list
    steps: list
    output_slots: tuple


def lay_out(inputs: Sequence[Var], outputs: Sequence[Var]) -> Layout:
    """Assign a slot to every value `outputs` need; inputs are cut points (an intermediate given as
    an input replaces its sub-graph); an input the outputs need but the caller did not list raises."""
    slot_of: dict[int, int] = {id(v): k for k, v in enumerate(inputs)}
    template: list = [None] * len(inputs)
    shared: list[tuple[int, object]] = []
    constants: list[np.ndarray] = []
    steps: list[tuple] = []
    for var in toposort(outputs, stop=set(inputs)):
        if id(var) in slot_of:
            continue
        slot_of[id(var)] = slot = len(template)
        template.append(None)
        if var.inputs:
            steps.append((var, tuple(slot_of[id(x)] for x in var.inputs), slot))
        elif isinstance(var.op, Shared):
            shared.append((slot, var.container))
        elif isinstance(var.op, Input):
            leaf_value(var, {})  # raises: the caller did not list this input
        else:
            template[slot] = leaf_value(var, {})
            constants.append(template[slot])
    return Layout(len(inputs), template, shared, constants, steps, tuple(slot_of[id(v)] for v in outputs))


def last_uses(steps: Sequence[tuple], keep: set) -> list[tuple]:
    """For each (var, argument slots, ...) step, the slots whose last reader it is (`keep` excepted)."""
    last_use: dict[int, int] = {}
    for k, step in enumerate(steps):
        for i in step[1]:
            last_use[i] = k
    frees: list[list[int]] = [[] for _ in steps]
    for i, k in last_use.items():
        if i not in keep:
            frees[k].append(i)
    return [tuple(f) for f in frees]
