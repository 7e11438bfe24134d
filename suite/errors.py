"""The one base class of every error the suite raises for input it cannot use (a definition, a
data source, a method's options, an operator's model, a results folder, the claims, a
checkpoint): each names the file, the key and what is allowed, and the command line prints it in
one line (exit 2) instead of a traceback. Each subclass also keeps the built-in class it has
always been (ValueError, RuntimeError), so that `except ValueError` in a user's code still
catches it."""

from __future__ import annotations


class SuiteError(Exception):
    """Input the suite cannot use; the message says where and what is allowed."""
