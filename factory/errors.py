"""Exceptions that say what was wrong and what to do about it.

Every error the factory raises on purpose derives from ``FactoryError``; the CLI
turns ``exit_code`` into the process exit status (2 for bad input, 1 otherwise).
"""

from pydantic import ValidationError

# Problems whose input is the whole (missing or mistyped) object: not worth echoing.
_NO_INPUT = ("missing", "model_attributes_type", "dict_type")
# An error quotes at most this much of what it was given: inputs can be megabytes long.
EXCERPT_CHARS = 80
# And one problem's line is at most this long, whatever it quotes.
PROBLEM_LINE_CHARS = 300


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters with an ellipsis when it is longer.

    Only the first few items of a large list or dict are turned into text, so quoting a
    huge input costs no more than quoting a small one.
    """
    if isinstance(value, list | tuple) and len(value) > 8:
        text = repr(list(value[:8]))[:-1] + ", …]"
    elif isinstance(value, dict) and len(value) > 8:
        text = repr(dict(list(value.items())[:8]))[:-1] + ", …}"
    else:
        text = repr(value[:limit] if isinstance(value, str | bytes) else value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(text: str, limit: int = PROBLEM_LINE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FactoryError(Exception):
    """A failure the user can act on; the message says what happened and what to do."""

    exit_code = 1


class BadInput(FactoryError):
    """The request itself is wrong: an invalid order, an unknown model, a bad store URL."""

    exit_code = 2


class ModelNotFound(BadInput):
    """A model is named in the registry but its weights are not where the registry says."""


class StoreError(FactoryError):
    """The object store refused or failed an operation."""


class StoreUnavailable(StoreError):
    """The object store cannot be reached or written at all."""


class StoreTimedOut(StoreUnavailable):
    """The store accepted the connection but did not answer within its timeouts.

    The store client has already retried; trying the whole task again would only multiply
    the wait, so tasks do not retry this.
    """


class ObjectNotFound(StoreError):
    """A key that should exist in the store does not."""


class WriteConflict(StoreError):
    """A write-once key already holds different bytes."""


class IntegrityError(FactoryError):
    """Stored bytes do not match the digest they are addressed by."""


class QualityRejected(FactoryError):
    """The quality gate rejected every take of a segment; the message names the failures."""

    exit_code = 3


def validation_problems(
    error: ValidationError, *, root: str, limit: int | None = None, show_input: bool = False
) -> list[str]:
    """One line per problem pydantic found: the field's dotted path, then what is wrong.

    ``root`` names a problem with no path (the whole object); ``show_input`` appends the
    value given, where there is one worth showing, cut to a short excerpt. Each line is at
    most ``PROBLEM_LINE_CHARS`` long.
    """
    lines = []
    for problem in error.errors(include_url=False, include_context=False)[:limit]:
        location = ".".join(str(part) for part in problem["loc"]) or root
        message = problem["msg"].removeprefix("Value error, ")
        if show_input and problem["loc"] and problem["type"] not in _NO_INPUT:
            message += f" (got {excerpt(problem.get('input'))})"
        lines.append(shorten(f"{shorten(location, 100)}: {message}"))
    return lines
