"""Test stand-in for the `pbs` module of PBS hooks: only what burst-agent's hooks use.

Modelled on OpenPBS src/modules/python/pbs/v1 (_base_types.py, _svr_types.py) and the hook docs:
accept()/reject() end the hook by raising SystemExit; an unset resource reads as None and setting
one to None unsets it; pbs.duration is an int of seconds whose str() is the text it was given;
select/place/size keep their text; a job attribute that is not set reads as None.
"""

from __future__ import annotations

from typing import Any

# event types (values are arbitrary here; hooks compare with the names)
QUEUEJOB, MODIFYJOB, MOVEJOB, RUNJOB = 1, 2, 4, 8
EXECJOB_BEGIN, EXECJOB_LAUNCH, EXECJOB_END = 16, 32, 64
# log levels
LOG_DEBUG, LOG_WARNING, LOG_ERROR = 7, 4, 3
EVENT_DEBUG, EVENT_ERROR = 0x80, 0x01

pbs_conf: dict[str, str] = {"PBS_HOME": "/var/spool/pbs", "PBS_EXEC": "/opt/pbs"}
LOG: list[tuple[int, str]] = []  # (level, message) of every logmsg() call
_current: dict[str, Any] = {"event": None, "server": None}


def logmsg(level: int, message: str) -> None:
    LOG.append((level, message))


class select(str):
    """pbs.select("2:ncpus=8:mem=16gb")."""


class place(str):
    """pbs.place("scatter:excl")."""


class size(str):
    """pbs.size("16gb")."""


class duration(int):
    """pbs.duration("01:30:00") or pbs.duration(5400): seconds, printed as given."""

    def __new__(cls, value: Any) -> duration:
        if isinstance(value, int):
            secs = value
        else:
            secs = 0
            for part in str(value).split(":"):
                secs = secs * 60 + int(float(part))
        obj = super().__new__(cls, secs)
        obj.text = str(value)
        return obj

    def __str__(self) -> str:
        return self.text


class pbs_env(dict):
    """A job's environment (Variable_List, and event.env in execjob_launch)."""


class pbs_resource(dict):
    """Resource_List: unset names read as None; assigning None unsets."""

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __setitem__(self, name: str, value: Any) -> None:
        if value is None:
            self.pop(name, None)
        else:
            super().__setitem__(name, value)


class queue:
    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name


class job:
    """A job: keyword attributes; Resource_List and Variable_List get their PBS types."""

    def __init__(self, **attributes: Any) -> None:
        self.id = attributes.pop("id", "")
        self.Resource_List = pbs_resource(attributes.pop("Resource_List", {}))
        variables = attributes.pop("Variable_List", None)
        self.Variable_List = None if variables is None else pbs_env(variables)
        for name, value in attributes.items():
            setattr(self, name, value)

    def __getattr__(self, name: str) -> Any:  # only called for attributes never set
        if name.startswith("__"):
            raise AttributeError(name)
        return None


class Event:
    """The hook's event (tests build it; hooks get it from event()); `accepted`/`rejected`/`message`
    record how the hook ended it."""

    def __init__(self, type: int, job: job, **params: Any) -> None:
        self.type = type
        self.job = job
        self.hook_name = params.pop("hook_name", "burst")
        self.job_o = params.pop("job_o", None)
        self.src_queue = params.pop("src_queue", None)
        self.progname = params.pop("progname", None)
        self.argv = params.pop("argv", None)
        self.env = pbs_env(params.pop("env", {}))
        self.accepted = self.rejected = False
        self.message: str | None = None

    def accept(self) -> None:
        self.accepted = True
        raise SystemExit(0)

    def reject(self, message: str = "") -> None:
        self.rejected = True
        self.message = message
        raise SystemExit(1)


class _server:
    def __init__(self, default_queue: str | None) -> None:
        self.default_queue = default_queue


def server() -> _server:
    return _current["server"] or _server("workq")


def _set_event(ev: Event | None, default_queue: str | None = "workq") -> None:
    """Test helper (not in the real module): the event the next hook run sees."""
    _current["event"] = ev
    _current["server"] = _server(default_queue)
    LOG.clear()


def event() -> Event:
    """The event of the running hook."""
    return _current["event"]
