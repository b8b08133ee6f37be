"""vitship.bench: parity, latency, accuracy and the report, and the vitship CLI (bench/cli.py, bench/commands/)."""
