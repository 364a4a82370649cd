"""Errors a user can cause. The CLI prints their message as one line and exits non-zero."""


class EdgeError(Exception):
    """A user-facing error: bad input, missing file, incompatible bundle. Never a bug."""

    exit_code = 2


class BundleError(EdgeError):
    """The bundle is missing, damaged, edited or from an incompatible version."""


class InputError(EdgeError):
    """An image, video or data folder that cannot be read."""


class BackendUnavailable(EdgeError):
    """The requested backend (e.g. TensorRT) is not installed on this machine."""
