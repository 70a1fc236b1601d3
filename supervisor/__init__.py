"""corral's supervisor: configuration, process lifecycle, probes and the CLI."""
