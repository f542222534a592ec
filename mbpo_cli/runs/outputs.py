"""Where a command may write a file or folder the user names (`mbpo export --out`, `mbpo runs export --out`,
`mbpo compare --plot`, `mbpo diagnose --plot`, `mbpo eval --video`), checked before any work, and how it is written.

What mbpo keeps is never an output: the registry database (``RUNS_DIR/registry.db`` and the SQLite file of
``$MBPO_REGISTRY_URL``, each with its ``-wal``, ``-shm`` and ``-journal`` companions), anything inside a run's
folder (``RUNS_DIR/<run id>/``: checkpoints, config, lock, live TensorBoard files), the ablations' folder
(``RUNS_DIR/ablations/``), the tuning studies' folder (``RUNS_DIR/tunes/``) and the runs directory itself (a
folder written there would sit among the run folders).
Paths are compared with their symlinks resolved, so a link to any of these is refused too. Anything else under the
runs directory is the user's (``runs/metrics.csv``, ``runs/tb/``): mbpo only ever creates the names above there.

An existing file is replaced only when the command's ``--overwrite`` is given. The folder that will hold the output
must exist and accept a new file: that is found by creating (and removing) one there, since permission bits do not
tell (root may "write" /proc and /sys, which refuse any new file). The result is written to a hidden temporary file
beside its place and renamed onto it at the end, so a failed command leaves no partial file and the old file whole.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.layout import ABLATIONS_FOLDER, REGISTRY_FILE, RUN_ID, TUNES_FOLDER, registry_file
from mbpo_cli.runs.registry.location import URL_ENV_VAR, sqlite_file
from mbpo_cli.runs.registry.sqlite import COMPANIONS as SQLITE_COMPANIONS

OVERWRITE_FLAG = "--overwrite"
"""The option every writing command takes to replace an existing file."""
SHOWN_PATH = 120
"""Longest path shown in an error message (longer ones keep their start and end)."""


class OutputError(RunError):
    """An output the command refuses to write (one line; the CLI exits 2)."""


def shown(path: Path) -> str:
    """`path` as an error message shows it: at most :data:`SHOWN_PATH` characters."""
    text = str(path)
    return text if len(text) <= SHOWN_PATH else f"{text[:SHOWN_PATH // 2 - 1]}…{text[-(SHOWN_PATH // 2):]}"


def registry_files(runs_dir: Path) -> list[Path]:
    """The registry's SQLite files (symlinks resolved), whether they exist or not: ``RUNS_DIR/registry.db`` and the
    file of a ``sqlite:`` ``$MBPO_REGISTRY_URL``, each with its companions."""
    databases = [registry_file(runs_dir)]
    url = os.environ.get(URL_ENV_VAR)
    if url:
        try:
            named = sqlite_file(make_url(url))
        except ArgumentError:  # no registry can be opened with it: opening it says so
            named = None
        if named is not None:
            databases.append(named)
    files = {Path(f"{database}{suffix}").resolve() for database in databases for suffix in SQLITE_COMPANIONS}
    files |= {Path(f"{database.resolve()}{suffix}") for database in databases for suffix in SQLITE_COMPANIONS}
    return sorted(files)


def _same_file(path: Path, files: list[Path]) -> bool:
    """Whether the existing file `path` is one of `files` (the same device and inode: a hard link, or another
    spelling on a file system that ignores case)."""
    try:
        stat = path.stat()
    except OSError:
        return False
    for file in files:
        try:
            other = file.stat()
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (stat.st_dev, stat.st_ino):
            return True
    return False


def owner(target: Path, runs_dir: Path) -> str | None:
    """What mbpo keeps at `target` (a path with its symlinks resolved), in words, or None when it is not mbpo's."""
    registry = registry_files(runs_dir)
    if target in registry or _same_file(target, registry):
        return "the registry database"
    root = runs_dir.resolve()
    if target == root:
        return f"the runs directory {shown(root)}"
    if not target.is_relative_to(root):
        return None
    parts = target.relative_to(root).parts
    top, where = parts[0], "" if len(parts) == 1 else "inside "
    if RUN_ID.fullmatch(top):
        return f"{where}the folder of run {top.lower()}"
    if top.casefold() == ABLATIONS_FOLDER:
        return f"{where}the ablations' folder"
    if top.casefold() == TUNES_FOLDER:
        return f"{where}the studies' folder"
    if top.casefold() in {f"{REGISTRY_FILE}{suffix}" for suffix in SQLITE_COMPANIONS}:
        return "the registry database"
    return None


def refuse_owned(option: str, named: Path, target: Path, runs_dir: Path) -> None:
    """OutputError when `target` (`named` with its symlinks resolved) is something mbpo keeps."""
    what = owner(target, runs_dir)
    if what is None:
        return
    link = "" if named.absolute() == target else f" (a link to {shown(target)})"
    raise OutputError(f"{option} {shown(named)}{link}: that is {what}, which mbpo keeps; write somewhere else")


def partial_name(target: Path) -> Path:
    """A new hidden name beside `target` that keeps its suffix (``.policy.3f9a1c2e.partial.onnx``), for writers
    that pick their format by it."""
    return target.with_name(f".{target.stem}.{secrets.token_hex(4)}.partial{target.suffix}")


def new_partial(target: Path) -> Path:
    """Create an empty file under :func:`partial_name` (mode as the umask allows, like any new file) and return it;
    OSError when the folder refuses it."""
    while True:
        partial = partial_name(target)
        try:
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return partial


def probe(option: str, named: Path, folder: Path) -> None:
    """OutputError unless a new file can be created in `folder` (it is created and removed at once)."""
    if not folder.is_dir():
        what = f"{shown(folder)} is not a folder" if folder.exists() else f"the folder {shown(folder)} does not exist"
        raise OutputError(f"{option} {shown(named)}: {what}")
    try:
        new_partial(folder / "probe").unlink()
    except OSError as error:
        raise OutputError(f"{option} {shown(named)}: cannot write in the folder {shown(folder)}: "
                          f"{error.strerror or error}") from None


@dataclass(frozen=True)
class OutputFile:
    """A file a command may write: checked by :func:`check_file`, written by :meth:`writing`."""

    named: Path
    """The path as the user gave it (what messages and JSON show)."""
    target: Path
    """The file written: `named` with its symlinks resolved (a link is followed, never replaced)."""

    @contextmanager
    def writing(self) -> Iterator[Path]:
        """A new empty temporary file beside the target, for the block to write; renamed onto the target when the
        block ends without error, removed otherwise (the old file stays whole)."""
        partial = new_partial(self.target)
        try:
            yield partial
            os.replace(partial, self.target)
        finally:
            partial.unlink(missing_ok=True)


def check_file(option: str, named: Path, runs_dir: Path, overwrite: bool) -> OutputFile:
    """The file `named` (given with `option`) as a command may write it; OutputError when it is something mbpo keeps
    (or links to one), a folder or another file that is not a regular one (a device), an existing file without
    ``--overwrite``, or in a folder that is missing or takes no new file."""
    target = named.resolve()
    refuse_owned(option, named, target, runs_dir)
    if target.is_dir():
        raise OutputError(f"{option} {shown(named)}: is a folder; name the file to write")
    if target.exists() and not target.is_file():
        raise OutputError(f"{option} {shown(named)}: is not a regular file; name a file to write")
    probe(option, named, target.parent)
    if (target.exists() or named.is_symlink()) and not overwrite:
        raise OutputError(f"{option} {shown(named)}: the file exists; add {OVERWRITE_FLAG} to replace it")
    return OutputFile(named=named, target=target)


def check_folder(option: str, named: Path, runs_dir: Path) -> None:
    """OutputError unless a command may write files in the folder `named` (given with `option`): when it is
    something mbpo keeps (or links to one), not a folder, or cannot be created or written in. It need not exist
    yet: its parent folder must."""
    target = named.resolve()
    refuse_owned(option, named, target, runs_dir)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{option} {shown(named)}: not a folder")
    probe(option, named, target if target.is_dir() else target.parent)


@contextmanager
def staging(folder: Path) -> Iterator[Path]:
    """A new hidden temporary folder beside `folder` (on its file system, so that files move from one to the other by
    renaming), removed with whatever is left in it when the block ends."""
    partial = new_partial(folder)
    partial.unlink()
    partial.mkdir()
    try:
        yield partial
    finally:
        shutil.rmtree(partial, ignore_errors=True)
