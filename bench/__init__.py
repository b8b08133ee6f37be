"""bench: parity, latency, accuracy, reports and the vitship CLI."""
