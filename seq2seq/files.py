"""Files a user keeps are written whole or not at all."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

# Longest directory name capped_name keeps whole; file systems allow 255 bytes.
NAME_BYTES = 128
# The temporary file of atomic_write_bytes: ``.<name>.<pid>.<uuid4 hex>.tmp``.
TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{32}\.tmp")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt or not one of ours (or its config unusable)."""


def capped_name(name: str, limit: int = NAME_BYTES) -> str:
    """``name`` if it fits in ``limit`` UTF-8 bytes, else its first bytes and a hash of it all.

    A sweep's job directories are named after their overrides (Hydra's ``override_dirname``);
    a dozen of them pass the file system's 255 bytes ("File name too long"). The hash keeps
    two long names that share their beginning apart.
    """
    encoded = name.encode()
    if len(encoded) <= limit:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    head = encoded[: limit - len(digest) - 1].decode(errors="ignore")  # whole characters only
    return f"{head}-{digest}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and a rename: never half-written.

    A process killed mid-write leaves its temporary file behind; the next write of the same
    file (or the next run in that folder) removes those of processes that no longer run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temporaries(path)
    temporary = temporary_sibling(path)
    try:
        # os.open with 0o666 honours the umask, unlike tempfile's private 0o600 files.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def temporary_sibling(path: Path) -> Path:
    """Where ``path`` is written before its rename: ``.<name>.<pid>.<uuid4 hex>.tmp`` beside it,
    a name :func:`remove_orphaned_temporaries` recognises once its process is gone."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def remove_orphaned_temporaries(path: Path) -> None:
    """Delete the temporary siblings of ``path`` whose writing process is gone."""
    remove_orphaned_temporaries_in(path.parent, path.name)


def remove_orphaned_temporaries_in(
    directory: Path, name: str | None = None, folders: bool = False
) -> None:
    """Delete the ``.<name>.<pid>.<hex>.tmp`` files in ``directory`` whose writing process is
    gone (only those of ``name``, if given); with ``folders``, such folders instead (a token
    store is written as one folder).

    Called when a run starts or resumes too: a folder no process writes to again would keep
    them forever. Nothing else is touched: not a file of another pattern, not a live writer's.
    """
    if not directory.is_dir():
        return
    for candidate in directory.iterdir():
        match = TEMPORARY.fullmatch(candidate.name)
        if (
            match
            and (name is None or match["name"] == name)
            and (candidate.is_dir() if folders else candidate.is_file())
            and not process_exists(int(match["pid"]))
        ):
            if folders:
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True
