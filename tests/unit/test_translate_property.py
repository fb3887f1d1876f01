"""Property: the chosen hardware satisfies the request and no cheaper fitting choice exists.

The oracle below is written independently of translate.py: it enumerates every (coretype, size,
slots) and checks a placement directly.
"""

import math
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from burst_agent.config import TranslateConfig
from burst_agent.model import Coretype
from burst_agent.request import JobRequest, TranslateError
from burst_agent.translate import choose_hardware

SIZES = st.lists(
    st.sampled_from([1, 2, 4, 8, 12, 16, 24, 32, 36, 48, 64, 96]), min_size=1, max_size=4, unique=True
)
CORETYPE = st.builds(
    lambda i, cores, mem, price, dep, gpu: (
        Coretype(
            f"c{i}" if not gpu else f"gpu{i}", "n", tuple(sorted(cores)), mem, Decimal(price) / 100, dep
        ),
        gpu,
    ),
    st.integers(0, 10**6),
    SIZES,
    st.integers(500, 16000),
    st.integers(1, 80),
    st.booleans(),
    st.sampled_from([0, 0.125, 0.25, 1 / 12]),
)
CATALOGUE = st.lists(CORETYPE, min_size=1, max_size=6, unique_by=lambda t: t[0].code)


@st.composite
def requests(draw):
    fixed = draw(st.booleans())
    cpus = draw(st.integers(1, 8))
    gpu_form = draw(st.sampled_from([None, "node", "task", "total"]))
    gpus = draw(st.integers(1, 4))
    mem_form = draw(st.sampled_from([None, "node", "cpu"]))
    mem = draw(st.integers(100, 64000))
    if fixed:
        nodes, per_node = draw(st.integers(1, 4)), draw(st.integers(1, 8))
        return JobRequest(
            nodes=nodes,
            ntasks=nodes * per_node,
            ntasks_per_node=per_node,
            cpus_per_task=cpus,
            mem_per_node_mb=mem if mem_form else None,
            gpus_per_node=gpus if gpu_form else None,
        )
    return JobRequest(
        ntasks=draw(st.integers(1, 40)),
        cpus_per_task=cpus,
        mem_per_node_mb=mem if mem_form == "node" else None,
        mem_per_cpu_mb=mem // 8 if mem_form == "cpu" else None,
        gpus_per_node=gpus if gpu_form == "node" else None,
        gpus_per_task=gpus if gpu_form == "task" else None,
        gpus_total=gpus * 2 if gpu_form == "total" else None,
    )


def placement_fits(req, cores, mem, gpus, slots):
    """Can ntasks tasks be placed on `slots` nodes of (cores, mem, gpus), each task whole, none idle?"""
    if req.nodes is not None:
        per = req.ntasks_per_node
        return (
            slots == req.nodes
            and per * req.cpus_per_task <= cores
            and (req.mem_per_node_mb or 0) <= mem
            and (req.gpus_per_node or 0) <= gpus
        )
    if slots > req.ntasks:
        return False
    k = req.ntasks // slots + (req.ntasks % slots > 0)  # the busiest node holds k tasks
    need_gpus = max(req.gpus_per_node or 0, k * (req.gpus_per_task or 0))
    if req.gpus_total and (gpus < 1 or slots * gpus < req.gpus_total):
        return False
    return (
        k * req.cpus_per_task <= cores
        and need_gpus <= gpus
        and max(req.mem_per_node_mb or 0, k * req.cpus_per_task * (req.mem_per_cpu_mb or 0)) <= mem
    )


def oracle(req, catalogue, cfg):
    best = None
    for ct, _gpc in catalogue:
        if ct.is_deprecated or (not req.wants_gpus and ct.code.startswith("gpu")):
            continue
        for size in ct.cores:
            gpus = math.floor(size * cfg.gpu_coretypes.get(ct.code, 0) + 1e-6)
            for slots in range(1, 41 + (req.gpus_total or 0)):
                if placement_fits(req, size, size * ct.memory_mb_per_core, gpus, slots):
                    cost = ct.price_per_core_hour * size * slots
                    best = cost if best is None else min(best, cost)
                    break
    return best


@settings(max_examples=200, deadline=None)
@given(requests(), CATALOGUE)
def test_choice_fits_and_nothing_cheaper_fits(req, catalogue):
    cfg = TranslateConfig(gpu_coretypes={ct.code: gpc for ct, gpc in catalogue if gpc})
    cheapest = oracle(req, catalogue, cfg)
    try:
        choice = choose_hardware(req, [ct for ct, _ in catalogue], cfg)
    except TranslateError:
        assert cheapest is None
        return
    gpus = math.floor(choice.cores_per_slot * cfg.gpu_coretypes.get(choice.coretype.code, 0) + 1e-6)
    assert not choice.coretype.is_deprecated
    assert choice.cores_per_slot in choice.coretype.cores
    assert placement_fits(
        req,
        choice.cores_per_slot,
        choice.cores_per_slot * choice.coretype.memory_mb_per_core,
        gpus,
        choice.slots,
    )
    assert choice.price_per_hour == cheapest
