"""A job's full input plan: the selected workdir files plus the script under its remote name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath

from burst_agent.command_wrapper import EXIT_CODE_FILE, NODEFILE, SCRIPT_NAME
from burst_agent.config import StagingConfig
from burst_agent.staging.inputs import InputFile, InputPlan, plan_inputs

# Files the remote command writes for the agent, and the shipped script: never user inputs or outputs.
CONTROL_FILES = frozenset({EXIT_CODE_FILE, NODEFILE, SCRIPT_NAME})


def job_plan(
    workdir: Path | None, script_text: str, script_file: Path, staging: StagingConfig, exclude: list[Path]
) -> InputPlan:
    """What travels: the workdir's selected files (none for a plain script) and the script itself.

    Raises InputSelectionError (or OSError) when the selection is impossible; the job cannot run.
    """
    if workdir is None:
        plan = InputPlan(workdir=script_file.parent, bundle_members=[], large_files=[])
    else:
        plan = plan_inputs(
            workdir, script_text, exclude=exclude, large_threshold=staging.large_file_bytes,
            max_total_bytes=staging.max_input_bytes, max_files=staging.max_input_files,
        )
    members = [m for m in plan.bundle_members if str(m.rel) not in CONTROL_FILES]
    script = InputFile(PurePosixPath(SCRIPT_NAME), script_file, script_file.stat().st_size)
    return replace(plan, bundle_members=[script, *members])
