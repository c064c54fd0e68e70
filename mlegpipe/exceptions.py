"""User-facing errors of mlegpipe.

Every error a user can cause (bad TOML, a missing file, an impossible beam
setting, an untrusted checkpoint) is raised as a subclass of
:class:`MlegpipeError`. The CLI turns these into a one-paragraph message and
exit code 2; anything else is a bug and shows a traceback.

Example:
    >>> from mlegpipe.exceptions import ConfigError
    >>> err = ConfigError("must be positive", path="truth.events", value=-5)
    >>> str(err)
    'truth.events = -5: must be positive'
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "FormulaError",
    "MlegpipeError",
    "OutputError",
    "PhysicsError",
    "PluginError",
    "TrainingError",
]

_UNSET = object()


class MlegpipeError(Exception):
    """Base class of every error caused by user input.

    Arguments:
        message: what is wrong, in words a physicist understands.
        path: where: a TOML path (``truth.events``), a file name, or a branch.
        value: the offending value, shown with ``repr``.
        hint: an optional suggestion ("did you mean ...").
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        value: Any = _UNSET,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.value = value
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        head = ""
        if self.path is not None:
            head = self.path
            if self.value is not _UNSET:
                head += f" = {self.value!r}"
            head += ": "
        elif self.value is not _UNSET:
            head = f"{self.value!r}: "
        text = head + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(MlegpipeError):
    """A pipeline file or a command-line override is invalid."""


class FormulaError(ConfigError):
    """A formula or selection string is malformed or uses a forbidden token."""


class PluginError(MlegpipeError):
    """A plugin is unknown, failed to load, or broke its contract."""


class DataError(MlegpipeError):
    """An input file or event array is missing, malformed or non-finite."""


class PhysicsError(MlegpipeError):
    """A setting outside physics (negative beam energy, cut above the kinematic limit)."""


class CheckpointError(MlegpipeError):
    """A checkpoint is unreadable, untrusted, or belongs to another model."""


class TrainingError(MlegpipeError):
    """Training diverged (NaN or inf); the last good checkpoint is kept."""


class OutputError(MlegpipeError):
    """An output location exists already or cannot be written."""
