"""Policies that hold state across calls: circuit breakers (budgets and rate limits later)."""
