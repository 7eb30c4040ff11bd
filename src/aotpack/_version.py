"""The version of aotpack (its own module: modules that record it import nothing else)."""

__version__ = "0.1.0"
