"""Request and response bodies of the OpenAI Videos API, plus kinetoscope's extra fields.

Requests arrive as JSON or as multipart forms (the ``openai`` SDK sends ``create``, ``edit``
and ``extend`` as multipart even without a file), so every field also accepts the string a
form carries ("8", "true"). Unknown fields are refused, as OpenAI does.
"""

from __future__ import annotations

from typing import Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr


# ---------------------------------------------------------------- responses
class VideoError(BaseModel):
    code: str
    message: str
    param: str | None = None
    type: str | None = None


class Video(BaseModel):
    """The OpenAI ``Video`` object; ``seed`` is kinetoscope's addition (same seed, same video)."""

    id: str
    object: Literal["video"] = "video"
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    model: str
    seconds: str
    size: str
    prompt: str | None = None
    remixed_from_video_id: str | None = None
    error: VideoError | None = None
    seed: int | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# ---------------------------------------------------------------- requests
#: The SDK sends "4"; a number is taken too, but never a boolean (pydantic would read true as 1).
Seconds = StrictStr | StrictInt | StrictFloat


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class ImageReference(_Request):
    """``input_reference`` given as an object: a base64 ``data:`` URL (nothing is fetched from the network)."""

    image_url: str | None = None
    file_id: str | None = None


class VideoReference(_Request):
    """A finished video of this server, by id."""

    id: str


class _Generation(_Request):
    """Fields every request shares; all but ``prompt`` are kinetoscope extras (send them with ``extra_body``)."""

    prompt: str
    negative_prompt: str | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    steps: int | None = Field(None, ge=1, le=500)
    guidance: float | None = Field(None, ge=0.0, le=50.0)


class CreateRequest(_Generation):
    """``POST /v1/videos``: text to video, or image to video with ``input_reference``."""

    model: str | None = None
    seconds: Seconds | None = None
    size: str | None = None
    input_reference: UploadFile | ImageReference | None = Field(
        None, description='an uploaded image file, or {"image_url": "data:image/png;base64,..."}'
    )
    #: Extra: where the given image is placed (0 first frame, -1 last, any index between).
    image_frame: int = 0
    #: Extra: make the clip loop seamlessly.
    loop: bool = False


class RemixRequest(_Generation):
    """``POST /v1/videos/{id}/remix``: the video redone with a new prompt."""

    #: Extra: how far from the source to go (0 keeps it, 1 ignores it).
    strength: float | None = Field(None, gt=0.0, le=1.0)


_VIDEO = 'an uploaded video file, or {"id": "video_..."} of a completed video'


class EditRequest(RemixRequest):
    """``POST /v1/videos/edits``: a finished video (by id) or an uploaded one, edited with a prompt."""

    video: UploadFile | VideoReference = Field(description=_VIDEO)


class ExtendRequest(_Generation):
    """``POST /v1/videos/extensions``: ``seconds`` more of a video (by id or uploaded)."""

    video: UploadFile | VideoReference = Field(description=_VIDEO)
    seconds: Seconds
    #: Extra: add the new seconds after the end (forward) or before the start (backward).
    direction: Literal["forward", "backward"] = "forward"


class ConnectRequest(_Generation):
    """Extra endpoint ``POST /v1/videos/connections``: ``seconds`` of video that lead from ``video`` to ``video_b``."""

    video: UploadFile | VideoReference = Field(description=_VIDEO)
    video_b: UploadFile | VideoReference = Field(description=_VIDEO)
    seconds: Seconds
