"""The command line: router validate, dry-run, chat, routes, budgets, schema, providers, demo."""
