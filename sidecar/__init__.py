"""The achievements sidecar: achievement definitions and per-user progress in one SQLite file."""

__version__ = "0.1.0"
