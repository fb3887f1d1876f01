"""A tiny sd_notify(3) client: ready, status, watchdog, stopping, reloading; a no-op without systemd."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


def _address(raw: str) -> str | bytes:
    """NOTIFY_SOCKET as a socket address: a path, or '@name' for the abstract namespace."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


class Notifier:
    """Sends sd_notify messages to $NOTIFY_SOCKET (read once, at construction); silent when unset.

    A failure to send is reported as False, never raised: the daemon must keep working when systemd
    is gone or the socket is unusable.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        # Only unix sockets (path or abstract); systemd's vsock:... form is for VMs, not for us.
        self.address: str | bytes | None = _address(raw) if raw.startswith(("/", "@")) else None
        self._environ = env

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send KEY=value lines (e.g. READY=1, STATUS=...); True if a datagram went out."""
        if self.address is None or not fields:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text.replace("\n", " "))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def reloading(self) -> bool:
        """RELOADING=1 with MONOTONIC_USEC (systemd >= 253 wants it for Type=notify-reload)."""
        return self.notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def watchdog_interval(self) -> float | None:
        """How often to send WATCHDOG=1, in seconds (half of WATCHDOG_USEC), or None when not watched.

        systemd sets WATCHDOG_PID when the watchdog is meant for one process: another pid ignores it.
        """
        return watchdog_interval(self._environ)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Half the WATCHDOG_USEC period in seconds, if the watchdog is on and meant for this process."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    return usec / 2 / 1_000_000
