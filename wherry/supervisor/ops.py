"""Process housekeeping shared by the supervisor and a single-process server: the pid file and
the user and group to run as when started as root."""

from __future__ import annotations

import contextlib
import logging
import os

from ..config import decimal

logger = logging.getLogger("wherry.error")


class PrivilegeError(ValueError):
    """--user/--group name nobody on this system, or cannot be used."""


def write_pid_file(path: str) -> None:
    """Write this process's id (and a newline) atomically: a reader never sees half a number."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def remove_pid_file(path: str) -> None:
    """Remove the pid file if it still names this process."""
    with contextlib.suppress(OSError, ValueError), open(path) as f:
        if int(f.read().strip()) != os.getpid():
            return
    with contextlib.suppress(OSError):
        os.unlink(path)


def resolve_ids(user: str | None, group: str | None) -> tuple[int | None, int | None, list[int]]:
    """(uid, gid, supplementary gids) for --user/--group: names or numbers. A user alone brings
    its primary group and its supplementary groups."""
    import grp  # Unix only: imported when --user/--group is given
    import pwd

    uid = gid = None
    groups: list[int] = []
    if user is not None:
        try:
            entry = pwd.getpwuid(int(user)) if decimal(user) else pwd.getpwnam(user)
        except (KeyError, OverflowError):
            raise PrivilegeError(f"--user: no such user {user!r}") from None
        uid, gid = entry.pw_uid, entry.pw_gid
        groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    if group is not None:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if decimal(group) else grp.getgrnam(group).gr_gid
        except (KeyError, OverflowError):
            raise PrivilegeError(f"--group: no such group {group!r}") from None
        if user is None:
            groups = [gid]
        elif gid not in groups:
            groups.append(gid)
    return uid, gid, groups


def check_privileges(user: str | None, group: str | None) -> tuple[int | None, int | None, list[int]]:
    """The ids to switch to, or (None, None, []) when nothing is asked. Only root can switch."""
    if user is None and group is None:
        return None, None, []
    ids = resolve_ids(user, group)
    if os.geteuid() != 0:
        uid, gid, _groups = ids
        if (uid is None or uid == os.geteuid()) and (gid is None or gid == os.getegid()):
            return None, None, []  # already the one asked for
        raise PrivilegeError("--user/--group need the server to be started as root")
    return ids


def drop_privileges(user: str | None, group: str | None) -> None:
    """Become --user/--group (after the sockets are bound and the pid file written)."""
    uid, gid, groups = check_privileges(user, group)
    if gid is not None:
        os.setgroups(groups)
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    if uid is not None or gid is not None:
        logger.info("Running as uid %d, gid %d", os.getuid(), os.getgid())
