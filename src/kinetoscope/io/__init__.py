"""Video and image files: read, write and probe mp4, gif, webp, png-frame folders and images.

Frames at this edge are uint8 numpy ``(T, H, W, 3)``; :func:`frames_to_tensor` and
:func:`tensor_to_frames` convert to and from the model's float ``(3, T, H, W)`` in [-1, 1].
Every failure is a :class:`~kinetoscope.errors.MediaError` (or ``InvalidInputError`` for bad
arguments) naming the file and the problem.
"""

from kinetoscope.io.frames import DEFAULT_FPS, frames_to_tensor, tensor_to_frames
from kinetoscope.io.image import read_image, write_image
from kinetoscope.io.paths import is_image_path, is_video_path
from kinetoscope.io.video import DEFAULT_QUALITY, Video, VideoInfo, probe, read_video, write_video

__all__ = [
    "DEFAULT_FPS",
    "DEFAULT_QUALITY",
    "Video",
    "VideoInfo",
    "frames_to_tensor",
    "is_image_path",
    "is_video_path",
    "probe",
    "read_image",
    "read_video",
    "tensor_to_frames",
    "write_image",
    "write_video",
]
