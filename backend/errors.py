"""Errors the user can act on: each names what was wrong and, where possible, what to do about it."""

__all__ = ["Cancelled", "ClarcError", "DatasetError", "CheckpointError", "ConfigError"]


class ClarcError(Exception):
    """Base class of every error the backend raises on bad input; clients show its message as is."""


class ConfigError(ClarcError, ValueError):
    """An invalid configuration value (unknown choice, out-of-range number, malformed spec string)."""


class DatasetError(ClarcError):
    """A dataset that cannot be opened or read: missing folder, corrupt image, malformed ground-truth file."""


class CheckpointError(ClarcError):
    """A checkpoint that cannot be loaded safely or does not match the requested architecture."""


class Cancelled(ClarcError):
    """Long work stopped because its caller asked it to (through its cancellation flag)."""
