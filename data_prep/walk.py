"""Every entry under a source folder, each with what it is: a file to judge, or why it is passed over.

Symlinks are followed (to files and to folders), but a folder is walked once: a link back to a folder already
walked, a link to itself or a dangling link is listed with its reason, so loops never hang the walk.
"""

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


@dataclass
class Entry:
    path: Path
    relative: str  # posix path under the source folder
    outcome: str = ""  # "" for a file to judge; else "skipped" or "ignored", with the reason
    reason: str = ""


def walk(root: Path, exclude: dict[Path, str | None] | None = None) -> list[Entry]:
    """Every entry under root, in sorted order. `exclude` maps paths to set aside to the reason the report gives
    (ignored), or to None for our own files (the output folder inside the source), which are left out unlisted."""
    root = Path(root)
    walked = {_identity(root.stat())}
    excluded = {_identity(os.stat(p)): why for p, why in (exclude or {}).items() if os.path.exists(p)}
    return sorted(_walk(root, root, walked, excluded), key=lambda e: e.relative)


def _walk(root: Path, folder: Path, walked: set, excluded: dict) -> Iterator[Entry]:
    try:
        children = sorted(os.scandir(folder), key=lambda d: d.name)
    except OSError as err:
        yield Entry(folder, _relative(root, folder), "skipped", f"cannot list this folder ({err.strerror})")
        return
    for child in children:
        path = Path(child.path)
        relative = _relative(root, path)
        try:
            st = os.stat(path)  # follows symlinks
        except OSError as err:
            yield Entry(path, relative, "ignored", _unreachable(path, err))
            continue
        if _identity(st) in excluded:
            if excluded[_identity(st)]:
                yield Entry(path, relative, "ignored", excluded[_identity(st)])
        elif stat.S_ISDIR(st.st_mode) and _identity(st) in walked:
            yield Entry(path, relative, "ignored", "symlink to a folder already walked (not walked twice)")
        elif stat.S_ISDIR(st.st_mode):
            walked.add(_identity(st))
            yield Entry(path, relative, "ignored", "a folder (its contents are listed one by one)")
            yield from _walk(root, path, walked, excluded)
        elif not stat.S_ISREG(st.st_mode):
            kind = KINDS.get(stat.S_IFMT(st.st_mode), "a special file")
            yield Entry(path, relative, "ignored", f"not a regular file ({kind})")
        elif not os.access(path, os.R_OK):
            yield Entry(path, relative, "skipped", "permission denied: make it readable to prepare it")
        else:
            yield Entry(path, relative)


def _unreachable(path: Path, err: OSError) -> str:
    """Why an entry that os.stat cannot follow is passed over."""
    if err.errno == errno.ENOENT and os.path.islink(path):
        return f"dangling symlink (its target {os.readlink(path)} does not exist)"
    if err.errno == errno.ELOOP:
        return "symlink loop (following it never reaches a file or folder)"
    return f"cannot look at it ({err.strerror})"


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()
