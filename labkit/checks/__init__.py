"""Real-session probes shared by notebooks, grading and tests (see :mod:`.result`)."""

from .result import CheckFailed, Report, Result

__all__ = ["CheckFailed", "Report", "Result"]
