"""vitship: ship the ViT deepfake detector to edge devices (export, parity, bench, report).

The top-level folders are this package's subpackages: ``vitship.models``, ``vitship.exporters``,
``vitship.runtimes`` and ``vitship.bench``. The functions below are the Python API; each returns the
same result objects the CLI prints.
"""
