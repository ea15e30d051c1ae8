"""The OpenAI-compatible video service: ``/v1/videos``, a SQLite job queue, one worker, a web page.

``kinetoscope serve --model DIR`` runs it; ``create_app(pipeline, Settings(data_dir=...))``
builds the FastAPI app for any object with the :class:`kinetoscope.pipeline.Pipeline` interface.
"""

from kinetoscope.serve.app import create_app
from kinetoscope.serve.service import Settings

__all__ = ["Settings", "create_app"]
