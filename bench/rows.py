"""The row contract: one key and one status type, shared by parity, bench, eval and the report.

A row is one (artifact, target, variant, batch). Every producer's result class exposes ``key`` (a
RowKey) and ``status`` (a Status, with the reason in its own field), and the report reads results
through those classes, never by guessing dict keys.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from vitship.models.errors import VitshipError
from vitship.models.status import Status


class ResultsFileError(VitshipError):
    """A results file (parity.json, bench.json, eval.json) that is unreadable or has another schema_version."""


@dataclass(frozen=True, order=True)
class RowKey:
    """One row: an artifact on a target, with a variant (runtime knobs) and a batch size (None: every batch)."""

    artifact: str
    target: str
    variant: str = ""
    batch: int | None = None

    def without_batch(self) -> "RowKey":
        return dataclasses.replace(self, batch=None)

    def label(self) -> str:
        variant = f" [{self.variant}]" if self.variant else ""
        batch = f" batch {self.batch}" if self.batch is not None else ""
        return f"{self.artifact} on {self.target}{variant}{batch}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RowKey":
        return cls(data["artifact"], data["target"], data.get("variant") or "", data.get("batch"))


class KeyedRow:
    """For a row dataclass with a ``key: RowKey`` field: its artifact, target and variant, read through the key."""

    @property
    def artifact(self) -> str:
        return self.key.artifact

    @property
    def target(self) -> str:
        return self.key.target

    @property
    def variant(self) -> str:
        return self.key.variant


def known_fields(cls, data: dict) -> dict:
    """The entries of ``data`` that are fields of the dataclass ``cls`` (a newer file may carry more)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


class StatusRow:
    """For a row dataclass with a ``status: Status`` field: the status parsed on the way in, its word on the way out."""

    def __post_init__(self):
        self.status = Status(self.status)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "status": str(self.status)}

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**known_fields(cls, data))


class RowsDocument:
    """For a results dataclass (parity.json, bench.json, eval.json) whose ``rows`` are ``row_class`` objects."""

    row_class: ClassVar[type]

    @classmethod
    def from_dict(cls, data: dict):
        document = cls(**known_fields(cls, {k: v for k, v in data.items() if k != "rows"}))
        document.rows = [cls.row_class.from_dict(row) for row in data.get("rows", [])]
        return document


def read_results(path: Path, name: str, schema_version: int, rerun: str) -> dict:
    """The JSON document at ``path``, refused unless it is a ``name`` file of ``schema_version``.

    Args:
        name: what the file is, for the message ("parity results").
        rerun: the command that writes a current one ("vitship parity").
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ResultsFileError(f"{path}: unreadable {name} ({err}); rerun {rerun}") from err
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != schema_version:
        raise ResultsFileError(f"{path}: {name} with schema_version {version!r}, this vitship reads "
                               f"{schema_version}; rerun {rerun} to write a current one")
    return data


def unavailable_by_target(rows) -> dict[tuple[str, str], list[str]]:
    """(target, reason) -> the artifacts of the unavailable rows, for one line per target in a table or log."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row.status is Status.UNAVAILABLE:
            grouped.setdefault((row.target, row.reason), []).append(row.artifact)
    return grouped
