"""Errors a user can act on. The CLI prints them as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class BofError(Exception):
    """Base class of errors caused by the user's input, files or environment."""


class DatasetError(BofError):
    """A dataset file is missing or wrong; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(BofError, ValueError):
    """A setting is missing, unknown, of the wrong type or impossible."""
