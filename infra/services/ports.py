"""Who holds a TCP port, read from /proc/net/tcp{,6} and /proc/<pid>/fd instead of by connecting.

A probe that connects to a port nobody listens on yet can connect to itself (TCP simultaneous open: the
kernel picks the probe's source port equal to the port, when that lies in the ephemeral range) and then
holds the port the service was about to bind. Reading the kernel's socket tables takes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TCP_TABLES = (PROC / "net" / "tcp", PROC / "net" / "tcp6")
# Socket states in /proc/net/tcp (include/net/tcp_states.h).
LISTEN = "0A"
TIME_WAIT = "06"
COMMAND_CHARS = 120


@dataclass(frozen=True)
class Socket:
    """One row of the kernel's TCP table."""

    port: int
    state: str
    inode: int

    @property
    def listening(self) -> bool:
        return self.state == LISTEN


def tables_readable() -> bool:
    """False off Linux (or without /proc): callers then fall back to connecting."""
    return TCP_TABLES[0].exists()


def sockets_on(port: int) -> list[Socket]:
    """Every TCP socket (IPv4 and IPv6, any state) whose local port is `port`."""
    found = []
    for table in TCP_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                found.append(Socket(local_port, fields[3], int(fields[9])))
    return found


def listening(port: int) -> bool:
    """True when some process listens on `port`."""
    return any(sock.listening for sock in sockets_on(port))


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets a process has open; PermissionError when its fds are closed to us."""
    inodes = set()
    fd_dir = PROC / str(pid) / "fd"
    try:
        names = os.listdir(fd_dir)
    except FileNotFoundError:
        return set()
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def process_tree(pid: int) -> list[int]:
    """pid and every descendant (pg_ctl forks the postmaster, a launcher may fork its server)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def bound_by(pid: int, port: int) -> bool:
    """True once `pid` (or a descendant) listens on `port`; only then may a probe connect to it.

    When the process's fds cannot be read (another user's, without root), any listener on the port counts:
    the caller refused a taken port before starting, so a listener now is the child's.
    """
    listeners = {sock.inode for sock in sockets_on(port) if sock.listening}
    if not listeners:
        return False
    try:
        owned = set().union(*(socket_inodes(member) for member in process_tree(pid)))
    except PermissionError:
        return True
    return bool(listeners & owned)


def holder(port: int) -> str | None:
    """Who holds `port` now, in words ("pid 42 (python -m http.server 15432), listening"), or None."""
    sockets = [sock for sock in sockets_on(port) if sock.state != TIME_WAIT or sock.inode]
    if not sockets:
        if any(sock.state == TIME_WAIT for sock in sockets_on(port)):
            return "a closed connection in TIME-WAIT (no process; it clears within a minute)"
        return None
    sockets.sort(key=lambda sock: not sock.listening)
    wanted = {sock.inode: sock for sock in sockets if sock.inode}
    for pid, inode in _owners(list(wanted)):
        role = "listening" if wanted[inode].listening else "as a client socket"
        return f"pid {pid} ({command_line(pid)}), {role}"
    return "a process this user cannot see"


def _owners(inodes: list[int]) -> list[tuple[int, int]]:
    """(pid, inode) for each process holding one of `inodes`, in the order of `inodes`."""
    wanted, found = set(inodes), list[tuple[int, int]]()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            held = socket_inodes(int(entry.name)) & wanted
        except PermissionError:
            continue
        found.extend((int(entry.name), inode) for inode in held)
    return sorted(found, key=lambda pair: inodes.index(pair[1]))


def command_line(pid: int) -> str:
    """The process's command line, shortened; its name when the command line is empty or unreadable."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
        text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if not text:
            text = (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"
    return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 1] + "…"
