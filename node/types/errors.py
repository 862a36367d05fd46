"""Errors that the command line turns into one line for the user."""


class CommandError(Exception):
    """A command that cannot run as asked; the message is one line for the user."""
