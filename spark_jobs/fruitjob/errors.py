"""The job's own error: a problem with the run's input or output that the user must fix."""

from __future__ import annotations


class JobError(RuntimeError):
    """A problem with the run's input or output that the user must fix; the message says how."""
