"""The files a command writes besides standard output (`--out`, `--csv`, `--png`): checked
before the command does its work, and written whole or not at all.

- **Checked first** (`OutputFiles.check`): each path names a file (not empty, not a
  folder) in a folder that exists and that this process may write, and no two options
  name the same file. Otherwise `Refused` (exit code 2), one line naming the option, the
  path, what is wrong and what to do, before anything is read or written.
- **Written whole**: each file is staged under a temporary name in its own folder and
  renamed over its path only once every file of the command is staged (`commit`); a
  failure on the way (a full disk, a chart that cannot be drawn) removes the staged
  files and leaves every path as it was. A rename within a folder is atomic on POSIX
  file systems. A path that is not a regular file (a terminal, a pipe, `/dev/stdout`)
  is written straight, at `commit`.
- **Write errors** (`OSError`: no space left, a read-only file system) are `Refused`
  naming the option, the path and the system's reason, never an internal error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from meterline.cli.exits import Refused

__all__ = ["OutputFiles"]


def _is_regular_or_missing(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return True


def _advice(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space, or give a file on another disk"
    if exc.errno == errno.EROFS:
        return "give a file on a file system that can be written"
    return "give a file in a folder this process may write"


class OutputFiles:
    """The files of one command, by option name (`--csv`, `--png`, `--out`); options
    given None are not written. Use as a context manager: staged files are removed when
    the block raises (module docstring)."""

    def __init__(self, files: dict[str, Path | None]) -> None:
        self.files = {option: path for option, path in files.items() if path is not None}
        self._staged: dict[str, Path] = {}

    def __enter__(self) -> OutputFiles:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()

    def check(self) -> None:
        """Refused (exit code 2) for a path that cannot be written (module docstring)."""
        seen: dict[Path, str] = {}
        for option, path in self.files.items():
            shown = f"{option} {str(path)!r}"
            if str(path) in ("", "."):
                raise Refused(f"{option}: give a file name, not {str(path)!r}")
            if path.is_dir():
                raise Refused(f"{shown} is a folder: give a file name in it")
            folder = path.parent
            if not folder.exists():
                raise Refused(
                    f"{shown}: the folder {str(folder)!r} does not exist: create it first,"
                    " or give a file in a folder that exists"
                )
            if not folder.is_dir():
                raise Refused(f"{shown}: {str(folder)!r} is not a folder: give a file in one")
            if path.exists() and not os.access(path, os.W_OK):
                raise Refused(f"{shown}: this process may not write it: give another file")
            if _is_regular_or_missing(path) and not os.access(folder, os.W_OK):
                raise Refused(
                    f"{shown}: this process may not write in {str(folder)!r} (the file is"
                    " written beside it, then renamed): give a file in another folder"
                )
            same = path.resolve()
            if same in seen:
                raise Refused(f"{seen[same]} and {option} name the same file {str(path)!r}")
            seen[same] = option

    def stage(self, option: str) -> Path:
        """A new empty temporary file to write `option`'s content into, beside its path
        (for a path that is not a regular file: in the system's temporary folder)."""
        path = self.files[option]
        folder = path.parent if _is_regular_or_missing(path) else None
        with self.writing(option):
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
            os.close(fd)
        self._staged[option] = Path(name)
        return Path(name)

    def write_text(self, option: str, text: str) -> None:
        """Stage `text` (UTF-8) as `option`'s content."""
        staged = self.stage(option)
        with self.writing(option):
            staged.write_text(text, encoding="utf-8")

    def commit(self) -> None:
        """Put every staged file in place: renamed over its path (with the permissions a
        new file gets), or copied into a path that is not a regular file."""
        umask = os.umask(0)
        os.umask(umask)
        # Streams first: writing into a device can fail (a full disk behind it), a rename
        # of a file staged beside its path does not, so no file is in place when one fails.
        order = sorted(self._staged.items(), key=lambda i: _is_regular_or_missing(self.files[i[0]]))
        for option, staged in order:
            path = self.files[option]
            with self.writing(option):
                if _is_regular_or_missing(path):
                    os.chmod(staged, 0o666 & ~umask)
                    os.replace(staged, path)
                else:
                    with staged.open("rb") as src, path.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
                    staged.unlink()
            del self._staged[option]

    def discard(self) -> None:
        """Remove the staged files not committed."""
        for staged in self._staged.values():
            with contextlib.suppress(OSError):
                staged.unlink()
        self._staged.clear()

    @contextlib.contextmanager
    def writing(self, option: str) -> Iterator[None]:
        """An OSError inside is Refused naming `option` and its path (exit code 2)."""
        try:
            yield
        except OSError as exc:
            path = self.files[option]
            raise Refused(
                f"{option} {str(path)!r}: cannot write it ({exc.strerror or exc}): {_advice(exc)}"
            ) from None
