"""Sizing a held burst job's cloud-core charge from its relay wrapper (burst_agent/chargesize.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from burst_agent.chargesize import HeldJob, embedded, held_jobs, size, sizing_mark, with_license
from burst_agent.config import config_from_mapping
from burst_agent.translate import load_catalogue

DATA = Path(__file__).parents[2] / "burst_agent" / "data" / "coretypes.json"
CATALOGUE = load_catalogue(json.loads(DATA.read_text()))
CFG = config_from_mapping({}).translate
JOB = HeldJob("41", "rescale_cores:6", "physics", "normal")


def _b64_lines(text: str) -> str:
    data = base64.b64encode(text.encode()).decode()
    return "\n".join(data[i:i + 76] for i in range(0, len(data), 76))


def wrapper(script: str, request: dict) -> str:
    """The shape job_submit.lua writes (wrapper_script): two base64 here-documents."""
    return (f"#!/bin/bash\nset -eu\nbase64 -d >\"$dir/script\" <<'BURST_AGENT_SCRIPT'\n{_b64_lines(script)}\n"
            f"BURST_AGENT_SCRIPT\nbase64 -d >\"$dir/request.json\" <<'BURST_AGENT_REQUEST'\n"
            f"{_b64_lines(json.dumps(request))}\nBURST_AGENT_REQUEST\nexec relay\n")


def test_a_job_whose_memory_rounds_it_up_is_charged_the_cores_it_will_run_on():
    script = "#!/bin/bash\n" + "# a long line to span base64 lines\n" * 5 + "srun ./solver\n"
    held = wrapper(script, {"ntasks": 6, "mem_per_node_mb": 20480})
    sizing = size(JOB, held, CATALOGUE, CFG, "rescale_cores")
    assert sizing.licenses == "rescale_cores:8" and sizing.note == "8 cloud cores"


def test_the_scripts_own_directives_count_as_the_agent_will_read_them():
    held = wrapper("#!/bin/bash\n#SBATCH -n 3 --mem-per-cpu=8G\n", {})
    assert size(JOB, held, CATALOGUE, CFG, "rescale_cores").licenses == "rescale_cores:4"


def test_an_untranslatable_or_foreign_script_keeps_the_estimate_and_says_why():
    huge = size(JOB, wrapper("#!/bin/bash\n", {"ntasks": 10**6}), CATALOGUE, CFG, "rescale_cores")
    assert huge.licenses is None and huge.note.startswith("not translatable (")
    foreign = size(JOB, "#!/bin/bash\necho not ours\n", CATALOGUE, CFG, "rescale_cores")
    assert foreign.licenses is None and "no relay wrapper" in foreign.note
    assert embedded("x <<'BURST_AGENT_SCRIPT'\n!!!\nBURST_AGENT_SCRIPT\n") is None


def test_other_licenses_are_kept_and_ours_replaced():
    assert with_license("matlab:1,rescale_cores:6", "rescale_cores", 8) == "matlab:1,rescale_cores:8"
    assert with_license("", "rescale_cores", 2) == "rescale_cores:2"
    remote = "rescale_cores_big@db:3"
    assert with_license(remote, "rescale_cores", 2) == f"{remote},rescale_cores:2"


def test_squeue_lines_of_held_jobs_are_read_and_others_skipped():
    text = "41|JobHeldAdmin|physics|normal|rescale_cores:6\n42|Resources|physics|normal|rescale_cores:2\n" \
           "43|JobHeldUser|chem|(null)|\nnot|a|line\n"
    assert held_jobs(text) == [JOB, HeldJob("43", "", "chem", None)]


def test_only_a_job_whose_admin_comment_is_a_sizing_mark_once_is_sized():
    line = "JobId=41 JobName=a b Licenses=rescale_cores:6 AdminComment=burst-agent:sizing Comment=x"
    assert sizing_mark(line) == "burst-agent:sizing"
    assert sizing_mark(line.replace(":sizing ", ":sizing,held ")) == "burst-agent:sizing,held"
    sized = line.replace("AdminComment=burst-agent:sizing", "AdminComment=burst-agent")
    assert sizing_mark(sized) is None
    assert sizing_mark(line.replace("JobName=a b", "JobName=a AdminComment=burst-agent")) is None


def test_a_line_that_repeats_the_field_is_unreadable_not_sizing():
    from burst_agent.chargesize import unreadable

    line = "JobId=41 WorkDir=/home/a/x AdminComment=burst-agent:sizing AdminComment=burst-agent:sizing"
    assert unreadable(line) and sizing_mark(line) is None
    assert not unreadable("JobId=41 AdminComment=burst-agent:sizing")


def test_a_pass_sets_the_charge_releases_then_unmarks_and_keeps_a_hold_asked_for():
    from burst_agent.commands.size_charges import one_pass

    calls: list[str] = []
    marks = {"41": "burst-agent:sizing", "43": "burst-agent:sizing,held"}
    held = "41|JobHeldUser|physics|normal|rescale_cores:6\n43|JobHeldUser|physics|normal|\n"
    script = wrapper("#!/bin/bash\n", {"ntasks": 6, "mem_per_node_mb": 20480})
    outputs = {"squeue": held, "show": "JobId={id} AdminComment={mark}", "write": script}

    def run(argv: list[str]) -> str:
        job = next((a for a in argv if a in marks), argv[-1].split("=")[-1])
        calls.append(" ".join(argv[1:]) if argv[0] == "scontrol" and argv[1] in ("update", "release") else "")
        key = "squeue" if argv[0] == "squeue" else argv[1]
        return outputs.get(key, "").format(id=job, mark=marks.get(job, ""))

    assert one_pass(run, "rescale", "rescale_cores", CATALOGUE, CFG, set(), sizers=1) == 1
    assert [c for c in calls if c] == ["update JobId=41 Licenses=rescale_cores:8", "release 41",
                                       "update JobId=41 AdminComment=burst-agent",
                                       "update JobId=43 Licenses=rescale_cores:8",
                                       "update JobId=43 AdminComment=burst-agent"]
