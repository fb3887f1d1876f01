"""The bad-input catalogue: one table of (name, how to build the entry, expected reason substring)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from burst_agent.spool import REQUEST_MAX_BYTES, SCRIPT_MAX_BYTES

Builder = Callable[[Path], None]  # creates the entry AT the given path (inside the spool's tmp/)

OK_SCRIPT = "#!/bin/bash\necho fine\n"
FOREIGN_UID = 12345


@dataclass(frozen=True)
class Case:
    """One malformed entry: its spool name, its builder and a substring its quarantine reason must hold."""

    name: str
    build: Builder
    reason: str
    note: str = ""  # why the expectation is what it is, where that is not obvious


# -- builders ------------------------------------------------------------------------------------


def plain(data: bytes | str) -> Builder:
    raw = data.encode() if isinstance(data, str) else data
    return lambda path: path.write_bytes(raw)


def script(*directives: str, body: str = "echo ran\n") -> Builder:
    return plain("#!/bin/bash\n" + "".join(f"{d}\n" for d in directives) + body)


def entry_dir(files: dict[str, bytes | str | Builder]) -> Builder:
    """A directory entry; values are file contents, or builders for special files (FIFO, symlink...)."""

    def build(path: Path) -> None:
        path.mkdir()
        for name, content in files.items():
            if callable(content):
                content(path / name)
            else:
                (path / name).write_bytes(content.encode() if isinstance(content, str) else content)

    return build


def with_request(request: bytes | str | object, script_text: str = OK_SCRIPT) -> Builder:
    raw = request if isinstance(request, bytes | str) else json.dumps(request)
    return entry_dir({"script": script_text, "request.json": raw})


def fifo(path: Path) -> None:
    os.mkfifo(path)


def char_device(minor: int) -> Builder:  # 1,3 is /dev/null, 1,5 is /dev/zero (an endless read)
    return lambda path: os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, minor))


def symlink_to(target: str) -> Builder:
    return lambda path: path.symlink_to(target)


def symlink_to_real(make: Builder) -> Builder:
    """A symlink to a well-formed entry built beside the spool (outside incoming/)."""

    def build(path: Path) -> None:
        real = path.parent.parent.parent / f"outside-{path.name}"
        make(real)
        path.symlink_to(real)

    return build


def hard_linked(path: Path) -> None:
    path.write_text(OK_SCRIPT)
    os.link(path, path.with_name(path.name + ".second-link.tmp"))


def nested_dirs(depth: int) -> Builder:
    def build(path: Path) -> None:
        path.joinpath(*["deeper"] * depth).mkdir(parents=True)

    return build


def foreign_owned(path: Path) -> None:
    path.write_text(OK_SCRIPT)
    os.chown(path, FOREIGN_UID, FOREIGN_UID)


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


MiB = 1024 * 1024

# -- the table -------------------------------------------------------------------------------------
# Order matters a little: the agent takes entries oldest first and the harness gives them mtimes in
# table order, so if one entry wedges the intake loop the ones before it are still judged.

CASES: tuple[Case, ...] = (
    # bytes that are not a script
    Case("binary-junk", plain(bytes(range(256)) * 64), "contains NUL bytes"),
    Case("elf-binary", plain(b"\x7fELF\x02\x01\x01" + b"\0" * 512), "contains NUL bytes"),
    Case("high-bytes-no-nul", plain(bytes(range(0x80, 0x100)) * 16), "not UTF-8"),
    Case("nul-in-script", plain("#!/bin/bash\necho a\0b\n"), "contains NUL bytes"),
    # size caps
    Case("huge-file", plain("#!/bin/bash\n" + "echo filler\n" * (SCRIPT_MAX_BYTES // 12 + 1)),
         f"larger than the {SCRIPT_MAX_BYTES}-byte limit"),
    Case("ten-mb-single-line", plain(b"#!/bin/bash\necho " + b"a" * (10 * MiB)),
         f"larger than the {SCRIPT_MAX_BYTES}-byte limit"),
    # encodings
    Case("latin-1", plain("#!/bin/bash\necho café\n".encode("latin-1")), "not UTF-8"),
    Case("utf-16-bom", plain("#!/bin/bash\necho hi\n".encode("utf-16")), "contains NUL bytes",
         "UTF-16 text is full of NUL bytes; sbatch refuses it for the same reason"),
    Case("lone-surrogate", plain(b"#!/bin/bash\necho \xed\xa0\x80\n"), "not UTF-8"),
    Case("overlong-utf8", plain(b"#!/bin/bash\necho \xc0\xaf\n"), "not UTF-8"),
    Case("utf-8-bom", plain(b"\xef\xbb\xbf#!/bin/bash\n#SBATCH -N 4\necho hi\n"), "byte order mark",
         "sbatch refuses it (no #! at byte 0); accepted, every directive would be silently ignored"),
    Case("crlf-line-breaks", plain("#!/bin/bash\r\n#SBATCH -n 1\r\necho hi\r\n"), "DOS line breaks",
         "sbatch 22.05: 'Batch script contains DOS line breaks (\\r\\n)'"),
    # empty / no work
    Case("empty-file", plain(b""), "script is empty"),
    Case("whitespace-only", plain(" \n\t\n\n"), "script is empty"),
    Case("directives-only", plain("#!/bin/bash\n#SBATCH -n 2\n#SBATCH -t 10\n"), "no command",
         "sbatch accepts it, but a cloud cluster started to run nothing only costs money"),
    # counts and resources
    Case("nodes-absurd", script("#SBATCH -N 999999999"), "999999999",
         "sbatch: 'Requested node configuration is not available'"),
    Case("ntasks-overflow", script("#SBATCH -n 99999999999999999999999"), "99999999999999999999999"),
    Case("mem-absurd", script("#SBATCH --mem=99999T"), "no coretype fits"),
    Case("gpus-absurd", script("#SBATCH --gres=gpu:99999"), "no coretype fits"),
    Case("ntasks-zero", script("#SBATCH -n 0"), "ntasks must be at least 1"),
    Case("nodes-negative", script("#SBATCH -N -5"), "nodes must be a count"),
    Case("cpus-negative", script("#SBATCH --cpus-per-task=-1"), "cpus-per-task must be a whole number"),
    Case("mem-negative", script("#SBATCH --mem=-5G"), "invalid memory"),
    Case("time-absurd", script("#SBATCH --time=99999999"), "max_walltime_hours"),
    Case("time-garbage", script("#SBATCH --time=abc"), "invalid time"),
    Case("unclosed-quote", script('#SBATCH -J "oops'), "No closing quotation"),
    Case("mixed-dialects", script("#SBATCH -n 1", "#PBS -l nodes=1"), "both #SBATCH and #PBS"),
    # not a regular file (these fail for root too: there is nothing to read)
    Case("fifo-entry", fifo, "neither a regular file nor a directory"),
    Case("device-entry", char_device(3), "neither a regular file nor a directory"),
    Case("symlink-entry", symlink_to_real(plain(OK_SCRIPT)), "entry is a symlink"),
    Case("symlink-dir-entry", symlink_to_real(entry_dir({"script": OK_SCRIPT})), "entry is a symlink"),
    Case("hard-linked-script", hard_linked, "2 hard links"),
    # names
    Case("bad name with spaces", plain(OK_SCRIPT), "invalid entry name"),
    Case("-dash-first", plain(OK_SCRIPT), "invalid entry name"),
    Case("n" * 120, plain(OK_SCRIPT), "invalid entry name"),
    Case("ünïcode-name", plain(OK_SCRIPT), "invalid entry name"),
    # directory entries
    Case("dir-empty", entry_dir({}), "has no 'script' file"),
    Case("dir-without-script", entry_dir({"request.json": "{}"}), "has no 'script' file"),
    Case("dir-script-empty", entry_dir({"script": ""}), "script is empty"),
    Case("dir-script-is-nested-dirs", entry_dir({"script": nested_dirs(64)}), "script is not a regular file"),
    Case("dir-script-fifo", entry_dir({"script": fifo}), "script is not a regular file"),
    Case("dir-script-dev-zero", entry_dir({"script": char_device(5)}), "script is not a regular file"),
    Case("dir-script-symlink", entry_dir({"script": symlink_to("/etc/passwd")}), "script is a symlink"),
    Case("dir-script-foreign-owner", entry_dir({"script": foreign_owned}), f"owned by uid {FOREIGN_UID}"),
    # request.json
    Case("req-not-json", with_request("{nodes: 2"), "request.json is not valid JSON"),
    Case("req-list", with_request([1, 2]), "must hold a JSON object"),
    Case("req-string", with_request('"hello"'), "must hold a JSON object"),
    Case("req-null", with_request("null"), "must hold a JSON object"),
    Case("req-latin-1", with_request(b'{"job_name": "caf\xe9"}'), "not UTF-8"),
    Case("req-nul", with_request(b'{"job_name": "a\0"}'), "contains NUL bytes"),
    Case("req-too-large", with_request({"environment": {"X": "y" * REQUEST_MAX_BYTES}}),
         f"larger than the {REQUEST_MAX_BYTES}-byte limit"),
    Case("req-symlink", entry_dir({"script": OK_SCRIPT, "request.json": symlink_to("/etc/hostname")}),
         "request.json is a symlink"),
    Case("req-is-dir", entry_dir({"script": OK_SCRIPT, "request.json": nested_dirs(3)}),
         "request.json is not a regular file"),
    Case("req-unknown-key", with_request({"frobnicate": 1}), "unknown key(s): frobnicate"),
    Case("req-nodes-string", with_request({"nodes": "many"}), "nodes must be an integer"),
    Case("req-nodes-bool", with_request({"nodes": True}), "nodes must be an integer"),
    Case("req-nodes-nan", with_request('{"nodes": NaN}'), "nodes must be an integer"),
    Case("req-nodes-absurd", with_request({"nodes": 10**30}), str(10**30)),
    Case("req-env-list", with_request({"environment": [1, 2]}), "environment must be a mapping"),
    Case("req-workdir-missing", with_request({"workdir": "/nonexistent/burst-workdir"}),
         "No such file or directory"),
    Case("req-job-id-object", with_request({"job_id": {"a": 1}}), "job_id must be a string"),
    Case("req-workdir-list", with_request({"workdir": ["/tmp"]}), "workdir must be a string"),
    Case("req-deeply-nested", with_request(deep_json(100_000)), "request.json"),
)
