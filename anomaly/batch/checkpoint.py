"""Resume state of a batch-scoring run: finished chunks kept beside the output until the end.

Layout, for ``--out scores.parquet``::

    .scores.parquet.partial/job.json            what was asked (inputs, bundle, options)
    .scores.parquet.partial/chunk-000000.arrow  result table of chunk 0 (Arrow IPC)
    .scores.parquet.partial/...
    .scores.parquet.partial/lock                held (flock) by the run using the folder

A chunk file appears by rename only once complete and synced (:mod:`anomaly._fs`), so after
any interruption, ``kill -9`` included, the folder holds chunks 0..k-1 whole and nothing else
that counts.
``--resume`` checks that ``job.json`` matches the new command and continues at chunk k;
chunks are cut at fixed row counts, so the final output is the same bytes as an
uninterrupted run's. The folder is removed once the output is in place.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from anomaly._fs import atomic_write, temporaries
from anomaly.batch.sink import rejects_path
from anomaly.errors import InputError

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
#: Bump when the chunk files' meaning changes, so an old partial run is never resumed.
FORMAT_VERSION = 1


def partial_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Size and modification time: cheap, and enough to notice an input that changed."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def job_digest(job: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


class PartialRun:
    """The ``.OUT.partial`` folder of one run; :attr:`done` chunks are already finished.

    ``job`` describes everything that decides the chunks' contents (bundle, inputs, seed,
    chunk size, ...). Without ``resume`` an existing folder is discarded; with it, a folder
    for a different job is an error rather than silently mixed in.
    """

    def __init__(self, out: Path, job: dict[str, Any], resume: bool) -> None:
        self.dir = partial_dir(out)
        self.job = {"format": FORMAT_VERSION, **job}
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(exist_ok=True)
        self._lock = (self.dir / "lock").open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise InputError(f"another run is writing {out} right now (it holds {self.dir}); "
                             "wait for it or choose another --out") from None
        _remove_stale_temporaries(out, self.dir)
        self.done = self._open(out, resume)

    def _open(self, out: Path, resume: bool) -> int:
        job_path = self.dir / JOB_FILE
        previous = self._read_job(job_path)
        if previous is not None and resume:
            if previous != self.job:
                changed = sorted(k for k in set(previous) | set(self.job)
                                 if previous.get(k) != self.job.get(k))
                self.close()
                raise InputError(
                    f"cannot --resume into {out}: the interrupted run was for different "
                    f"{', '.join(changed)}; run without --resume to start over")
            done = self._count_done()
            log.info("resuming %s: %d chunks already scored", out, done)
            return done
        if previous is not None or self._count_done():
            log.warning("discarding an earlier unfinished run for %s (%d chunks); pass "
                        "--resume to continue one instead", out, self._count_done())
        elif resume:
            log.info("nothing to resume for %s: starting from the beginning", out)
        for entry in self.dir.iterdir():
            if entry.name != "lock":
                entry.unlink()
        atomic_write(job_path, json.dumps(self.job, indent=2, sort_keys=True).encode())
        return 0

    @staticmethod
    def _read_job(path: Path) -> dict[str, Any] | None:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return raw if isinstance(raw, dict) else None

    def _chunk_path(self, index: int) -> Path:
        return self.dir / f"chunk-{index:06d}.arrow"

    def _count_done(self) -> int:
        index = 0
        while self._chunk_path(index).is_file():
            index += 1
        return index

    def commit(self, index: int, table: pa.Table) -> None:
        """Store chunk ``index`` (the next one) for good."""
        if index != self.done:
            raise RuntimeError(f"chunk {index} committed after {self.done - 1}")
        buf = pa.BufferOutputStream()
        with pa.ipc.new_file(buf, table.schema) as writer:
            writer.write_table(table)
        atomic_write(self._chunk_path(index), buf.getvalue().to_pybytes())
        self.done += 1

    def rows_done(self) -> int:
        """Rows in the finished chunks (read from the files' footers, not their data)."""
        total = 0
        for i in range(self.done):
            with pa.memory_map(str(self._chunk_path(i))) as source:
                reader = pa.ipc.open_file(source)
                total += sum(reader.get_record_batch(b).num_rows
                             for b in range(reader.num_record_batches))
        return total

    def tables(self) -> Iterator[pa.Table]:
        """The finished chunks' result tables, in order, one at a time."""
        for i in range(self.done):
            with pa.memory_map(str(self._chunk_path(i))) as source:
                yield pa.ipc.open_file(source).read_all()

    def remove(self) -> None:
        """The run is over (output written, or given up for bad input): drop the folder."""
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


def _remove_stale_temporaries(out: Path, folder: Path) -> None:
    """Temporary files a killed run left behind (only a run holding the lock gets here, so
    none of them is being written)."""
    stale = [*temporaries(out), *temporaries(rejects_path(out)), *folder.glob(".*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
