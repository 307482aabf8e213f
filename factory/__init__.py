"""Asset factory core: orders, assets, settings, model registry and the CLI."""

__version__ = "0.1.0"
