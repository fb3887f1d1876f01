"""The Dialect record: everything burst-agent knows about one scheduler, as one frozen value."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from burst_agent.command_wrapper import SchedulerEnv
from burst_agent.dialects.common import Raw
from burst_agent.dialects.prologue import Directive


@dataclass(frozen=True)
class Directives:
    """A scheduler's batch-script directives: the tag in messages, the line prefix, the line parser."""

    tag: str  # "#SBATCH"
    prefix: re.Pattern[str]
    parse: Callable[[list[Directive], Raw], None]
    omp_from_cpus: bool = False  # OMP_NUM_THREADS is cpus per task even when no cpus were asked for
    shebang_required_by: str | None = None  # the submit command that refuses a script with no #! line


@dataclass(frozen=True)
class Dialect:
    """One scheduler, or none ("plain"): how its scripts read, what its jobs see, what its relay runs."""

    name: str  # ParsedScript.scheduler, the store's scheduler column
    default_stdout: str  # the job's output file when it names none (%j job id, %x job name)
    directives: Directives | None = None  # None: a script of this dialect has no directives
    # The remote job: the variables it exports, the host list file (PBS_NODEFILE), the srun stand-in.
    env: SchedulerEnv = field(default_factory=SchedulerEnv)
    nodefile: bool = False
    srun_shim: bool = False
    # The real job, as the relay sees it: its job id variable (set in every job: it names the
    # scheduler), its array task index, array job id, job name and submit directory variables.
    job_id_var: str | None = None
    array_task_vars: tuple[str, ...] = ()
    array_job_var: str | None = None
    job_name_var: str | None = None
    account_var: str | None = None  # the account the scheduler charged (its default too)
    qos_var: str | None = None  # the job's QOS (the association's default too)
    workdir_var: str | None = None
    # Commands the relay runs as the job's owner: cancel its own job (the job id is appended), show the
    # remote job in the scheduler's record ({job_id} and {text} filled in). None: the scheduler has none.
    self_cancel: tuple[str, ...] | None = None
    # The job's record of its remote life (schedrecord): set while the job lives, and kept in the
    # accounting database once it has ended; both run as the job's owner.
    show_record: tuple[str, ...] | None = None
    keep_record: tuple[str, ...] | None = None
    # Requeue (burst_agent/requeue.py): how many times the job was requeued before this run, the
    # count now ({job_id}; its output matched by `restarts_pattern`), and the job's state (squeue).
    restart_var: str | None = None
    restarts_query: tuple[str, ...] | None = None
    restarts_pattern: str = ""
    state_query: tuple[str, ...] | None = None
