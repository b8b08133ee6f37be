"""runtimes: open_session(artifact, target) -> Session for every runtime vitship can measure."""
