"""Subcommands of the `samband` CLI: one module per command group, each with `register(subparsers)`."""
