"""The job store: one SQLite table of video jobs (WAL), and where each job's files live.

Every status change is one conditional ``UPDATE ... WHERE status = ?`` so two actors (the
worker, a DELETE request, a restarted server) can never both win the same transition.
Ids are ``video_`` + 32 hex digits; a path is only ever built from an id that matches that
pattern, never from anything a client sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from kinetoscope.files import make_private

ID_PATTERN = re.compile(r"video_[0-9a-f]{32}")

Status = Literal["queued", "in_progress", "completed", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,       -- submission order: the queue order and the list order
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,                          -- generate, animate, extend, edit, remix, connect
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    model TEXT NOT NULL,
    seconds TEXT NOT NULL,
    size TEXT NOT NULL,
    prompt TEXT NOT NULL,
    remixed_from_video_id TEXT,
    params TEXT NOT NULL,                        -- JSON: the pipeline arguments
    error TEXT,                                  -- JSON: {code, message, param, type}
    attempts INTEGER NOT NULL DEFAULT 0          -- times a worker started it
);
CREATE INDEX IF NOT EXISTS videos_status ON videos (status, seq);
-- Where deleted videos stood in the list (ids only, nothing of their content), so a client paging
-- with a deleted video as its cursor goes on from there.
CREATE TABLE IF NOT EXISTS deleted (id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


_CURSOR_SEQ = "SELECT seq FROM videos WHERE id = ? UNION ALL SELECT seq FROM deleted WHERE id = ? LIMIT 1"


class QueueFull(Exception):
    """Raised by :meth:`Store.add` when ``max_queue`` jobs are already waiting or running."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One row of the store."""

    id: str
    kind: str
    status: Status
    progress: int
    created_at: int
    completed_at: int | None
    model: str
    seconds: str
    size: str
    prompt: str
    remixed_from_video_id: str | None
    params: dict[str, Any]
    error: dict[str, Any] | None
    attempts: int


@dataclasses.dataclass(frozen=True)
class NewJob:
    """What a request decided: everything a worker needs to run the job later, even after a restart."""

    kind: str
    model: str
    seconds: str
    size: str
    prompt: str
    params: dict[str, Any]
    remixed_from_video_id: str | None = None


def new_id() -> str:
    return f"video_{secrets.token_hex(16)}"


def is_valid_id(video_id: str) -> bool:
    return isinstance(video_id, str) and ID_PATTERN.fullmatch(video_id) is not None


class Store:
    """Thread-safe access to the jobs table; one connection guarded by a lock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves (BEGIN IMMEDIATE) where they matter.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        make_private(self.path)  # SQLite gives its WAL and shared-memory files the same mode
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ reading
    def get(self, video_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM videos WHERE id = ?", (video_id,)).fetchone()
        return _job(row) if row else None

    def list(self, *, after: str | None, limit: int, order: Literal["asc", "desc"]) -> tuple[list[Job], bool]:
        """Up to ``limit`` jobs in submission order after the job ``after``; and whether more follow."""
        compare, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        with self._lock:
            where, args = "", []
            if after is not None:
                where, args = f"WHERE seq {compare} ({_CURSOR_SEQ})", [after, after]
            rows = self._db.execute(
                f"SELECT * FROM videos {where} ORDER BY seq {direction} LIMIT ?", [*args, limit + 1]
            ).fetchall()
        return [_job(r) for r in rows[:limit]], len(rows) > limit

    def known(self, video_id: str) -> bool:
        """Whether ``video_id`` is, or was before it was deleted, a job here (a valid list cursor)."""
        with self._lock:
            return self._db.execute(_CURSOR_SEQ, (video_id, video_id)).fetchone() is not None

    def count(self, *statuses: Status) -> int:
        marks = ",".join("?" * len(statuses))
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM videos WHERE status IN ({marks})", statuses).fetchone()[0]

    # ------------------------------------------------------------------ writing
    def add(self, job: NewJob, *, video_id: str | None = None, max_queue: int | None = None) -> Job:
        """Insert a queued job; raise :class:`QueueFull` if ``max_queue`` jobs already wait or run."""
        video_id = video_id or new_id()
        with self._lock, self._transaction():
            if max_queue is not None:
                waiting = self._db.execute(
                    "SELECT COUNT(*) FROM videos WHERE status IN ('queued', 'in_progress')"
                ).fetchone()[0]
                if waiting >= max_queue:
                    raise QueueFull(waiting)
            self._db.execute(
                "INSERT INTO videos (id, kind, status, created_at, model, seconds, size, prompt, remixed_from_video_id,"
                " params) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (
                    video_id,
                    job.kind,
                    int(time.time()),
                    job.model,
                    job.seconds,
                    job.size,
                    job.prompt,
                    job.remixed_from_video_id,
                    json.dumps(job.params),
                ),
            )
        return self.get(video_id)  # type: ignore[return-value]

    def claim_next(self) -> Job | None:
        """Move the oldest queued job to in_progress and return it (None when the queue is empty)."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT id FROM videos WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE videos SET status = 'in_progress', progress = 0, attempts = attempts + 1 WHERE id = ?",
                (row["id"],),
            )
        return self.get(row["id"])

    def set_progress(self, video_id: str, progress: int) -> None:
        self._update_running(video_id, "progress = ?", (progress,))

    def complete(self, video_id: str, *, size: str, seconds: str) -> bool:
        """Mark a running job done, with the size and duration it came out at (an upload may have been fitted)."""
        return self._update_running(
            video_id,
            "status = 'completed', progress = 100, size = ?, seconds = ?, completed_at = ?",
            (size, seconds, int(time.time())),
        )

    def fail(self, video_id: str, error: dict[str, Any]) -> bool:
        return self._update_running(
            video_id, "status = 'failed', error = ?, completed_at = ?", (json.dumps(error), int(time.time()))
        )

    def requeue(self, video_id: str) -> bool:
        """Put a job the server interrupted on purpose back in the queue; this start does not count."""
        return self._update_running(video_id, "status = 'queued', progress = 0, attempts = attempts - 1", ())

    def delete(self, video_id: str, *, running_too: bool = False) -> Job | None:
        """Remove a job, unless it is running and not ``running_too``; return its row as it was (still
        ``in_progress``: kept), or None."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT * FROM videos WHERE id = ?", (video_id,)).fetchone()
            if row is None or (row["status"] == "in_progress" and not running_too):
                return _job(row) if row else None
            self._db.execute("DELETE FROM videos WHERE id = ?", (video_id,))
            self._db.execute("INSERT OR REPLACE INTO deleted (id, seq) VALUES (?, ?)", (video_id, row["seq"]))
        return _job(row)

    def recover(self, *, max_attempts: int) -> tuple[list[str], list[str]]:
        """After a crash: jobs left in_progress run again, or fail once they have been started ``max_attempts`` times.

        Returns the ids put back in the queue and the ids failed.
        """
        with self._lock, self._transaction():
            rows = self._db.execute("SELECT id, attempts FROM videos WHERE status = 'in_progress'").fetchall()
            retry = [r["id"] for r in rows if r["attempts"] < max_attempts]
            give_up = [r["id"] for r in rows if r["attempts"] >= max_attempts]
            self._db.executemany(
                "UPDATE videos SET status = 'queued', progress = 0 WHERE id = ?", [(i,) for i in retry]
            )
            error = json.dumps(
                {
                    "code": "interrupted",
                    "message": f"the server stopped while running this job {max_attempts} times; it was not tried again.",
                    "param": None,
                    "type": "server_error",
                }
            )
            self._db.executemany(
                "UPDATE videos SET status = 'failed', error = ?, completed_at = ? WHERE id = ?",
                [(error, int(time.time()), i) for i in give_up],
            )
        return retry, give_up

    # ------------------------------------------------------------------ helpers
    def _update_running(self, video_id: str, assignments: str, values: tuple) -> bool:
        """Apply ``assignments`` if the job is still running; whether it was."""
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE videos SET {assignments} WHERE id = ? AND status = 'in_progress'", (*values, video_id)
            )
        return cursor.rowcount == 1

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE``: take SQLite's write lock up front, so a read-then-write is one step."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _job(row: sqlite3.Row) -> Job:
    fields = dict(row)
    fields.pop("seq")
    fields["params"] = json.loads(fields["params"])
    fields["error"] = json.loads(fields["error"]) if fields["error"] else None
    return Job(**fields)


class Files:
    """Where a job's inputs and outputs live under the data directory: ``inputs/<id>/``, ``videos/<id>/``."""

    VIDEO = "video.mp4"
    THUMBNAIL = "thumbnail.webp"
    SPRITESHEET = "spritesheet.jpg"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        # Prompts, uploads and videos are the users' own: only the service's user reads them.
        for folder in ("inputs", "videos"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        make_private(self.root)

    def inputs(self, video_id: str) -> Path:
        return self.root / "inputs" / _checked(video_id)

    def outputs(self, video_id: str) -> Path:
        return self.root / "videos" / _checked(video_id)

    def remove(self, video_id: str) -> None:
        shutil.rmtree(self.inputs(video_id), ignore_errors=True)
        shutil.rmtree(self.outputs(video_id), ignore_errors=True)


def _checked(video_id: str) -> str:
    if not is_valid_id(video_id):
        raise ValueError(f"not a video id: {video_id!r}")  # a bug in the caller: ids are validated at the edge
    return video_id
