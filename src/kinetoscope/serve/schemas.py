"""Request and response bodies of the OpenAI Videos API, plus kinetoscope's extra fields.

Requests arrive as JSON or as multipart forms (the ``openai`` SDK sends ``create``, ``edit``
and ``extend`` as multipart even without a file), so every field also accepts the string a
form carries ("8", "true"). Unknown fields are refused, as OpenAI does.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field


# ---------------------------------------------------------------- responses
class VideoError(BaseModel):
    code: str
    message: str
    param: Optional[str] = None
    type: Optional[str] = None


class Video(BaseModel):
    """The OpenAI ``Video`` object; ``seed`` is kinetoscope's addition (same seed, same video)."""

    id: str
    object: Literal["video"] = "video"
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int
    created_at: int
    completed_at: Optional[int] = None
    expires_at: Optional[int] = None
    model: str
    seconds: str
    size: str
    prompt: Optional[str] = None
    remixed_from_video_id: Optional[str] = None
    error: Optional[VideoError] = None
    seed: Optional[int] = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: Optional[str] = None
    last_id: Optional[str] = None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# ---------------------------------------------------------------- requests
class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class ImageReference(_Request):
    """``input_reference`` given as an object: a base64 ``data:`` URL (nothing is fetched from the network)."""

    image_url: Optional[str] = None
    file_id: Optional[str] = None


class VideoReference(_Request):
    """A finished video of this server, by id."""

    id: str


class _Generation(_Request):
    """Fields every request shares; all but ``prompt`` are kinetoscope extras (send them with ``extra_body``)."""

    prompt: str
    negative_prompt: Optional[str] = None
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    steps: Optional[int] = Field(None, ge=1, le=500)
    guidance: Optional[float] = Field(None, ge=0.0, le=50.0)


class CreateRequest(_Generation):
    """``POST /v1/videos``: text to video, or image to video with ``input_reference``."""

    model: Optional[str] = None
    seconds: Optional[Union[str, float]] = None
    size: Optional[str] = None
    input_reference: Optional[Union[UploadFile, ImageReference]] = Field(
        None, description='an uploaded image file, or {"image_url": "data:image/png;base64,..."}'
    )
    #: Extra: where the given image is placed (0 first frame, -1 last, any index between).
    image_frame: int = 0
    #: Extra: make the clip loop seamlessly.
    loop: bool = False


class RemixRequest(_Generation):
    """``POST /v1/videos/{id}/remix``: the video redone with a new prompt."""

    #: Extra: how far from the source to go (0 keeps it, 1 ignores it).
    strength: Optional[float] = Field(None, gt=0.0, le=1.0)


_VIDEO = 'an uploaded video file, or {"id": "video_..."} of a completed video'


class EditRequest(RemixRequest):
    """``POST /v1/videos/edits``: a finished video (by id) or an uploaded one, edited with a prompt."""

    video: Union[UploadFile, VideoReference] = Field(description=_VIDEO)


class ExtendRequest(_Generation):
    """``POST /v1/videos/extensions``: ``seconds`` more of a video (by id or uploaded)."""

    video: Union[UploadFile, VideoReference] = Field(description=_VIDEO)
    seconds: Union[str, float]
    #: Extra: add the new seconds after the end (forward) or before the start (backward).
    direction: Literal["forward", "backward"] = "forward"


class ConnectRequest(_Generation):
    """Extra endpoint ``POST /v1/videos/connections``: ``seconds`` of video that lead from ``video`` to ``video_b``."""

    video: Union[UploadFile, VideoReference] = Field(description=_VIDEO)
    video_b: Union[UploadFile, VideoReference] = Field(description=_VIDEO)
    seconds: Union[str, float]
