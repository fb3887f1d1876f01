"""User B cannot read, cancel, replace or steal user A's jobs and files: spool, relay socket, CLI, agent.

Beyond tests/slurm/test_relay_e2e.py::test_user_b_cannot_see_or_cancel_user_a_jobs (status, cancel and
outputs of a running job, `ls`, CLI cancel): here every socket op incl. `output` and `delivered` on a
finished job, forged identity fields, entry-name tricks, spool races, the CLI's status, and a crafted
input manifest that would make the agent read its own files for a user.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import AGENT, SERVICE_USER, USER_A, USER_B, as_user, make_private_dir, py_as, uid, write_as
from rig import wait_until

from burst_agent.spool import EntryRejected, Spool

# As the user: submit an entry with the relay's own input preparation; prints the entry name.
SUBMIT = (
    "import sys; from pathlib import Path; from burst_agent.spool import submit_entry; "
    "from burst_agent.relay import prepare_inputs; from burst_agent.config import StagingConfig; "
    "w = Path(sys.argv[2]); s = sys.argv[3]; req = {'workdir': str(w), 'job_id': sys.argv[4]}; "
    "req.update(__import__('json').loads(sys.argv[5])); "
    "print(submit_entry(sys.argv[1], s, req, build=lambda d: prepare_inputs(d, w, s, StagingConfig())))"
)
# As the user: send each JSON message to the socket; print [answer, bytes read from a passed fd].
CALL = (
    "import json, os, sys; from burst_agent.relayproto import call; out = []\n"
    "for m in json.loads(sys.argv[2]):\n"
    "    a, fds = call(sys.argv[1], m)\n"
    "    out.append([a, os.read(fds[0], 65536).decode(errors='replace') if fds else None])\n"
    "print(json.dumps(out))"
)


def submit(site, user: str, workdir: Path, script: str, job_id: str, extra: dict | None = None) -> str:
    done = py_as(user, SUBMIT, str(site.spool), str(workdir), script, job_id, json.dumps(extra or {}),
                 cwd=workdir)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def calls(site, user: str, messages: list[dict[str, Any]]) -> list[list[Any]]:
    done = py_as(user, CALL, str(site.spool / "agent.sock"), json.dumps(messages))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- the spool ------------------------------------------------------------------------------------


@pytest.fixture
def bare_spool(shared_dir) -> Spool:
    """A spool made by the agent's user (setgid incoming/ and tmp/), with no agent claiming entries."""
    root = make_private_dir(shared_dir, SERVICE_USER)
    done = py_as(SERVICE_USER, "import sys; from burst_agent.spool import Spool; Spool(sys.argv[1]).ensure()",
                 str(root / "spool"))
    assert done.returncode == 0, done.stderr
    return Spool(root / "spool")


def _submit_bare(spool: Spool, user: str, name: str = "") -> Any:
    code = ("import sys; from burst_agent.spool import submit_entry; "
            "print(submit_entry(sys.argv[1], '#!/bin/bash\\necho secret-of-' + sys.argv[2] + '\\n', "
            "{'workdir': '/nonexistent'}, name=sys.argv[3] or None))")
    return py_as(user, code, str(spool.root), user, name)


def test_user_b_cannot_list_read_move_or_change_a_waiting_entry(bare_spool):
    done = _submit_bare(bare_spool, USER_A)
    assert done.returncode == 0, done.stderr
    entry = bare_spool.incoming / done.stdout.strip()
    attempts = {
        "list incoming/": ["ls", str(bare_spool.incoming)],
        "list the entry": ["ls", str(entry)],
        "read the script": ["cat", str(entry / "script")],
        "rename the entry": ["mv", str(entry), f"{entry}-mine"],
        "delete the entry": ["rm", "-rf", str(entry)],
        "replace the script": ["sh", "-c", f"echo 'echo pwned' > {entry}/script"],
        "add a file": ["touch", str(entry / "extra")],
        "list tmp/": ["ls", str(bare_spool.tmp)],
    }
    for what, argv in attempts.items():
        result = as_user(USER_B, argv)
        assert result.returncode != 0, f"user B could {what}: {result.stdout}"
        assert "secret-of" not in result.stdout
    taken = bare_spool.take(entry.name)
    assert (taken.owner_uid, taken.script) == (uid(USER_A), "#!/bin/bash\necho secret-of-burstuser_a\n")


def test_a_name_pre_created_by_b_is_never_used_for_a_job_of_a(bare_spool):
    squatted = _submit_bare(bare_spool, USER_B, "20990101T000000-squatted")
    assert squatted.returncode == 0, squatted.stderr
    done = _submit_bare(bare_spool, USER_A, "20990101T000000-squatted")
    assert done.returncode != 0 and "FileExistsError" in done.stderr, "A's entry replaced or merged into B's"
    taken = bare_spool.take("20990101T000000-squatted")
    assert taken.owner_uid == uid(USER_B), "the squatter's entry must stay the squatter's job"


def test_entries_pointing_at_other_users_files_are_rejected(bare_spool, shared_dir):
    done = _submit_bare(bare_spool, USER_A)
    a_entry = bare_spool.incoming / done.stdout.strip()
    plant = ("import os, sys; i = sys.argv[1]; os.symlink(sys.argv[2], i + '/evil-link'); "
             "os.mkdir(i + '/evil-dir', 0o770); os.symlink(sys.argv[2] + '/script', i + '/evil-dir/script')")
    planted = py_as(USER_B, plant, str(bare_spool.incoming), str(a_entry))
    assert planted.returncode == 0, planted.stderr
    for name, reason in (("evil-link", "entry is a symlink"), ("evil-dir", "script is a symlink")):
        with pytest.raises(EntryRejected, match=reason):
            bare_spool.take(name)
    assert bare_spool.take(a_entry.name).owner_uid == uid(USER_A)


# -- the relay socket -----------------------------------------------------------------------------

FORGED = {"uid": None, "owner_uid": None, "user": USER_A, "owner": USER_A}


def _forged(a_uid: int) -> dict[str, Any]:
    return {k: (a_uid if v is None else v) for k, v in FORGED.items()}


def test_user_b_cannot_touch_a_finished_or_running_job_over_the_socket(site, shared_dir, emu):
    work_a = make_private_dir(shared_dir, USER_A)
    write_as(work_a / "in.txt", "a's data\n", USER_A)
    finished = submit(site, USER_A, work_a, "#!/bin/bash\ncat in.txt > secret.txt\n", "9201")
    running = submit(site, USER_A, work_a, "#!/bin/bash\necho started\nsleep 60\n", "9202")
    site.wait_terminal(finished)
    wait_until(lambda: (site.job(running) or {}).get("remote_job_id"), 60, "A's running job submitted")
    forged = _forged(uid(USER_A))
    for extra in ({}, forged):
        answers = calls(site, USER_B, [
            {"op": "status", "entry": finished, **extra}, {"op": "status", "entry": running, **extra},
            {"op": "outputs", "entry": finished, **extra},
            {"op": "output", "entry": finished, "path": "secret.txt", **extra},
            {"op": "delivered", "entry": finished, **extra}, {"op": "cancel", "entry": running, **extra},
        ])
        assert answers[0][0] == {"state": "unknown"} and answers[1][0] == {"state": "unknown"}, answers
        for answer, data in answers[2:]:
            assert "error" in answer and data is None, f"B got {answer} {data!r} (forged fields: {extra})"
    tricks = [f"../claimed/{running}", f"{running}/", f"./{running}", f"../results/{finished}", ""]
    for answer, _ in calls(site, USER_B, [{"op": "status", "entry": e} for e in tricks]):
        assert answer == {"state": "unknown"}, answer
    job = site.job(running)
    assert job["cancel_requested_at"] is None and job["state"] not in ("cancelled", "failed"), job
    # Positive control: the owner still sees the outputs B tried to delete, and can cancel.
    own = calls(site, USER_A, [{"op": "outputs", "entry": finished},
                               {"op": "output", "entry": finished, "path": "secret.txt"},
                               {"op": "cancel", "entry": running}])
    assert "secret.txt" in own[0][0]["files"] and own[1][1] == "a's data\n", own
    assert "error" not in own[2][0], own
    assert site.wait_terminal(running)["state"] == "cancelled"


def test_user_b_cannot_read_or_cancel_through_the_cli(site, shared_dir):
    work_a = make_private_dir(shared_dir, USER_A)
    entry = submit(site, USER_A, work_a, "#!/bin/bash\nsleep 60\n", "9203")
    wait_until(lambda: (site.job(entry) or {}).get("remote_job_id"), 60, "A's job submitted")
    # B's status and cancel go through the socket (B cannot open the DB): B's own jobs only, never A's.
    for argv in (["status", "--all", "--json"], ["status"], ["cancel", entry], ["cancel", "9203"]):
        done = as_user(USER_B, [str(AGENT), argv[0], "--config", str(site.config), *argv[1:]])
        assert (done.returncode != 0) == (argv[0] == "cancel"), f"`burst-agent {' '.join(argv)}`: {done}"
        assert entry not in done.stdout and str(work_a) not in done.stdout + done.stderr
        assert "9203" not in done.stdout and "Traceback" not in done.stderr
    assert not as_user(USER_B, ["cat", str(site.db)]).stdout, "B can read the state DB"
    assert site.job(entry)["cancel_requested_at"] is None
    as_root = as_user(SERVICE_USER, [str(AGENT), "cancel", "--config", str(site.config), entry])
    assert as_root.returncode == 0, as_root.stderr  # positive control: the agent's user may


def test_forged_identity_in_request_json_is_ignored(site, shared_dir):
    work_a = make_private_dir(shared_dir, USER_A)
    work_b = make_private_dir(shared_dir, USER_B)
    before = sorted(os.listdir(work_a))
    entry = submit(site, USER_B, work_b, "#!/bin/bash\necho b > b-out.txt\n", "9204",
                   {**_forged(uid(USER_A)), "owner_name": USER_A, "workdir": str(work_a)})
    # B even points the job's workdir at A's directory: the agent must not write there for B.
    job = site.wait_terminal(entry)
    assert job["owner_uid"] == uid(USER_B) and job["owner_name"] == USER_B, job
    assert sorted(os.listdir(work_a)) == before
    assert calls(site, USER_A, [{"op": "status", "entry": entry}])[0][0] == {"state": "unknown"}


# -- the agent as a confused deputy -----------------------------------------------------------------

# As the user: a hand-made entry whose input manifest names a file the user cannot read but the agent
# can. The remote script copies whatever arrived into an output the user then fetches.
CRAFT = (
    "import json, os, sys, tarfile, io; from burst_agent.spool import submit_entry\n"
    "spool, target, mode = sys.argv[1:4]\n"
    "script = '#!/bin/bash\\ncat stolen.txt input-bundle.tar.gz > loot.txt 2>&1; exit 0\\n'\n"
    "def build(d):\n"
    "    d = str(d)\n"
    "    with tarfile.open(d + '/input-bundle.tar.gz', 'w:gz') as t:\n"
    "        data = script.encode(); info = tarfile.TarInfo('burst_job_script'); info.size = len(data)\n"
    "        info.mode = 0o755; t.addfile(info, io.BytesIO(data))\n"
    "    os.chmod(d + '/input-bundle.tar.gz', 0o644)\n"
    "    manifest = {'bundle': 'input-bundle.tar.gz', 'bundle_md5s': {}, 'large': []}\n"
    "    if mode == 'large':\n"
    "        manifest['large'] = [{'rel': 'stolen.txt', 'file': target, 'size': 64}]\n"
    "    elif mode == 'bundle':\n"
    "        manifest['bundle'] = target\n"
    "    else:\n"
    "        os.rename(d + '/input-bundle.tar.gz', d + '/real.tar.gz')\n"
    "        os.symlink(target, d + '/input-bundle.tar.gz')\n"
    "    open(d + '/input-manifest.json', 'w').write(json.dumps(manifest))\n"
    "    os.chmod(d + '/input-manifest.json', 0o644)\n"
    "print(submit_entry(spool, script, {'workdir': os.getcwd(), 'job_id': '9300'}, build=build))\n"
)


@pytest.mark.parametrize("mode,target", [
    ("large", "{token}"), ("large", "../../../state/token"), ("bundle", "{token}"), ("symlink", "{token}"),
])
def test_a_crafted_input_manifest_cannot_make_the_agent_upload_its_token(site, shared_dir, emu, mode, target):
    work_b = make_private_dir(shared_dir, USER_B)
    assert as_user(USER_B, ["cat", str(site.token_file)]).returncode != 0  # B cannot read it directly
    done = py_as(USER_B, CRAFT, str(site.spool), target.format(token=site.token_file), mode, cwd=work_b)
    assert done.returncode == 0, done.stderr
    entry = done.stdout.strip()
    site.wait_terminal(entry)
    with emu.store.lock:
        leaked = [f.relative_path or f.name for f in emu.store.files.values()
                  if f.disk_path.exists() and site.token.encode() in f.disk_path.read_bytes()]
    loot = calls(site, USER_B, [{"op": "output", "entry": entry, "path": "loot.txt"}])[0][1] or ""
    assert not leaked and site.token not in loot, (
        f"user B made the agent upload a file only the agent may read ({mode} -> {target}): the token "
        f"reached Rescale in {leaked}; in B's own output loot.txt: {site.token in loot}. "
        f"The agent must confine manifest names to plain files inside the entry (pipeline/submit.py)"
    )


def test_the_token_file_and_state_are_private_to_the_agent(site):
    for path in (site.token_file, site.db, site.state):
        for user in (USER_A, USER_B):
            assert as_user(user, ["cat" if path.is_file() else "ls", str(path)]).returncode != 0, (user, path)
