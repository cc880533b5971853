"""Loopback servers that speak each provider's real wire format, for tests."""
