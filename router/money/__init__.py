"""Prices and token counts."""
