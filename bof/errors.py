"""Errors a user can act on. The CLI prints them as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class BofError(Exception):
    """Base class of errors caused by the user's input, files or environment."""


# In a run folder: the job's attempt that failed with a BofError (input, config, files), which a
# retry would repeat; the pipeline's retries (a SLURM profile's, with more memory and time) stop on it.
FAILED_ON_INPUT = ".bof/failed_on_input"


class DatasetError(BofError):
    """A dataset file is missing or wrong; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(BofError, ValueError):
    """A setting is missing, unknown, of the wrong type or impossible."""
