"""The immutable plan: routes, targets and ad-hoc routes."""
