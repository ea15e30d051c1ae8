"""kinetoscope: an open, trainable text-to-video system."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kinetoscope")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"

from kinetoscope.errors import KinetoscopeError  # noqa: E402

__all__ = ["KinetoscopeError", "__version__"]
