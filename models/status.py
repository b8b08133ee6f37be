"""The one status vocabulary of vitship: export results, int8 gate verdicts, parity, bench, eval, compare and the report.

Every result carries a ``Status`` and, beside it in its own field, the reason (docs/DESIGN.md "The row
contract"). It lives in ``models``, the lowest layer, so that exporters (export results, the int8 gate's
verdict) and the bench layer (parity, bench, eval, the report) share it.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """What happened to a row. The reason, where there is one, travels beside it."""

    PASS = "pass"  # ran and met its gate (parity)
    OK = "ok"  # ran; nothing to gate (latency, eval)
    FAIL = "fail"  # ran and missed its gate
    ERROR = "error"  # crashed, timed out or was refused (tampered artifact, other weights)
    UNAVAILABLE = "unavailable"  # cannot run on this machine; the reason says why and where it can
    NOT_RUN = "not run"  # no result: the producer was not run, or not for this row
    NOT_CHECKED = "not checked"  # exists but its gate was not applied (an int8 exported with the gate turned off)
    SKIPPED = "skipped"  # not redone: already up to date (an export)
    REFERENCE = "reference"  # the PyTorch fp32 reference itself: what parity compares against (the report's word)

    @property
    def ran(self) -> bool:
        return self in (Status.PASS, Status.OK, Status.FAIL)

    @property
    def failed(self) -> bool:
        """A status that must turn the command's exit code non-zero."""
        return self in (Status.FAIL, Status.ERROR)

    @classmethod
    def parse(cls, text: str) -> tuple["Status", str]:
        """(status, reason) from ``"unavailable: needs macOS"`` or ``"pass"``; an unknown word is a ValueError."""
        word, _, reason = str(text).partition(":")
        return cls(word.strip()), reason.strip()
