"""The errors a user can act on: bad input, a missing file, a stale artifact, a full disk.

Every error detret raises for something the user controls (a config value, a file's
content, a command-line option, the state of a run directory) is a :class:`DetretError`
whose message names the file or the option and the problem. The command line prints
these in one line (exit code 2); anything else is a bug and shows its traceback.

Each class also derives from the built-in exception a Python caller would expect
(``ValueError``, ``FileNotFoundError``, ``KeyError``), so library users can catch either.
"""
from __future__ import annotations


class DetretError(Exception):
    """Base of every error a user can act on; the message says where and why."""


class InputError(DetretError, ValueError):
    """A value the user gave (a file's content, a config key, an option) cannot be used."""


class MissingFileError(DetretError, FileNotFoundError):
    """A file or folder the user named (or that a stage needs) does not exist."""


class UnknownNameError(DetretError, KeyError):
    """A name (category, label, dataset) that is not one of the known ones; the message lists them."""

    def __str__(self) -> str:  # KeyError's str() quotes its message
        return str(self.args[0]) if self.args else ""


class VectorStoreError(DetretError, ConnectionError):
    """The catalogue's external vector store (Milvus) refused or did not answer a request; the message names it.
    The service answers 503 (retry), the command line prints it; nothing already committed is lost."""
