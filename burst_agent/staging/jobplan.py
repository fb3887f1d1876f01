"""A job's full input plan: the selected workdir files plus the script under its remote name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath

from burst_agent.command_wrapper import EXIT_CODE_FILE, NODEFILE, SCRIPT_NAME
from burst_agent.config import StagingConfig
from burst_agent.staging.bundle import open_member
from burst_agent.staging.inputs import (
    InputFile,
    InputPatternError,
    InputPlan,
    parse_input_directives,
    plan_inputs,
)

# Files the remote command writes for the agent, and the shipped script: never user inputs or outputs.
CONTROL_FILES = frozenset({EXIT_CODE_FILE, NODEFILE, SCRIPT_NAME})
NO_WORKDIR = ("a plain script entry has no working directory to take inputs from: submit it with "
              "sbatch/qsub, or drop a directory entry whose request.json names its workdir")


def _is_script(member: InputFile, script: bytes) -> bool:
    """The submitted script itself (its bytes, compared only when the size matches): it travels as
    SCRIPT_NAME, and the relay learns its content, never its path."""
    if member.size != len(script):
        return False
    try:
        handle, _st = open_member(member)
    except OSError:
        return False
    with handle:
        return handle.read(len(script) + 1) == script


def job_plan(
    workdir: Path | None, script_text: str, script_file: Path, staging: StagingConfig, exclude: list[Path]
) -> InputPlan:
    """What travels: the workdir's selected files (none for a plain script) and the script itself.

    Raises InputSelectionError (or OSError) when the selection is impossible; the job cannot run.
    """
    if workdir is None:
        directive = next(iter(parse_input_directives(script_text)), None)
        if directive is not None:  # silently running without the inputs it names would be worse
            raise InputPatternError(directive.lineno, directive.line, NO_WORKDIR)
        plan = InputPlan(workdir=script_file.parent, bundle_members=[], large_files=[])
    else:
        plan = plan_inputs(
            workdir, script_text, exclude=exclude, large_threshold=staging.large_file_bytes,
            max_total_bytes=staging.max_input_bytes, max_files=staging.max_input_files,
        )
    script_bytes = script_text.encode("utf-8", "surrogateescape")

    def kept(members: list[InputFile]) -> list[InputFile]:
        return [m for m in members if str(m.rel) not in CONTROL_FILES and not _is_script(m, script_bytes)]

    script = InputFile(PurePosixPath(SCRIPT_NAME), script_file, script_file.stat().st_size)
    return replace(plan, bundle_members=[script, *kept(plan.bundle_members)],
                   large_files=kept(plan.large_files))
