"""The package version (its one place: the root package, tracing and the CLI read it)."""

__version__ = "0.1.0"
