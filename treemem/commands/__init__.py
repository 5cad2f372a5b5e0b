"""Subcommands of the `treemem` command line, one module each."""
