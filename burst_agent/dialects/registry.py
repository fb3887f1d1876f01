"""One Dialect record per scheduler (Slurm, PBS, and "plain": no scheduler) and the lookups by name or env."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from burst_agent.command_wrapper import SchedulerEnv, Value
from burst_agent.dialects import pbs, slurm
from burst_agent.dialects.record import Dialect, Directives

SLURM = Dialect(
    name="slurm",
    default_stdout="slurm-%j.out",
    directives=Directives("#SBATCH", slurm.PREFIX, slurm.parse, shebang_required_by="sbatch"),
    env=SchedulerEnv(
        every_job=(
            ("SLURM_JOB_ID", Value.JOB_ID), ("SLURM_JOBID", Value.JOB_ID), ("SLURM_JOB_NAME", Value.JOB_NAME),
            ("SLURM_NTASKS", Value.NTASKS), ("SLURM_NPROCS", Value.NTASKS),
            ("SLURM_CPUS_PER_TASK", Value.CPUS_PER_TASK), ("SLURM_NNODES", Value.NODES),
            ("SLURM_JOB_NUM_NODES", Value.NODES), ("SLURM_NTASKS_PER_NODE", Value.TASKS_PER_NODE),
            ("SLURM_CPUS_ON_NODE", Value.NODE_CORES), ("SLURM_JOB_CPUS_PER_NODE", Value.NODE_CORES),
            ("SLURM_SUBMIT_DIR", Value.WORKDIR), ("SLURM_JOB_PARTITION", Value.PARTITION),
            ("SLURM_JOB_ACCOUNT", Value.ACCOUNT),
        ),
        array_task=(("SLURM_ARRAY_TASK_ID", Value.ARRAY_TASK_ID), ("SLURM_ARRAY_JOB_ID", Value.ARRAY_JOB_ID)),
        carried=(
            "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NAME", "SLURM_JOB_ACCOUNT", "SLURM_JOB_PARTITION",
            "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
            "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP",
        ),
    ),
    srun_shim=True,  # Slurm scripts call srun for their parallel steps; Rescale nodes have no Slurm
    job_id_var="SLURM_JOB_ID",
    array_task_vars=("SLURM_ARRAY_TASK_ID",),
    array_job_var="SLURM_ARRAY_JOB_ID",
    job_name_var="SLURM_JOB_NAME",
    account_var="SLURM_JOB_ACCOUNT",
    qos_var="SLURM_JOB_QOS",
    workdir_var="SLURM_SUBMIT_DIR",
    self_cancel=("scancel",),
    # `squeue -o "%.8i %.10T %k"` and `sacct -o Comment` show it: the job's owner may set its own
    # job's Comment, with scontrol while it lives and with sacctmgr in the database once it has ended.
    # scontrol takes an array task as 41_3 (its raw id may be the whole array's); sacctmgr the raw id.
    show_record=("scontrol", "update", "JobId={job_ref}", "Comment={text}"),
    keep_record=("sacctmgr", "-i", "modify", "job", "where", "JobID={job_id}", "set", "Comment={text}"),
    # A requeued job runs again with SLURM_RESTART_COUNT one higher; while its run is being ended for
    # the requeue, `scontrol show job` already says Restarts=N+1 (a scancel leaves it at N).
    restart_var="SLURM_RESTART_COUNT",
    restarts_query=("scontrol", "show", "job", "-o", "{job_id}"),
    restarts_pattern=r"\bRestarts=(\d+)\b",
    state_query=("squeue", "-h", "-j", "{job_id}", "-o", "%T"),
)

PBS = Dialect(
    name="pbs",
    default_stdout="%x.o%j",
    # PBS sets OMP_NUM_THREADS to the chunk's ncpus; Slurm only when --cpus-per-task is given.
    directives=Directives("#PBS", pbs.PREFIX, pbs.parse, omp_from_cpus=True),
    env=SchedulerEnv(
        every_job=(
            ("PBS_JOBID", Value.JOB_ID), ("PBS_JOBNAME", Value.JOB_NAME), ("PBS_O_WORKDIR", Value.WORKDIR),
            ("PBS_NODEFILE", Value.NODEFILE), ("PBS_ENVIRONMENT", "PBS_BATCH"),
            ("PBS_QUEUE", Value.PARTITION), ("PBS_O_QUEUE", Value.PARTITION), ("NCPUS", Value.NODE_TASK_CPUS),
            ("PBS_NUM_NODES", Value.NODES), ("PBS_NUM_PPN", Value.TASKS_PER_NODE), ("PBS_NP", Value.NTASKS),
        ),
        array_task=(
            ("PBS_ARRAY_INDEX", Value.ARRAY_TASK_ID), ("PBS_ARRAYID", Value.ARRAY_TASK_ID),
            ("PBS_ARRAY_ID", Value.ARRAY_JOB_ID),
        ),
        carried=(
            "PBS_JOBID", "PBS_JOBNAME", "PBS_QUEUE", "PBS_O_QUEUE", "PBS_ARRAY_ID", "PBS_ARRAY_INDEX",
            "PBS_ARRAYID",
        ),
    ),
    nodefile=True,
    job_id_var="PBS_JOBID",
    array_task_vars=("PBS_ARRAY_INDEX", "PBS_ARRAYID"),  # PBS Pro, then Torque
    array_job_var="PBS_ARRAY_ID",
    job_name_var="PBS_JOBNAME",
    account_var="PBS_ACCOUNT",
    workdir_var="PBS_O_WORKDIR",
    self_cancel=("qdel",),
    # No show_record: PBS lets only operators set a job's comment.
)

PLAIN = Dialect(name="plain", default_stdout="output.log")

# In this order the relay reads a real job's variables (Slurm's first) and auto-detection tries them.
DIALECTS: dict[str, Dialect] = {d.name: d for d in (SLURM, PBS, PLAIN)}
UNMARKED = SLURM  # a script with no directives at all is read as a Slurm script
CARRIED_NAMES = frozenset(name for d in DIALECTS.values() for name in d.env.carried)


def dialect(name: str) -> Dialect:
    """The record of the scheduler called `name` ("slurm", "pbs", "plain"); KeyError for another."""
    return DIALECTS[name]


def dialect_of_env(env: Mapping[str, object]) -> Dialect | None:
    """The scheduler whose job id variable is among a real job's variables, else None."""
    return next((d for d in DIALECTS.values() if d.job_id_var is not None and d.job_id_var in env), None)


def variables(pick: Callable[[Dialect], tuple[str | None, ...]]) -> tuple[str, ...]:
    """One kind of variable of every dialect, in registry order: the relay takes the first one set."""
    return tuple(name for d in DIALECTS.values() for name in pick(d) if name is not None)
