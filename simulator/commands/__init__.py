"""`moesim` subcommands, one module each; see simulator/cli.py."""
