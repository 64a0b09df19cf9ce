"""The package's one exception hierarchy.

Every error the product raises on purpose derives from :class:`LkdError`, so callers (nodes,
the CLI) can tell "bad input, report and carry on" from a programming error.
"""


class LkdError(Exception):
    """Base class of all errors raised deliberately by lkd_perception."""


class ConfigError(LkdError):
    """A configuration value is missing, of the wrong type, or out of its allowed range."""


class InputError(LkdError):
    """An input (message, file, array) is malformed or unsupported; the text says what and why."""


class ModelError(LkdError):
    """A model file is missing, unreadable, or does not have the expected inputs/outputs."""
