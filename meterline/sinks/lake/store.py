"""The export's files under a folder or any fsspec URL (docs/export.md, "Layout").

    URL/period=YYYY-MM/<table>/part-RUN.parquet    one file per table and run
    URL/period=YYYY-MM/manifest-RUN.json           written last
    URL/period=YYYY-MM/_tmp/                       files being written (never read)

A run writes every file under a temporary name, renames each to its final name (a rename
within a local file system is atomic; on an object store the final object appears whole
or not at all), then writes its manifest the same way, last. A run that dies leaves
files no manifest names: readers ignore them, and the next run treats their rows as
loaded (a loader that picks up every file may have seen them) when it writes tombstones.

Errors: ``LakeUnwritable`` (exit code 2: a destination that cannot be written, a URL
that names none (a control character, spaces at either end, an empty path, `s3:/x`
with a `/` missing), a scheme whose fsspec driver is not installed, e.g. s3:// without
s3fs, or a month folder holding files this code did not write) and ``LakeUnavailable``
(4: it could not be reached; try again). Whatever a driver raises while the destination
is opened and probed is one of the two, never an internal error.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.parquet as pq

from meterline.sinks import PermanentSinkError, TransientSinkError
from meterline.sinks.lake import manifest as mf
from meterline.sinks.lake.tables import Table
from meterline.sinks.lake.versions import FRAME

#: Rows per Parquet row group: a month's largest table (daily usage) in a few groups.
ROW_GROUP = 1_000_000


class LakeUnwritable(PermanentSinkError):
    """The destination cannot be written (or its scheme's driver is not installed)."""


class LakeUnavailable(TransientSinkError):
    """The destination could not be reached; try again."""


@dataclass(frozen=True)
class Destination:
    """An export destination: the URL as given, its file system, the root path in it."""

    url: str
    fs: Any
    root: str

    def period_dir(self, period: str) -> str:
        return posixpath.join(self.root, f"period={period}")

    @property
    def safe_url(self) -> str:
        """The URL with any password in it replaced by ``***`` (for the ledger and logs)."""
        parts = urlsplit(self.url)
        if not parts.password:
            return self.url
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))

    def shown(self, path: str) -> str:
        """A path in messages: the URL as given, then the path under it."""
        rel = posixpath.relpath(path, self.root)
        return self.url.rstrip("/") + ("" if rel == "." else "/" + rel)


#: A `_tmp/` file's name: the run that staged it first (``RUN-TOKEN-TABLE.parquet``).
_STAGED = re.compile(r"^(\d{9,})-")
#: A URL scheme (RFC 3986): a letter, then letters, digits, +, - or .
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
#: A local path that starts like a URL whose // went missing (s3:/x, file:x, C:\x).
_LIKE_A_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _unreachable(exc: BaseException) -> bool:
    """Whether a driver's error means the destination could not be reached (a refused
    or dropped connection, a timeout, a name that does not resolve): any class in its
    hierarchy named like one (requests', aiohttp's and botocore's own classes too)."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    names = [cls.__name__ for cls in type(exc).__mro__]
    return any("Connection" in n or "Timeout" in n or n == "gaierror" for n in names)


def _why(exc: BaseException) -> str:
    text = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


@contextmanager
def _errors(url: str, what: str, *, any_error: bool = False) -> Iterator[None]:
    """OSErrors inside (with `any_error`, every Exception: a driver's own classes, a
    read-only file system's ValueError) as LakeUnavailable when the destination could
    not be reached, else LakeUnwritable."""
    try:
        yield
    except (LakeUnwritable, LakeUnavailable):
        raise
    except Exception as exc:
        if not (any_error or isinstance(exc, OSError) or _unreachable(exc)):
            raise
        raise _failure(url, what, exc) from exc


def _failure(url: str, what: str, exc: Exception) -> LakeUnwritable | LakeUnavailable:
    if _unreachable(exc):
        return LakeUnavailable(f"export destination {url}: cannot {what}: {_why(exc)}; try again")
    return LakeUnwritable(
        f"export destination {url}: cannot {what} ({_why(exc)}): give a folder or URL this"
        " process may write"
    )


def _check_url(url: str) -> None:
    """LakeUnwritable for a URL that names no destination it could mean (module
    docstring); the driver judges the rest."""
    if not url.strip():
        raise LakeUnwritable("export destination: empty URL; give a folder or an fsspec URL")
    if not url.isprintable():
        raise LakeUnwritable(
            f"export destination {url!r}: it has a control character (a line break, a tab):"
            " give the folder or URL on one line"
        )
    if url != url.strip():
        raise LakeUnwritable(
            f"export destination {url!r}: it has spaces at either end (a folder named so"
            " is almost always a mistake): give it without them"
        )
    *chain, target = url.split("::")
    for part in [*chain, target]:
        if "://" in part:
            scheme, rest = part.split("://", 1)
            if not _SCHEME.match(scheme):
                raise LakeUnwritable(
                    f"export destination {url}: {scheme + '://'!r} is not a URL scheme:"
                    " write a folder, or SCHEME://PATH such as s3://bucket/prefix"
                )
            if part is target and not rest.strip("/"):
                raise LakeUnwritable(
                    f"export destination {url}: names no folder or bucket after"
                    f" {scheme}://: write {scheme}://PATH"
                )
    if "://" not in target and _LIKE_A_SCHEME.match(target):
        raise LakeUnwritable(
            f"export destination {url}: looks like a URL with its // missing: write"
            " SCHEME://PATH (s3://bucket/prefix), or ./PATH for a local folder whose name"
            " has a colon"
        )


def open_destination(url: str) -> Destination:
    """The destination at `url` (a local folder, or any fsspec URL: s3:// needs s3fs
    installed), created if missing and checked writable by writing and removing a probe
    file. LakeUnwritable / LakeUnavailable as the module says."""
    import fsspec

    _check_url(url)
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        scheme = url.split("://", 1)[0] if "://" in url else url
        raise LakeUnwritable(
            f"export destination {url}: no file system for {scheme}:// ({_why(exc)}); for"
            " s3:// install s3fs (`pip install s3fs`), for gs:// gcsfs, for abfs:// adlfs"
        ) from exc
    except Exception as exc:  # a driver that cannot start: missing arguments, libraries
        raise _failure(url, "open it", exc) from exc
    dest = Destination(url, fs, root.rstrip("/") or root)
    # The probe does what a run does: make folders, write a file, rename it, list, remove.
    with _errors(url, "write there", any_error=True):
        if fs.exists(dest.root) and not fs.isdir(dest.root):
            raise NotADirectoryError(20, "it is a file, not a folder")
        fs.makedirs(dest.root, exist_ok=True)
        probe = posixpath.join(dest.root, f"_probe-{uuid.uuid4().hex}")
        fs.pipe_file(probe, b"")
        fs.mv(probe, probe + "-moved")
        fs.ls(dest.root, detail=False)
        fs.rm_file(probe + "-moved")
    return dest


def latest_manifest(dest: Destination, period: str) -> dict[str, Any] | None:
    """The newest manifest of the month at `dest` (the run with the highest number), or
    None when it has none."""
    runs = _numbered(dest, dest.period_dir(period), mf.MANIFEST_NAME)
    if not runs:
        return None
    _, path = max(runs)
    with _errors(dest.url, f"read {dest.shown(path)}"):
        data = dest.fs.cat_file(path)
    try:
        return mf.loads(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise _foreign(dest, path, "a manifest", exc) from None


def loaded_rows(dest: Destination, period: str, t: Table, since_run: int) -> list[pa.Table]:
    """The key, ``row_version`` and ``deleted`` of every file of table `t` in the month
    written by run `since_run` or later (the newest manifest's run, and any run after it
    that died before its manifest): what a loader may hold beyond that manifest."""
    folder = posixpath.join(dest.period_dir(period), t.name)
    out = []
    for run, path in sorted(_numbered(dest, folder, mf.PART_NAME)):
        if run >= since_run:
            with _errors(dest.url, f"read {dest.shown(path)}"), dest.fs.open(path, "rb") as f:
                try:
                    found = pq.read_table(f, columns=[*t.key, *FRAME])
                except (pa.ArrowException, KeyError, ValueError) as exc:
                    raise _foreign(dest, path, f"a part file of {t.name}", exc) from None
            out.append(found)
    return out


def _foreign(dest: Destination, path: str, what: str, exc: Exception) -> LakeUnwritable:
    """A file under a month's folder, named as this code names its files, that is not
    one of them (damaged, another layout, another program's)."""
    return LakeUnwritable(
        f"export destination {dest.url}: {dest.shown(path)} is not {what} this code can"
        f" read ({_why(exc)}): the month's folder holds a file meterline did not write (or"
        " of another version); move it away, or export to another folder"
    )


def highest_run(dest: Destination, period: str) -> int:
    """The highest run number that left a manifest or a part file in the month's folder
    (0: none). A run's number must be above it (docs/export.md, "Rows and versions")."""
    folder = dest.period_dir(period)
    found = [run for run, _ in _numbered(dest, folder, mf.MANIFEST_NAME)]
    with _errors(dest.url, f"list {dest.shown(folder)}"):
        tables = dest.fs.ls(folder, detail=False) if dest.fs.isdir(folder) else []
    for sub in tables:
        name = posixpath.basename(sub.rstrip("/"))
        if name != "_tmp" and not mf.MANIFEST_NAME.match(name):
            found += [run for run, _ in _numbered(dest, posixpath.join(folder, name), mf.PART_NAME)]
    return max(found, default=0)


def part_runs(dest: Destination, period: str, t: Table) -> list[int]:
    """The runs that left a file of table `t` in the month (with a manifest or not)."""
    folder = posixpath.join(dest.period_dir(period), t.name)
    return sorted(run for run, _ in _numbered(dest, folder, mf.PART_NAME))


def write_run(
    dest: Destination,
    period: str,
    run: int,
    files: Mapping[str, pa.Table],
    manifest_of: Any,
) -> tuple[dict[str, Any], str]:
    """Write one run: each table's rows (already in file form) under a temporary name,
    then renamed to ``<table>/part-RUN.parquet``; then the manifest, built by
    `manifest_of(written)` from {table: WrittenFile}, the same way, last. The manifest
    and its sha256."""
    folder = dest.period_dir(period)
    tmp = posixpath.join(folder, "_tmp")
    token = uuid.uuid4().hex[:8]
    written: dict[str, mf.WrittenFile] = {}
    with _errors(dest.url, f"write under {dest.shown(folder)}"):
        dest.fs.makedirs(tmp, exist_ok=True)
        staged = []
        for name, rows in files.items():
            data = _parquet(rows)
            temp = posixpath.join(tmp, f"{run:09d}-{token}-{name}.parquet")
            dest.fs.pipe_file(temp, data)
            final = posixpath.join(name, mf.part_name(run))
            staged.append((temp, posixpath.join(folder, final)))
            written[name] = mf.WrittenFile(final, len(data), hashlib.sha256(data).hexdigest())
        for temp, final in staged:
            dest.fs.makedirs(posixpath.dirname(final), exist_ok=True)
            dest.fs.mv(temp, final)
        manifest = manifest_of(written)
        data = mf.dumps(manifest)
        temp = posixpath.join(tmp, f"{run:09d}-{token}-manifest.json")
        dest.fs.pipe_file(temp, data)
        dest.fs.mv(temp, posixpath.join(folder, mf.manifest_name(run)))
        _remove_earlier(dest, tmp, run)
        _remove_if_empty(dest, tmp)
    return manifest, hashlib.sha256(data).hexdigest()


def _parquet(rows: pa.Table) -> bytes:
    """A table as Parquet bytes: Snappy (what Redshift's COPY and Fivetran read), UTC
    microsecond timestamps, statistics for readers that prune."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink, compression="snappy", row_group_size=ROW_GROUP)
    return bytes(sink.getvalue().to_pybytes())


def _numbered(dest: Destination, folder: str, pattern: Any) -> list[tuple[int, str]]:
    with _errors(dest.url, f"list {dest.shown(folder)}"):
        if not dest.fs.isdir(folder):
            return []
        names = dest.fs.ls(folder, detail=False)
    out = []
    for path in names:
        match = pattern.match(posixpath.basename(path.rstrip("/")))
        if match:
            out.append((int(match.group(1)), path))
    return out


def _remove_earlier(dest: Destination, tmp: str, run: int) -> None:
    """Remove what runs before `run` left under `_tmp/` (a run that died before renaming
    its files): nothing reads them, and nothing would remove them otherwise."""
    try:
        names = dest.fs.ls(tmp, detail=False)
    except OSError:
        return
    for path in names:
        staged = _STAGED.match(posixpath.basename(path.rstrip("/")))
        if staged and int(staged.group(1)) < run:
            with suppress(OSError):  # else left for the next run: nothing reads there
                dest.fs.rm_file(path)


def _remove_if_empty(dest: Destination, folder: str) -> None:
    try:
        if dest.fs.isdir(folder) and not dest.fs.ls(folder, detail=False):
            dest.fs.rmdir(folder)
    except OSError:
        pass  # an empty _tmp/ is harmless: readers never look there
