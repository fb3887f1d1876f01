"""Spool: producer helper, atomic claim, entry validation, quarantine, watcher wake-up."""

import os
import subprocess
import threading
import time

import pytest

from burst_agent.spool import (
    AlreadyClaimed,
    EntryRejected,
    Spool,
    SpoolWatcher,
    rename_noreplace,
    submit_entry,
)

SCRIPT = "#!/bin/bash\n#SBATCH -n 4\necho hi\n"


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool", plain_settle_s=0.0).ensure()


def drop_plain(spool, name, data: bytes, age=10.0):
    path = spool.incoming / name
    path.write_bytes(data)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def reason_of(spool, name):
    return (spool.failed / f"{name}.reason").read_text().splitlines()[0]


def test_layout_modes(spool):
    expected = {"incoming", "claimed", "failed", "results", "tmp", "logs"}
    assert {p.name for p in spool.root.iterdir()} == expected
    assert oct(spool.incoming.stat().st_mode & 0o7777) == "0o3733"
    assert oct(spool.claimed.stat().st_mode & 0o7777) == "0o700"


def test_directory_entry_with_request(spool):
    name = submit_entry(spool, SCRIPT, {"workdir": "/home/ann", "partition": "rescale"})
    assert spool.list_incoming() == [name]
    assert not list(spool.tmp.iterdir())
    entry = spool.take(name)
    assert (entry.kind, entry.script, entry.request["workdir"]) == ("dir", SCRIPT, "/home/ann")
    assert (entry.owner_uid, entry.results_dir) == (os.getuid(), None)
    assert spool.list_incoming() == [] and spool.list_claimed() == [name]


def test_owner_comes_from_the_filesystem_not_the_request(spool):
    name = submit_entry(spool, SCRIPT, {"uid": 0, "user": "root"})
    entry = spool.incoming / name
    for path in (entry, entry / "script", entry / "request.json"):
        os.chown(path, 4321, 4321)
    assert spool.take(name).owner_uid == 4321


def test_plain_file_entry(spool):
    drop_plain(spool, "job.sh", SCRIPT.encode())
    entry = spool.take("job.sh")
    assert (entry.kind, entry.script, entry.request) == ("file", SCRIPT, None)
    assert entry.results_dir == spool.root / "results" / "job.sh"
    assert spool.results_dir("job.sh").is_dir()


def test_fresh_plain_file_is_held_back_until_settled(tmp_path):
    spool = Spool(tmp_path, plain_settle_s=30.0).ensure()
    drop_plain(spool, "new.sh", b"echo\n", age=0)
    drop_plain(spool, "old.sh", b"echo\n", age=60)
    assert spool.list_incoming() == ["old.sh"]


def test_listing_order_and_ignored_names(spool):
    drop_plain(spool, "b.sh", b"echo\n", age=5)
    drop_plain(spool, "a.sh", b"echo\n", age=5)
    drop_plain(spool, "c.sh", b"echo\n", age=50)
    for ignored in (".hidden", "x.sh.tmp", "y.part", "z~"):
        drop_plain(spool, ignored, b"echo\n")
    os.utime(spool.incoming / "a.sh", ns=(5, 5))
    os.utime(spool.incoming / "b.sh", ns=(5, 5))
    assert spool.list_incoming() == ["a.sh", "b.sh", "c.sh"]


def test_two_claimers_only_one_wins(spool):
    name = submit_entry(spool, SCRIPT)
    results, barrier = [], threading.Barrier(2)

    def claim():
        barrier.wait()
        try:
            results.append(spool.claim(name))
        except AlreadyClaimed as exc:
            results.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(r).__name__ for r in results) == ["AlreadyClaimed", "PosixPath"]
    assert "already claimed" in str(next(r for r in results if isinstance(r, AlreadyClaimed)))


def test_reused_name_is_claimed_under_a_new_name_not_overwritten(spool):
    drop_plain(spool, "job.sh", b"echo first\n")
    spool.claim("job.sh")
    drop_plain(spool, "job.sh", b"echo second\n")
    assert spool.claim("job.sh").name == "job.sh.2"
    assert (spool.claimed / "job.sh").read_bytes() == b"echo first\n"
    assert (spool.claimed / "job.sh.2").read_bytes() == b"echo second\n"


def test_a_name_a_finished_job_used_is_not_reused(spool):
    drop_plain(spool, "job.sh", b"echo again\n")
    entry = spool.take("job.sh", taken=lambda name: name in {"job.sh", "job.sh.2"})
    assert (entry.name, entry.script) == ("job.sh.3", "echo again\n")


def test_group_writable_script_is_refused_as_not_its_owners_word(spool):
    drop_plain(spool, "gw.sh", b"echo hi\n")
    os.chmod(spool.incoming / "gw.sh", 0o664)
    with pytest.raises(EntryRejected, match="writable by group or others"):
        spool.take("gw.sh")


def test_retire_moves_an_entry_it_cannot_delete_to_failed(spool, tmp_path):
    name = submit_entry(spool, SCRIPT)
    spool.claim(name)
    _deep_tree(spool.claimed / name, 1200)
    spool.retire(name)
    try:
        assert not (spool.claimed / name).exists()
        assert "too deep" in (spool.failed / f"{name}.reason").read_text()
    finally:
        subprocess.run(["rm", "-rf", str(spool.failed / name)], check=True)  # pytest's cleanup recurses


def _deep_tree(top, depth: int) -> None:
    fd = os.open(top, os.O_RDONLY)
    for _ in range(depth):  # one level at a time: os.makedirs itself recurses
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"#!/bin/sh\n\0\x01\x02", "contains NUL bytes"), (b"#!/bin/sh\necho \xff\xfe\n", "not UTF-8"),
     (b"x" * (1024 * 1024 + 1), "larger than the 1048576-byte limit"), (b"  \n", "script is empty")],
)
def test_bad_script_is_quarantined_with_reason(spool, data, reason):
    drop_plain(spool, "bad.sh", data)
    with pytest.raises(EntryRejected, match=reason):
        spool.take("bad.sh")
    assert (spool.failed / "bad.sh").read_bytes() == data
    assert reason in reason_of(spool, "bad.sh")


def test_symlink_entry_is_quarantined(spool, tmp_path):
    target = tmp_path / "secret"
    target.write_text(SCRIPT)
    os.symlink(target, spool.incoming / "link.sh")
    with pytest.raises(EntryRejected, match="entry is a symlink"):
        spool.take("link.sh")
    assert os.path.islink(spool.failed / "link.sh")
    assert reason_of(spool, "link.sh") == "entry is a symlink"
    assert target.read_text() == SCRIPT


def test_symlinked_script_inside_directory_is_quarantined(spool, tmp_path):
    (tmp_path / "real").write_text(SCRIPT)
    os.mkdir(spool.incoming / "d1")
    os.symlink(tmp_path / "real", spool.incoming / "d1" / "script")
    with pytest.raises(EntryRejected, match="script is a symlink"):
        spool.take("d1")
    assert reason_of(spool, "d1") == "script is a symlink"


@pytest.mark.parametrize(("body", "reason"), [(b"[1, 2]", "JSON object"), (b"{nope", "not valid JSON")])
def test_bad_request_json_is_rejected(spool, body, reason):
    name = submit_entry(spool, SCRIPT)
    (spool.incoming / name / "request.json").write_bytes(body)
    with pytest.raises(EntryRejected, match=reason):
        spool.take(name)


def test_quarantine_never_overwrites(spool):
    for text in (b"echo 1\n", b"echo 2\n"):
        drop_plain(spool, "q.sh", text)
        spool.quarantine("q.sh", f"reason {text!r}")
    assert (spool.failed / "q.sh").read_bytes() == b"echo 1\n"
    assert (spool.failed / "q.sh.1").read_bytes() == b"echo 2\n"
    assert reason_of(spool, "q.sh.1") == "reason b'echo 2\\n'"


def test_rename_noreplace_refuses_to_replace(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "b"


@pytest.mark.parametrize("use_inotify", [True, False])
def test_watcher_wakes_on_arrival(spool, use_inotify):
    with SpoolWatcher(spool, poll_interval=0.05, use_inotify=use_inotify) as watcher:
        assert watcher.mode == ("inotify" if use_inotify else "scan")
        timer = threading.Timer(0.1, submit_entry, args=(spool, SCRIPT))
        timer.start()
        woke = watcher.wait(10.0)
        timer.join()
    assert woke
    assert len(spool.list_incoming()) == 1


def test_watcher_ignores_dotfiles_and_times_out(spool):
    with SpoolWatcher(spool) as watcher:
        (spool.incoming / ".partial").write_text("x")
        assert watcher.wait(0.1) is False


def test_script_owned_by_someone_else_is_rejected(spool):
    name = submit_entry(spool, SCRIPT)
    os.chown(spool.incoming / name, 4321, 4321)
    with pytest.raises(EntryRejected, match="owned by uid 0, the entry by uid 4321"):
        spool.take(name)


def test_hard_linked_plain_file_is_rejected(spool, tmp_path):
    other = drop_plain(spool, "h.sh", SCRIPT.encode())
    os.link(other, tmp_path / "second-name")
    with pytest.raises(EntryRejected, match="2 hard links"):
        spool.take("h.sh")


def test_watcher_wakes_when_held_back_plain_file_settles(tmp_path):
    spool = Spool(tmp_path, plain_settle_s=0.25).ensure()
    drop_plain(spool, "late.sh", b"echo\n", age=0)
    assert spool.list_incoming() == []
    with SpoolWatcher(spool) as watcher:
        assert watcher.wait(10.0)
    assert spool.list_incoming() == ["late.sh"]
