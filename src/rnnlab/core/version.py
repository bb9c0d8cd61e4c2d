"""The package version, in one place (core may not import the package root)."""

__version__ = "0.1.0"
