"""The package version: a leaf module, so that any layer can name it without importing the package
(whose `__init__` imports the reader)."""

__version__ = "0.1.0"
