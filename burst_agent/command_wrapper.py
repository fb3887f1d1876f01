"""The remote command: run the user's script as its scheduler would and keep its exit code (pure)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from burst_agent.arith import ceil_div
from burst_agent.request import JobRequest

SCRIPT_NAME = "burst_job_script"  # the batch script, shipped as an input file under this name
EXIT_CODE_FILE = "burst_exit_code"  # one line: the script's exit status (0-255), an output file
NODEFILE = "burst_nodefile"  # PBS_NODEFILE: one host name per task
REMOTE_LOG = "process_output.log"  # Rescale's own log of the command, in the working directory
CONTROL_DIR = ".burst"  # the command's own files; never an output (safepath.CONTROL_DIR_NAME)
# staging.keep_outputs_on_rescale -> the packed outputs' name. The name tells the agent whether the
# loose copies stayed on Rescale ("all": a bad archive falls back to them) or are gone ("archive").
OUTPUTS_ARCHIVES: dict[str, str] = {"all": f"{CONTROL_DIR}/outputs.tar",
                                    "archive": f"{CONTROL_DIR}/outputs-only.tar"}
STARTED = f"{CONTROL_DIR}/started"  # made first: files whose inode changed after it are the job's
# A file this size or larger stays loose: the archive saves requests, a big file is all bytes.
PACK_MAX_FILE_BYTES = 64 * 1024**2


class RunTime(str):
    """A value the shell computes on the remote node (written unquoted into the command)."""


WORKDIR = RunTime('"$PWD"')
NODEFILE_PATH = RunTime(f'"$PWD/{NODEFILE}"')


class Value(Enum):
    """What a scheduler variable holds: a Dialect's table names the kind, scheduler_environment the value."""

    JOB_ID = "job_id"
    JOB_NAME = "job_name"
    NTASKS = "ntasks"
    CPUS_PER_TASK = "cpus_per_task"
    NODES = "nodes"
    TASKS_PER_NODE = "tasks_per_node"
    NODE_CORES = "node_cores"  # the cores of one Rescale node
    NODE_TASK_CPUS = "node_task_cpus"  # the cpus one node's tasks use
    PARTITION = "partition"
    ACCOUNT = "account"
    WORKDIR = "workdir"
    NODEFILE = "nodefile"
    ARRAY_TASK_ID = "array_task_id"
    ARRAY_JOB_ID = "array_job_id"


# Variable name -> the job's value of that kind, or a fixed text; in the order they are exported.
EnvTable = tuple[tuple[str, Value | str], ...]


@dataclass(frozen=True)
class SchedulerEnv:
    """The variables one scheduler gives its jobs: every job, an array task in addition, and the carried.

    `carried` is the job's identity as the on-site scheduler gave it. The relay runs inside the real
    job, reads these from its environment into the request (`scheduler_env`), and they are exported
    unchanged: a value the scheduler gave always wins over one computed here. Counts (SLURM_NTASKS,
    NCPUS, ...) are not carried: the relay's own job is shrunk to one proxy cpu, the remote job has the
    requested shape. The workdir variables are not carried either: they must name the remote directory.
    """

    every_job: EnvTable = ()
    array_task: EnvTable = ()
    carried: tuple[str, ...] = ()


def _values(
    request: JobRequest, *, slots: int, cores_per_slot: int, job_id: str, job_name: str,
    array_job_id: str | None,
) -> dict[Value, str | None]:
    tasks_per_node = request.ntasks_per_node or ceil_div(request.ntasks, slots)
    task = request.array_task_id
    return {
        Value.JOB_ID: job_id, Value.JOB_NAME: job_name, Value.NTASKS: str(request.ntasks),
        Value.CPUS_PER_TASK: str(request.cpus_per_task), Value.NODES: str(slots),
        Value.TASKS_PER_NODE: str(tasks_per_node), Value.NODE_CORES: str(cores_per_slot),
        Value.NODE_TASK_CPUS: str(tasks_per_node * request.cpus_per_task),
        Value.PARTITION: request.partition, Value.ACCOUNT: request.account,
        Value.WORKDIR: WORKDIR, Value.NODEFILE: NODEFILE_PATH,
        Value.ARRAY_TASK_ID: None if task is None else str(task), Value.ARRAY_JOB_ID: array_job_id or job_id,
    }


def scheduler_environment(
    request: JobRequest, scheduler: SchedulerEnv, *, slots: int, cores_per_slot: int, job_id: str,
    job_name: str, array_job_id: str | None = None,
) -> dict[str, str]:
    """The variables a job expects from its scheduler (RunTime values are computed remotely)."""
    values = _values(request, slots=slots, cores_per_slot=cores_per_slot, job_id=job_id, job_name=job_name,
                     array_job_id=array_job_id)
    table = scheduler.every_job + (scheduler.array_task if request.array_task_id is not None else ())
    env = {name: values[v] if isinstance(v, Value) else v for name, v in table}
    if request.omp_threads is not None:
        env["OMP_NUM_THREADS"] = str(request.omp_threads)
    env |= {k: v for k, v in request.scheduler_env.items() if k in scheduler.carried}
    return {k: v for k, v in env.items() if v is not None}


def _export_line(env: Mapping[str, str]) -> str:
    parts = [f"{name}={v if isinstance(v, RunTime) else shlex.quote(v)}" for name, v in env.items()]
    return "export " + " ".join(parts)


# Slurm scripts call `srun` for their parallel steps; Rescale nodes have no Slurm. This stand-in drops
# srun's own options and runs the step with mpirun across the job's tasks (or directly for one task).
SRUN_SHIM = r"""#!/bin/bash
# burst-agent stand-in for srun on Rescale
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -n|-N|-c|-J|-o|-e|-p|-t|-w|-x|-C|-G|-D) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
if [ "${SLURM_NTASKS:-1}" -gt 1 ] && command -v mpirun >/dev/null 2>&1; then
  hosts=(); [ -s "$HOME/machinefile" ] && hosts=(-machinefile "$HOME/machinefile")
  exec mpirun "${hosts[@]}" -np "$SLURM_NTASKS" "$@"
fi
exec "$@"
"""
SHIM_DIR = f"{CONTROL_DIR}/bin"


def _shim_lines() -> list[str]:
    return [
        f"mkdir -p {SHIM_DIR} && cat > {SHIM_DIR}/srun <<'BURST_SRUN'",
        SRUN_SHIM.rstrip("\n"),
        "BURST_SRUN",
        f'chmod +x {SHIM_DIR}/srun; export PATH="$PWD/{SHIM_DIR}:$PATH"  # Slurm is not there remotely',
    ]


def _pack_lines(keep_outputs: str, script_name: str) -> list[str]:
    """Pack what the job wrote into one archive (the agent fetches it with one request, not one per file).

    Taken: regular files whose inode changed since the start (ctime: `cp -p` or `tar x` cannot age a
    file the job made; unchanged inputs are left out), below PACK_MAX_FILE_BYTES, but not the control
    files, the log or .burst/. Hard links are stored as plain copies. The archive is written under a
    temporary name and renamed only once tar has succeeded, so a stop that kills tar leaves no archive
    (the agent then fetches the loose files). "archive" mode deletes the packed files after the rename,
    so Rescale keeps only the archive; anything not packed stays loose either way.
    """
    archive = OUTPUTS_ARCHIVES[keep_outputs]
    listing, part, errors = f"{CONTROL_DIR}/packlist", f"{archive}.part", f"{CONTROL_DIR}/pack.log"
    leave_out = (EXIT_CODE_FILE, NODEFILE, REMOTE_LOG, script_name)
    excluded = " ".join(f"! -path {shlex.quote('./' + name)}" for name in leave_out)
    delete = f" && xargs -0 rm -f -- < {listing}" if keep_outputs == "archive" else ""
    return [
        f"find . -path ./{CONTROL_DIR} -prune -o -type f -cnewer {STARTED} "
        f"-size -{PACK_MAX_FILE_BYTES + 1}c {excluded} -print0 > {listing} 2>{errors}",
        f"if [ -s {listing} ] && tar -cf {part} --hard-dereference --no-recursion --null -T {listing} "
        f"2>>{errors}; then mv -f {part} {archive}{delete}; fi",
        f"rm -f {listing} {part} {STARTED}; [ -s {errors} ] || rm -f {errors}",
    ]


def build_command(
    env: Mapping[str, str], interpreter: tuple[str, ...], *, ntasks: int, script_name: str = SCRIPT_NAME,
    nodefile: bool = False, srun_shim: bool = False, keep_outputs: str = "all",
) -> str:
    """Bash text Rescale runs in the job's working directory (where the inputs are extracted).

    `keep_outputs` (staging.keep_outputs_on_rescale): "all" leaves every output file on Rescale next
    to the archive, "archive" only the archive (and what was not packed).
    """
    if keep_outputs not in OUTPUTS_ARCHIVES:
        raise ValueError(f"keep_outputs must be one of {', '.join(OUTPUTS_ARCHIVES)}, not {keep_outputs!r}")
    script = shlex.quote(script_name)
    lines = ["# burst-agent: run the batch script as its scheduler would, keep its exit code, pack outputs",
             f"mkdir -p {CONTROL_DIR} && : > {STARTED}"]
    if env:
        lines.append(_export_line(env))
    if srun_shim:
        lines += _shim_lines()
    if nodefile:
        lines.append(
            f'if [ -s "$HOME/machinefile" ]; then cp "$HOME/machinefile" {NODEFILE}; '
            f"else for _ in $(seq 1 {ntasks}); do hostname; done > {NODEFILE}; fi"
        )
    run = " ".join(shlex.quote(part) for part in interpreter)
    lines += [
        f"chmod +x {script}",
        f"{run} ./{script} &",
        "burst_pid=$!",
        # A stop request (SIGTERM) goes to the script; the loop then waits for its real status.
        "trap 'kill -TERM \"$burst_pid\" 2>/dev/null' TERM INT",
        'wait "$burst_pid"; burst_rc=$?',
        'while kill -0 "$burst_pid" 2>/dev/null; do wait "$burst_pid"; burst_rc=$?; done',
        f'echo "$burst_rc" > {EXIT_CODE_FILE}',
        *_pack_lines(keep_outputs, script_name),  # a stopped job gets here too (the trap above)
        'exit "$burst_rc"',
    ]
    return "\n".join(lines)
