"""Output files written safely: checkpoints, counterexamples and happens-before graphs.

What lives here: the kinds of file faultline writes (`CHECKPOINT`, `COUNTEREXAMPLE`,
`DOT`: each knows how to recognise a file of its kind as ours), `check_target` (may an
output of that kind go to this path? asked before the work starts, so that bad input
fails in a second rather than after a long check) and `write_text` (the write itself).
Rules kept: a write goes to a fresh temporary file in the target's directory
(tempfile.mkstemp: O_CREAT|O_EXCL|O_NOFOLLOW and a unique name, so two runs never share
one and nothing planted under a guessable name is followed), is fsynced, then
os.replace()d onto the target, so a reader sees the old file or the new one, never a
part of one.  A target that is a symbolic link is refused, --force or not: we never
write through one.  An existing file that is not ours (not a faultline file of that
kind) is overwritten only with force.
Must not be added: deciding what to write or when (callers do).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINT_FORMAT = "faultline-dpor-checkpoint/"     # + the layout's version number
DOT_HEADER = "// faultline happens-before graph (written by faultline check --dot)"
# A file larger than this is not read to see whether it is ours (it is not: ours are
# far smaller), so pointing an output at a huge file costs nothing before refusing it.
RECOGNISE_LIMIT = 256 << 20


class OutputError(Exception):
    """An output path faultline must not or cannot write (bad input for the CLI)."""


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of output file: what to call it, and a test that a file is one of ours."""

    noun: str
    ours: Callable[[Path], bool]


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > RECOGNISE_LIMIT:
            return None
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _is_checkpoint(path: Path) -> bool:
    doc = _json_object(path)
    fmt = None if doc is None else doc.get("format")
    return isinstance(fmt, str) and fmt.startswith(CHECKPOINT_FORMAT)


def _is_counterexample(path: Path) -> bool:
    doc = _json_object(path)
    return doc is not None and {"faultline_version", "scenario", "schedule"} <= doc.keys()


def _is_dot(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            first = f.readline(len(DOT_HEADER) + 2)
    except OSError:
        return False
    return first.rstrip(b"\r\n") == DOT_HEADER.encode()


CHECKPOINT = Kind("DPOR checkpoint", _is_checkpoint)
COUNTEREXAMPLE = Kind("counterexample file", _is_counterexample)
DOT = Kind("happens-before graph", _is_dot)


def check_target(path: str | os.PathLike[str], kind: Kind, force: bool = False) -> None:
    """Raise OutputError (naming `path`) unless an output of `kind` may be written there:
    its directory exists and is writable, and it is absent, or a regular file that is
    ours (any regular file, with `force`).  A symbolic link is always refused."""
    p = Path(path)
    parent = p.absolute().parent
    try:
        st: os.stat_result | None = os.lstat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputError(f"cannot write {p}: {e.strerror or e}") from None
    if not parent.is_dir():
        raise OutputError(f"cannot write {p}: directory {parent} does not exist")
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise OutputError(f"refusing to write {p}: it is a symbolic link (faultline "
                              f"never writes through one; remove it or choose another path)")
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"cannot write {p}: it is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"refusing to write {p}: it is not a regular file")
        if not force and not kind.ours(p):
            raise OutputError(f"refusing to overwrite {p}: it exists and is not a faultline "
                              f"{kind.noun} (--force overwrites it)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {p}: directory {parent} is not writable")


def _umask() -> int:
    # Read once, at import (single-threaded): os.umask can only be read by setting it.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()        # what open() would give a new file


def write_text(path: str | os.PathLike[str], text: str, kind: Kind,
               force: bool = False) -> None:
    """Replace `path` by a file holding `text`, atomically (see the module's rules);
    OutputError if the target is refused (check_target) or the write fails."""
    check_target(path, kind, force)
    p = Path(path)
    parent = p.absolute().parent
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {p}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _MODE)       # mkstemp's 0600 is for the temporary file only
        # rename(2) replaces the directory entry: a symlink planted at `path` since
        # check_target would itself be replaced, its target never written.
        os.replace(tmp, p)
    except OSError as e:
        with suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {p}: {e.strerror or e}") from None
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_directory(parent)


def _sync_directory(directory: Path) -> None:
    # The rename is durable once the directory is; not every system can fsync one.
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def same_file_twice(paths: list[tuple[str, str | os.PathLike[str] | None]]) -> str | None:
    """The first pair of options (name, path) naming one file, as an error message."""
    seen: dict[str, str] = {}
    for option, path in paths:
        if path is None:
            continue
        p = Path(path).absolute()
        key = str(Path(os.path.realpath(p.parent)) / p.name)
        if key in seen:
            return f"{seen[key]} and {option} name the same file {path}"
        seen[key] = option
    return None
