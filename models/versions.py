"""Installed distribution versions: what manifests record, what rebuilds compare and what reports carry."""

from __future__ import annotations

import importlib.metadata


def installed_version(package: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_versions(*packages: str) -> dict[str, str | None]:
    """{package: installed version or None}, in the order given."""
    return {package: installed_version(package) for package in packages}


def vitship_version() -> str:
    return installed_version("vitship") or "unknown"
