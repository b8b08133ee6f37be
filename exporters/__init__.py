"""exporters: one module per format, each with export(loaded, out_dir, options) -> Artifact."""
