"""Messages to the user, filtered by severity as onnxruntime's logger is.

Warnings go through Python's `warnings` (so tests and applications can
catch or silence them the usual way), but only when the severity in force
lets them through: the session's `log_severity_level`, or the process
default that `set_default_logger_severity` sets (2, warnings, as
onnxruntime's).  Severity 3 silences warnings, as it does in onnxruntime.
"""

from __future__ import annotations

import warnings

VERBOSE, INFO, WARNING, ERROR, FATAL = range(5)

_DEFAULTS = {"severity": WARNING, "verbosity": 0}


def set_default_logger_severity(severity: int) -> None:
    """The process-wide minimum severity shown (0 verbose .. 4 fatal), as onnxruntime's."""
    if not 0 <= int(severity) <= 4:
        raise ValueError(f"logger severity must be 0 (verbose) to 4 (fatal), got {severity}")
    _DEFAULTS["severity"] = int(severity)


def set_default_logger_verbosity(verbosity: int) -> None:
    """Verbosity of VERBOSE messages (kept for onnxruntime code; webinfer emits none)."""
    _DEFAULTS["verbosity"] = int(verbosity)


def default_severity() -> int:
    return _DEFAULTS["severity"]


def warn(message: str, session_severity: int = -1, stacklevel: int = 2) -> None:
    """Show `message` as a RuntimeWarning unless the severity in force is above WARNING."""
    level = session_severity if session_severity >= 0 else _DEFAULTS["severity"]
    if level <= WARNING:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
