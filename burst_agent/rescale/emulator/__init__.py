"""Local Rescale-compatible API emulator: the embedded default for the demo and all tests."""

from burst_agent.rescale.emulator.faults import FaultSettings
from burst_agent.rescale.emulator.server import (
    EmulatorHandle,
    EmulatorOptions,
    EmulatorProcess,
    spawn_emulator_process,
    start_emulator,
)

__all__ = [
    "EmulatorHandle",
    "EmulatorOptions",
    "EmulatorProcess",
    "FaultSettings",
    "spawn_emulator_process",
    "start_emulator",
]
