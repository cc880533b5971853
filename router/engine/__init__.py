"""The engine: the Router facade, the one driver of the decision walk, the attempt step,
the stream relay, the sync facade and dry-run."""
