"""Route files: loading (YAML with marks), checking (schema + meaning) and the config models."""
