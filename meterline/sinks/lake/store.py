"""The export's files under a folder or any fsspec URL (docs/export.md, "Layout").

    URL/period=YYYY-MM/<table>/part-RUN.parquet    one file per table and run
    URL/period=YYYY-MM/manifest-RUN.json           written last
    URL/period=YYYY-MM/_tmp/                       files being written (never read)

A run writes every file under a temporary name, renames each to its final name (a rename
within a local file system is atomic; on an object store the final object appears whole
or not at all), then writes its manifest the same way, last. A run that dies leaves
files no manifest names: readers ignore them, and the next run treats their rows as
loaded (a loader that picks up every file may have seen them) when it writes tombstones.

Errors: ``LakeUnwritable`` (exit code 2: a destination that cannot be written, or a
scheme whose fsspec driver is not installed, e.g. s3:// without s3fs) and
``LakeUnavailable`` (4: it could not be reached; try again).
"""

from __future__ import annotations

import hashlib
import posixpath
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


@contextmanager
def _errors(url: str, what: str) -> Iterator[None]:
    try:
        yield
    except (LakeUnwritable, LakeUnavailable):
        raise
    except (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
        raise LakeUnwritable(
            f"export destination {url}: cannot {what} ({exc.strerror or exc}): give a folder"
            " or URL this process may write"
        ) from exc
    except (ConnectionError, TimeoutError) as exc:
        raise LakeUnavailable(f"export destination {url}: cannot {what}: {exc}; try again") from exc
    except OSError as exc:
        raise LakeUnwritable(
            f"export destination {url}: cannot {what} ({exc.strerror or exc})"
        ) from exc


def open_destination(url: str) -> Destination:
    """The destination at `url` (a local folder, or any fsspec URL: s3:// needs s3fs
    installed), created if missing and checked writable by writing and removing a probe
    file. LakeUnwritable / LakeUnavailable as the module says."""
    import fsspec

    if not url.strip():
        raise LakeUnwritable("export destination: empty URL; give a folder or an fsspec URL")
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        scheme = url.split("://", 1)[0] if "://" in url else url
        raise LakeUnwritable(
            f"export destination {url}: no file system for {scheme}:// ({exc}); for s3:// "
            "install s3fs (`pip install s3fs`), for gs:// gcsfs, for abfs:// adlfs"
        ) from exc
    dest = Destination(url, fs, root.rstrip("/") or root)
    with _errors(url, "write there"):
        if fs.exists(dest.root) and not fs.isdir(dest.root):
            raise NotADirectoryError(20, "it is a file, not a folder")
        fs.makedirs(dest.root, exist_ok=True)
        probe = posixpath.join(dest.root, f"_probe-{uuid.uuid4().hex}")
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    return dest


def latest_manifest(dest: Destination, period: str) -> dict[str, Any] | None:
    """The newest manifest of the month at `dest` (the run with the highest number), or
    None when it has none."""
    runs = _numbered(dest, dest.period_dir(period), mf.MANIFEST_NAME)
    if not runs:
        return None
    _, path = max(runs)
    with _errors(dest.url, f"read {dest.shown(path)}"):
        return mf.loads(dest.fs.cat_file(path))


def loaded_rows(dest: Destination, period: str, t: Table, since_run: int) -> list[pa.Table]:
    """The key, ``row_version`` and ``deleted`` of every file of table `t` in the month
    written by run `since_run` or later (the newest manifest's run, and any run after it
    that died before its manifest): what a loader may hold beyond that manifest."""
    folder = posixpath.join(dest.period_dir(period), t.name)
    out = []
    for run, path in sorted(_numbered(dest, folder, mf.PART_NAME)):
        if run >= since_run:
            with _errors(dest.url, f"read {dest.shown(path)}"), dest.fs.open(path, "rb") as f:
                out.append(pq.read_table(f, columns=[*t.key, *FRAME]))
    return out


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


def _remove_if_empty(dest: Destination, folder: str) -> None:
    try:
        if dest.fs.isdir(folder) and not dest.fs.ls(folder, detail=False):
            dest.fs.rmdir(folder)
    except OSError:
        pass  # an empty _tmp/ is harmless: readers never look there
