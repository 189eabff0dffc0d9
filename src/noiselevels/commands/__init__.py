"""Subcommands of the ``noiselevels`` CLI; each module has ``register(subparsers)``."""
