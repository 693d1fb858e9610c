"""Output files appear whole or not at all: a failed or interrupted run never leaves a truncated
result, and a run's files replace the previous run's together."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from .errors import UserError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# What open() would give a new file: temporary files are made 0600 by mkstemp, and a result a
# colleague in the same group cannot read is no result.
FILE_MODE = 0o666 & ~_umask()
# The hidden folder, inside the output folder, where a run writes before its files move into place.
STAGING_PREFIX = ".virnucpro-run-"
TEXT = {"encoding": "utf-8"}


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a hidden temporary file beside `path`; rename it over `path` only on success."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    temporary = Path(name)
    try:
        os.fchmod(descriptor, FILE_MODE)
        with open(descriptor, mode, **({} if "b" in mode else TEXT)) as handle:
            yield handle
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def sha256_of(path: Path) -> str:
    """The file's sha256, computed once per process for each version of the file."""
    return sha256_started(path).result()


def sha256_started(path: Path) -> Future[str]:
    """The file's sha256, computed in a thread (hashlib releases the GIL), so that a caller can
    read the file meanwhile. A digest is kept under the file's identity (device, inode, size,
    modification and change times, as git's index keys them): a changed file is hashed again."""
    path = Path(path).resolve()
    stat = path.stat()
    identity = (str(path), stat.st_dev, stat.st_ino, stat.st_size)
    identity += (stat.st_mtime_ns, stat.st_ctime_ns)
    with _digests_lock:
        digest = _digests.get(identity)
        if digest is None:
            digest = _digests[identity] = _hashers.submit(_sha256, path)
            digest.add_done_callback(lambda done: done.exception() and _forget(identity))
    return digest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _forget(identity: tuple[object, ...]) -> None:
    with _digests_lock:
        _digests.pop(identity, None)


_digests: dict[tuple[object, ...], Future[str]] = {}
_digests_lock = threading.Lock()
_hashers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sha256")


def check_writable_folder(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be written there: one clear line now
    rather than an errno naming a temporary file after the models have loaded."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(f"{folder}: cannot write there ({error.strerror})") from None


def check_writable_file(path: Path) -> None:
    """A file can be written at `path` (its folder is created if needed)."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        raise UserError(f"{path}: cannot write this file ({error.strerror})") from None


class NewPaths:
    """Files and folders a command may create, watched before it creates them: if the command
    fails, `remove` takes away those that did not exist when watched (a folder only while
    empty), with the folders made to hold them, so a failed command leaves nothing new."""

    def __init__(self) -> None:
        self._watched: dict[Path, list[Path]] = {}

    def watch(self, path: Path | str, *sidecars: str) -> None:
        """Watch `path` and `path` + each of `sidecars` (e.g. a database's "-wal")."""
        path = Path(path).absolute()
        missing = []
        for candidate in (path, *path.parents):
            if os.path.lexists(candidate):
                break
            missing.append(candidate)
        missing += [Path(f"{path}{suffix}") for suffix in sidecars if not _lexists(path, suffix)]
        self._watched[path] = missing

    def keep(self, path: Path | str) -> None:
        """`path` (and the folders made for it) now holds something worth keeping."""
        self._watched.pop(Path(path).absolute(), None)

    def remove(self) -> None:
        created = {path for paths in self._watched.values() for path in paths}
        folders = sorted((p for p in created if p.is_dir()), key=lambda p: -len(p.parts))
        for path in created - set(folders):
            with contextlib.suppress(OSError):  # never made (e.g. under a file)
                path.unlink(missing_ok=True)
        for folder in folders:
            with contextlib.suppress(OSError):  # not empty: someone else's now
                folder.rmdir()
        self._watched.clear()


def _lexists(path: Path, suffix: str) -> bool:
    return os.path.lexists(f"{path}{suffix}")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (a few renames), then act as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    pending: list[int] = []
    previous = {
        number: signal.signal(number, lambda received, _frame: pending.append(received))
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in pending:
            signal.raise_signal(number)


class StagedFolder:
    """A run's output files, written into a hidden folder inside `out_dir`, then moved into
    place together by `commit`.

    The commit removes the previous run's files (named in its run.json) that this run does not
    write, so a reused folder never holds two runs' files; `run.json` is moved last and is the
    mark of a complete run. Until the commit the previous run is untouched; anything that stops
    the run before it (an error, Ctrl-C, SIGTERM) leaves no partial file.
    """

    def __init__(self, out_dir: Path, run_file: str) -> None:
        self.out_dir, self.run_file = Path(out_dir), run_file
        self.path: Path | None = None
        self.new = NewPaths()

    def __enter__(self) -> StagedFolder:
        self.new.watch(self.out_dir)
        check_writable_folder(self.out_dir)
        _remove_abandoned_staging(self.out_dir)
        self.path = Path(
            tempfile.mkdtemp(dir=self.out_dir, prefix=f"{STAGING_PREFIX}{os.getpid()}-")
        )
        return self

    def __exit__(self, error_type: type | None, *exc_info: object) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
        if error_type is not None:  # a failed run leaves no empty output folder either
            self.new.remove()

    def file(self, name: str) -> Path:
        assert self.path is not None, "use StagedFolder with `with`"
        return self.path / name

    def open(self, name: str, mode: str = "w") -> IO[Any]:
        return open(self.file(name), mode, **({} if "b" in mode else TEXT))

    def commit(self, names: Iterable[str], owned: Iterable[str] = ()) -> None:
        """Move `names` (run_file among them, written last) into `out_dir`; remove the `owned`
        names (files this kind of run may write) and the previous run's that it did not write."""
        names = sorted(set(names) - {self.run_file})
        with signals_deferred():
            run = self.out_dir / self.run_file
            stale = {*_previous_outputs(run), *owned} - set(names) - {self.run_file}
            run.unlink(missing_ok=True)
            for name in stale:
                (self.out_dir / name).unlink(missing_ok=True)
            for name in [*names, self.run_file]:
                os.replace(self.file(name), self.out_dir / name)


def _previous_outputs(run_file: Path) -> list[str]:
    """The files a previous run wrote, as its run.json lists them (plain names only)."""
    try:
        outputs = json.loads(run_file.read_text(**TEXT)).get("outputs", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in outputs if isinstance(name, str) and Path(name).name == name]


def _remove_abandoned_staging(out_dir: Path) -> None:
    """Staging folders of runs that were killed outright (SIGKILL, power loss)."""
    for folder in out_dir.glob(f"{STAGING_PREFIX}*"):
        pid = folder.name.removeprefix(STAGING_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
