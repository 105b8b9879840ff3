"""Versioned schema migrations, shipped as SQL files next to this module.

A file is named ``NNNN_name.DIALECT.sql`` (``0001_initial.sqlite.sql``). Each backend has its
own dialect's files with the same versions and names, so SQLite and PostgreSQL move through
the same schema history. A database records every migration it applied together with the
SHA-256 of its SQL; at start the store compares those with the files shipped here and
refuses to run if one was edited, is missing, or is newer than this build.

Packaging note: the ``*.sql`` files must be included as package data.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<dialect>[a-z]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``sql`` is applied in a single transaction."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """Hex SHA-256 of the SQL text (UTF-8): what the database records as applied."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def check_sequence(migrations: tuple[Migration, ...]) -> tuple[Migration, ...]:
    """Return ``migrations`` if their versions are exactly 1..n in order, else raise
    ValueError (a packaging bug, not a database problem)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError(f"migrations must be numbered 1..n without gaps, got {versions}")
    return migrations


def load(dialect: str) -> tuple[Migration, ...]:
    """The shipped migrations for ``dialect`` (``"sqlite"``, later ``"postgresql"``), in
    version order."""
    found: list[Migration] = []
    for entry in resources.files(__name__).iterdir():
        match = _NAME.match(entry.name)
        if match is None or match["dialect"] != dialect:
            continue
        found.append(
            Migration(
                version=int(match["version"]),
                name=match["name"],
                sql=entry.read_bytes().decode("utf-8"),
            )
        )
    found.sort(key=lambda m: m.version)
    if not found:
        raise ValueError(f"no {dialect} migrations are shipped in {__name__}")
    return check_sequence(tuple(found))
