"""One exception family for everything a user can get wrong.

The CLI turns any :class:`KinetoscopeError` into one sentence on stderr and exit code 2;
the service turns it into an OpenAI-style error body with a 4xx status. Anything else that
escapes is a bug in kinetoscope, not in the input.
"""


class KinetoscopeError(Exception):
    """Base class: the message is one sentence naming the value and what is accepted."""

    #: HTTP status the service answers with.
    status_code = 400
    #: OpenAI-style ``error.code``.
    code = "invalid_request"
    #: Name of the offending parameter, when there is one (OpenAI ``error.param``).
    param: str | None = None

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        if param is not None:
            self.param = param


class InvalidInputError(KinetoscopeError, ValueError):
    """A value outside what is accepted: a size, a frame count, a strength, an empty prompt."""

    code = "invalid_value"


class MediaError(KinetoscopeError):
    """A video or image that cannot be read: missing, empty, corrupt, truncated, not media."""

    code = "invalid_media"


class ConfigError(KinetoscopeError):
    """A config file or override that does not describe a valid configuration."""

    code = "invalid_config"


class CheckpointError(KinetoscopeError):
    """A model directory or checkpoint that is missing files or does not match its config."""

    code = "invalid_checkpoint"
    status_code = 422


class MissingExtraError(KinetoscopeError):
    """An optional dependency that is not installed; the message names the extra that brings it."""

    code = "missing_dependency"
    status_code = 500


#: Optional modules and the extra of ``pip install 'kinetoscope[EXTRA]'`` that installs each.
EXTRAS = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
    "openai": "language",
    "c2pa": "safety",
    "transformers": "hf",
    "diffusers": "wan",
    "torch.utils.tensorboard": "train",
}


def require(module: str, purpose: str):
    """Import an optional ``module`` for ``purpose``, or say in one sentence which extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS[module]
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[-1]}, which is not installed: pip install 'kinetoscope[{extra}]'."
        ) from None
