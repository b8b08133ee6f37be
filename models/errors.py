"""Domain errors: everything a user can cause raises a VitshipError with a message that says what to do."""

from __future__ import annotations


class VitshipError(Exception):
    """Base class for errors a user can cause and fix; the CLI prints them as one line."""


class WeightsError(VitshipError):
    """Weights could not be loaded: corrupt file, wrong keys, unsafe pickle, unsupported config."""


class ImageError(VitshipError):
    """An input image could not be read or is unsafe to decode."""


class MissingDependencyError(VitshipError):
    """An optional backend package is not installed."""

    def __init__(self, package: str, purpose: str, pip_name: str | None = None):
        self.package = package
        super().__init__(
            f"{package} is needed for {purpose} but is not installed; run: pip install {pip_name or package}"
        )


class UnknownNameError(VitshipError):
    """A registry lookup with a name that is not registered; lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        import difflib

        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}.{hint}")
