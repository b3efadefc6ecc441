"""The package version, in a module of its own so that layers below the facade can read it without
importing `vitcost/__init__.py`."""

__version__ = "0.1.0"
