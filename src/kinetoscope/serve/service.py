"""From a validated request to a queued job: check values against the model, stage input files, enqueue.

Every check that can fail happens here, before anything is queued, so a bad request gets a
4xx at once instead of a job that fails later. A job's ``params`` are exactly the keyword
arguments of ``Pipeline.__call__`` (input files by their name in the job's input folder).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import secrets
import time
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from fastapi import UploadFile

from kinetoscope.errors import InvalidInputError, MediaError
from kinetoscope.files import make_private
from kinetoscope.pipeline.request import DEFAULT_STEPS, EDIT_STRENGTH, check_image_frame, check_moving, check_prompt
from kinetoscope.io import VideoInfo, is_video_path, probe, read_image, read_video, write_image
from kinetoscope.safety import SigningKey, load_policy
from kinetoscope.serve.capabilities import Capabilities, seconds_text
from kinetoscope.serve.errors import ConflictError, NotFoundError, QueueFullError
from kinetoscope.serve.schemas import (
    ConnectRequest,
    CreateRequest,
    EditRequest,
    ExtendRequest,
    ImageReference,
    RemixRequest,
    VideoReference,
    _Generation,
)
from kinetoscope.serve.store import Files, Job, NewJob, QueueFull, Store, is_valid_id, new_id
from kinetoscope.serve.worker import Worker

#: Model names of OpenAI's API that programs written for it send; they mean "the model served here".
OPENAI_MODEL_PREFIX = "sora-"

Variant = Literal["video", "thumbnail", "spritesheet"]
VARIANTS: dict[str, tuple[str, str]] = {
    "video": (Files.VIDEO, "video/mp4"),
    "thumbnail": (Files.THUMBNAIL, "image/webp"),
    "spritesheet": (Files.SPRITESHEET, "image/jpeg"),
}


@dataclasses.dataclass
class Settings:
    """How the service runs; ``kinetoscope serve`` sets these from its options."""

    #: Outputs, uploads and (by default) the job database live here.
    data_dir: Path
    #: The SQLite job database; default ``data_dir/jobs.sqlite3``.
    database: Path | None = None
    #: When set, every /v1 request must carry ``Authorization: Bearer <api_key>``.
    api_key: str | None = None
    max_prompt_chars: int = 4000
    #: The most bytes one request may carry (uploads included).
    max_upload_bytes: int = 64 * 2**20
    #: Jobs queued or running at once; one more is refused with 429.
    max_queue: int = 256
    #: A job the server crashed in this many times is failed instead of run again.
    max_attempts: int = 2
    #: Sent as ``openai-poll-after-ms`` while a job runs (the SDK's ``create_and_poll`` honours it).
    poll_after_ms: int = 1000
    #: How far a remix or edit departs from its source when the request does not say (the pipeline's default).
    edit_strength: float = EDIT_STRENGTH
    #: Signs every video with a C2PA manifest (``kinetoscope serve``: from KINETOSCOPE_C2PA_CERT/KEY).
    c2pa: SigningKey | None = None
    #: The most work one request may ask for, in frames x pixels x sampling steps; None: 64 times the
    #: model's default request (its default size and duration at the pipeline's default steps).
    max_work: int | None = None
    #: A job running longer than this many seconds fails with code ``job_time_limit`` (None: no limit).
    job_time_limit: float | None = 900.0
    #: How long ``DELETE`` of a running job waits for it to stop at its next sampling step.
    cancel_wait: float = 30.0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.database = Path(self.database) if self.database else self.data_dir / "jobs.sqlite3"


class VideoService:
    """The job queue behind the HTTP routes."""

    def __init__(self, pipeline: Any, settings: Settings):
        self.settings = settings
        self.capabilities = Capabilities.from_pipeline(pipeline)
        self.store = Store(settings.database)
        self.files = Files(settings.data_dir)
        self.worker = Worker(
            self.store, pipeline, self.files, max_attempts=settings.max_attempts, signing=settings.c2pa,
            time_limit=settings.job_time_limit,
        )  # fmt: skip
        limits = self.capabilities.limits
        default_work = limits.default_frames * limits.default_width * limits.default_height * DEFAULT_STEPS
        self.max_work = settings.max_work if settings.max_work is not None else 64 * default_work
        # The same policy the pipeline applies, checked here too so a refusal is a 400 now, not a failed job later.
        self.policy = load_policy()

    # ---------------------------------------------------------------- reading
    def get(self, video_id: str, param: str = "video_id") -> Job:
        job = self.store.get(video_id) if is_valid_id(video_id) else None
        if job is None:
            raise NotFoundError(f"No video with id {video_id!r} exists here.", param=param)
        return job

    def list(self, *, after: str | None, limit: int, order: Literal["asc", "desc"]) -> tuple[list[Job], bool]:
        if after is not None and not (is_valid_id(after) and self.store.known(after)):
            raise NotFoundError(f"No video with id {after!r} exists here.", param="after")
        return self.store.list(after=after, limit=limit, order=order)

    def content(self, video_id: str, variant: Variant) -> tuple[Path, str]:
        """The file of a finished video's ``variant`` and its media type."""
        self._completed(video_id, "video_id")
        name, media_type = VARIANTS[variant]
        path = self.files.outputs(video_id) / name
        if not path.is_file():
            raise NotFoundError(
                f"The {variant} of video {video_id} is missing from the server's data.", param="variant"
            )
        return path, media_type

    def delete(self, video_id: str) -> None:
        """Delete a video; a queued one never runs, a running one is stopped at its next sampling step."""
        self.get(video_id)
        removed = self.store.delete(video_id)
        if removed is None:
            raise NotFoundError(f"No video with id {video_id!r} exists here.", param="video_id")
        if removed.status == "in_progress":
            self._cancel(video_id)
        self.files.remove(video_id)

    def _cancel(self, video_id: str) -> None:
        self.worker.cancel(video_id)
        deadline = time.monotonic() + self.settings.cancel_wait
        while time.monotonic() < deadline:
            job = self.store.get(video_id)
            if job is None:  # the worker stopped and removed it
                return
            if job.status != "in_progress":  # it finished before its next step: delete it as it is
                self.store.delete(video_id)
                return
            time.sleep(0.05)
        raise ConflictError(
            f"Video {video_id} is still running after {self.settings.cancel_wait:g} s; it stops at its next "
            "sampling step, delete it again then.",
            param="video_id",
        )

    # ---------------------------------------------------------------- creating
    def create(self, request: CreateRequest) -> Job:
        """Text to video, or image to video when ``input_reference`` is given."""
        caps = self.capabilities
        prompt = self._prompt(request.prompt)
        self._model(request.model)
        width, height = caps.parse_size(request.size if request.size is not None else caps.default_size)
        # A loop's last frame flows into its first, which the pipeline samples as one more frame.
        longest = caps.limits.max_frames - 1 if request.loop else None
        seconds = caps.parse_seconds(
            request.seconds if request.seconds is not None else caps.default_seconds, most_frames=longest
        )
        self._check_work(caps.num_frames(seconds), width, height, request.steps)
        params = self._common(request) | {
            "width": width,
            "height": height,
            "seconds": seconds,
            "fps": caps.fps,
            "loop": request.loop,
        }
        kind = "loop" if request.loop else "generate"
        video_id = new_id()
        if request.input_reference is None and request.image_frame != 0:
            raise InvalidInputError("image_frame places input_reference; give an image, or leave it out.", param="image_frame")
        with self._staging(video_id) as folder:
            if request.input_reference is not None:
                check_image_frame(request.image_frame, caps.num_frames(seconds), loop=request.loop)
                params |= {
                    "image": self._stage_image(request.input_reference, folder),
                    "image_frame": request.image_frame,
                }
                kind = "loop" if request.loop else "animate"
            job = NewJob(kind, caps.model, f"{seconds:g}", f"{width}x{height}", prompt, params)
            return self._submit(video_id, job)

    def remix(self, source_id: str, request: RemixRequest) -> Job:
        """The finished video ``source_id`` edited with a new prompt."""
        source = self._completed(source_id, "video_id")
        prompt = self._prompt(request.prompt)
        width, height = (int(side) for side in source.size.split("x"))
        self._check_work(self.capabilities.num_frames(float(source.seconds)), width, height, request.steps)
        video_id = new_id()
        with self._staging(video_id) as folder:
            video = self._stage_video(VideoReference(id=source.id), folder, "video", "video_id")
            params = self._common(request) | {"video": video, "strength": self._strength(request)}
            job = NewJob("remix", self.capabilities.model, source.seconds, source.size, prompt, params, source.id)
            return self._submit(video_id, job)

    def edit(self, request: EditRequest) -> Job:
        prompt = self._prompt(request.prompt)
        video_id = new_id()
        with self._staging(video_id) as folder:
            video = self._stage_video(request.video, folder, "video", "video")
            info = probe(folder / video)
            most = self.capabilities.limits.max_frames
            if info.num_frames > most:
                raise InvalidInputError(
                    f"video has {info.num_frames} frames; this model edits at most {most}.", param="video"
                )
            self._check_work(info.num_frames, info.width, info.height, request.steps)
            params = self._common(request) | {"video": video, "strength": self._strength(request)}
            job = NewJob(
                "edit",
                self.capabilities.model,
                seconds_text(info.duration),
                f"{info.width}x{info.height}",
                prompt,
                params,
            )
            return self._submit(video_id, job)

    def extend(self, request: ExtendRequest) -> Job:
        prompt = self._prompt(request.prompt)
        # (The pipeline keeps some of the video's frames in the clip it samples; if they and the new
        # seconds do not fit, the job fails with the pipeline's sentence saying how many would.)
        seconds = self.capabilities.parse_seconds(request.seconds)
        video_id = new_id()
        with self._staging(video_id) as folder:
            video = self._stage_video(request.video, folder, "video", "video")
            info = _moving(probe(folder / video), "video")
            self._check_work(self.capabilities.num_frames(seconds), info.width, info.height, request.steps)
            params = self._common(request) | {"video": video, "direction": request.direction, "seconds": seconds}
            total = seconds_text(info.duration + seconds)  # OpenAI reports an extension's stitched length
            job = NewJob("extend", self.capabilities.model, total, f"{info.width}x{info.height}", prompt, params)
            return self._submit(video_id, job)

    def connect(self, request: ConnectRequest) -> Job:
        prompt = self._prompt(request.prompt)
        seconds = self.capabilities.parse_seconds(request.seconds)
        video_id = new_id()
        with self._staging(video_id) as folder:
            first = self._stage_video(request.video, folder, "video", "video")
            second = self._stage_video(request.video_b, folder, "video_b", "video_b")
            a, b = _moving(probe(folder / first), "video"), _moving(probe(folder / second), "video_b")
            self._check_work(self.capabilities.num_frames(seconds), a.width, a.height, request.steps)
            params = self._common(request) | {"video": first, "video_b": second, "seconds": seconds}
            total = seconds_text(a.duration + seconds + b.duration)  # video, the transition, video_b
            job = NewJob("connect", self.capabilities.model, total, f"{a.width}x{a.height}", prompt, params)
            return self._submit(video_id, job)

    # ---------------------------------------------------------------- checks
    def _prompt(self, prompt: str, param: str = "prompt", allow_empty: bool = False) -> str:
        """Every text field: the request layer's rule (valid Unicode, the length limit, not blank), then the policy."""
        return check_prompt(prompt, param, allow_empty=allow_empty, max_chars=self.settings.max_prompt_chars, policy=self.policy)

    def _model(self, model: str | None) -> None:
        served = self.capabilities.model
        if model is not None and model != served and not model.startswith(OPENAI_MODEL_PREFIX):
            raise InvalidInputError(
                f"model {model!r} is not served here; this server runs {served!r} "
                f"(OpenAI's names such as 'sora-2' are accepted and mean it too).",
                param="model",
            )

    def _check_work(self, frames: int, width: int, height: int, steps: int | None) -> None:
        """Refuse a request whose frames x pixels x steps is over the server's budget, before it is queued."""
        steps = steps or DEFAULT_STEPS
        work = frames * width * height * steps
        if work > self.max_work:
            raise InvalidInputError(
                f"This request asks for {work:,} units of work ({frames} frames x {width}x{height} pixels x {steps} "
                f"steps); this server allows {self.max_work:,}: ask for fewer seconds, a smaller size or fewer steps.",
                param="seconds",
            )

    def _strength(self, request: RemixRequest) -> float:
        return request.strength if request.strength is not None else self.settings.edit_strength

    def _common(self, request: _Generation) -> dict[str, Any]:
        """Pipeline arguments every mode shares; a seed is always drawn so that a re-run makes the same video."""
        if request.negative_prompt is not None:
            self._prompt(request.negative_prompt, "negative_prompt", allow_empty=True)
        params: dict[str, Any] = {"prompt": request.prompt, "seed": request.seed}
        if params["seed"] is None:
            params["seed"] = secrets.randbelow(2**31)
        for name in ("negative_prompt", "steps", "guidance"):
            if getattr(request, name) is not None:
                params[name] = getattr(request, name)
        return params

    def _completed(self, video_id: str, param: str) -> Job:
        job = self.get(video_id, param)
        if job.status != "completed":
            raise ConflictError(f"Video {video_id} is {job.status}, not completed.", param=param)
        return job

    # ---------------------------------------------------------------- inputs and queue
    @contextlib.contextmanager
    def _staging(self, video_id: str) -> Iterator[Path]:
        """The job's input folder; removed again if the request fails before the job is queued."""
        if self.store.count("queued", "in_progress") >= self.settings.max_queue:
            raise self._queue_full()  # cheap early refusal; _submit checks again atomically
        folder = self.files.inputs(video_id)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def _submit(self, video_id: str, job: NewJob) -> Job:
        make_private(self.files.inputs(video_id))  # what the request uploaded, all written by now
        try:
            queued = self.store.add(job, video_id=video_id, max_queue=self.settings.max_queue)
        except QueueFull:
            raise self._queue_full() from None
        self.worker.wake()
        return queued

    def _queue_full(self) -> QueueFullError:
        return QueueFullError(
            f"The queue is full ({self.settings.max_queue} videos waiting or running); try again once some finish."
        )

    def _stage_image(self, reference: UploadFile | ImageReference, folder: Path) -> str:
        """Save ``input_reference`` as ``image.png`` in the job's folder (decoded once here, so bad files fail now)."""
        raw = folder / "image.upload"
        if isinstance(reference, ImageReference):
            raw.write_bytes(_data_url_bytes(reference))
        else:
            _save_upload(reference, raw)
        try:
            image = read_image(raw)
        except MediaError:
            raise MediaError(
                "input_reference is not a PNG, JPEG or WebP image that can be read.", param="input_reference"
            ) from None
        write_image(folder / "image.png", image)
        raw.unlink()
        return "image.png"

    def _stage_video(self, given: UploadFile | VideoReference, folder: Path, name: str, param: str) -> str:
        """Copy a finished video (by id) or save an upload into the job's folder, and check that it decodes.

        Any size will do: the pipeline fits a video of another size to its grid.
        """
        if isinstance(given, VideoReference):
            source = self._completed(given.id, param)
            filename = f"{name}.mp4"
            shutil.copyfile(self.files.outputs(source.id) / Files.VIDEO, folder / filename)
        else:
            suffix = Path(given.filename or "").suffix.lower()
            filename = name + (suffix if is_video_path(f"x{suffix}") else ".mp4")
            _save_upload(given, folder / filename)
        try:
            read_video(folder / filename, max_frames=1)
        except MediaError:
            raise MediaError(
                f"{param} is not a video that can be read (mp4, webm, mov, gif or webp).", param=param
            ) from None
        return filename


def _save_upload(upload: UploadFile, path: Path) -> None:
    upload.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out)


def _data_url_bytes(reference: ImageReference) -> bytes:
    if reference.file_id is not None:
        raise InvalidInputError(
            "input_reference.file_id is not supported here; upload the image, or send image_url as a data: URL.",
            param="input_reference",
        )
    url = reference.image_url or ""
    header, comma, payload = url.partition(",")
    if not (url.startswith("data:") and comma and header.endswith(";base64")):
        raise InvalidInputError(
            "input_reference.image_url must be a base64 data: URL such as 'data:image/png;base64,...'; "
            "this server fetches nothing from the network.",
            param="input_reference",
        )
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise InvalidInputError("input_reference.image_url holds invalid base64.", param="input_reference") from None


def _moving(info: VideoInfo, param: str) -> VideoInfo:
    """Extending or connecting needs motion to continue: at least two frames (the pipeline's rule)."""
    check_moving(info.num_frames, param)
    return info
