"""Observability: logging and tracing."""
