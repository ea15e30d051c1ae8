"""One worker thread that runs queued jobs in submission order through the pipeline.

A job's ``params`` are the pipeline's keyword arguments, with input files named relative to
the job's input folder, so a job can be run again after a restart from its row alone.
Stopping the server interrupts the running job at its next progress step and puts it back
in the queue; a crash leaves it ``in_progress``, which :meth:`Store.recover` sorts out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kinetoscope.errors import KinetoscopeError
from kinetoscope.files import atomic_directory, make_private
from kinetoscope.safety import SigningKey
from kinetoscope.serve.capabilities import seconds_text
from kinetoscope.serve.errors import error_body
from kinetoscope.serve.media import write_previews
from kinetoscope.serve.store import Files, Job, Store

log = logging.getLogger("kinetoscope.serve")

#: Job parameters that name a file in the job's input folder.
INPUT_FILES = ("image", "video", "video_b")


class _Stopped(Exception):
    """Raised from the progress callback to abandon a job when the server stops."""


class _Cancelled(Exception):
    """Raised from the progress callback when the running job was deleted."""


class JobTimeLimitError(KinetoscopeError):
    status_code = 500
    code = "job_time_limit"


class Worker:
    def __init__(
        self,
        store: Store,
        pipeline: Callable[..., Any],
        files: Files,
        *,
        max_attempts: int = 2,
        signing: SigningKey | None = None,
        time_limit: float | None = None,
    ):
        self.store = store
        self.pipeline = pipeline
        self.files = files
        self.max_attempts = max_attempts
        #: When set, every video is signed with a C2PA manifest naming the pipeline's model id.
        self.signing = signing
        #: A job running longer than this many seconds fails at its next step (None: no limit).
        self.time_limit = time_limit
        self._cancelled: set[str] = set()
        self._cancel_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kinetoscope-worker", daemon=True)

    def start(self) -> None:
        retried, failed = self.store.recover(max_attempts=self.max_attempts)
        if retried or failed:
            log.warning("after a restart: %d interrupted jobs queued again, %d failed", len(retried), len(failed))
        self._thread.start()

    def wake(self) -> None:
        """A job was queued: stop idling."""
        self._wake.set()

    def cancel(self, video_id: str) -> None:
        """Stop the running job ``video_id`` at its next step; the worker then deletes it and its files."""
        with self._cancel_lock:
            self._cancelled.add(video_id)

    def stop(self, timeout: float = 60.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            job = self.store.claim_next()
            if job is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        log.info("running %s (%s)", job.id, job.kind)
        try:
            result = self.pipeline(**self._arguments(job), progress=self._progress(job.id))
            with atomic_directory(self.files.outputs(job.id)) as folder:
                result.save(folder / Files.VIDEO)
                if self.signing is not None:
                    self.signing.sign(folder / Files.VIDEO, self.pipeline.model_id)
                write_previews(
                    folder, result.frames, thumbnail_name=Files.THUMBNAIL, spritesheet_name=Files.SPRITESHEET
                )
                make_private(folder)
        except _Stopped:
            self.store.requeue(job.id)
            log.info("stopped during %s; it is queued again", job.id)
        except _Cancelled:
            self.store.delete(job.id, running_too=True)
            self.files.remove(job.id)
            log.info("cancelled %s", job.id)
        except KinetoscopeError as e:
            self.store.fail(job.id, error_body(e))
            log.info("%s failed: %s", job.id, e)
        except Exception as e:  # a bug or an exhausted machine: the job fails, the worker lives on
            log.exception("%s failed", job.id)
            self.store.fail(
                job.id,
                {
                    "code": "generation_failed",
                    "message": f"generation failed with {type(e).__name__}: {e}",
                    "param": None,
                    "type": "server_error",
                },
            )
        else:
            frames, height, width = result.frames.shape[:3]
            self.store.complete(job.id, size=f"{width}x{height}", seconds=seconds_text(frames / result.fps))
            log.info("completed %s", job.id)

    def _arguments(self, job: Job) -> dict[str, Any]:
        inputs = self.files.inputs(job.id)
        return {k: str(inputs / v) if k in INPUT_FILES else v for k, v in job.params.items()}

    def _progress(self, video_id: str) -> Callable[[int, int], None]:
        last = -1
        started = time.monotonic()

        def report(step: int, total: int) -> None:
            nonlocal last
            if self._stopping.is_set():
                raise _Stopped
            with self._cancel_lock:
                if video_id in self._cancelled:
                    self._cancelled.discard(video_id)
                    raise _Cancelled
            if self.time_limit is not None and time.monotonic() - started > self.time_limit:
                raise JobTimeLimitError(
                    f"The job ran past the server's limit of {self.time_limit:g} s per video at step {step} of "
                    f"{total}; ask for fewer frames, a smaller size or fewer steps."
                )
            percent = min(99, 100 * step // max(total, 1))  # 100 only once the files are written
            if percent != last:
                self.store.set_progress(video_id, percent)
                last = percent

        return report
