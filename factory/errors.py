"""Exceptions that say what was wrong and what to do about it.

Every error the factory raises on purpose derives from ``FactoryError``; the CLI
turns ``exit_code`` into the process exit status (2 for bad input, 1 otherwise).
"""


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


class ObjectNotFound(StoreError):
    """A key that should exist in the store does not."""


class WriteConflict(StoreError):
    """A write-once key already holds different bytes."""


class IntegrityError(FactoryError):
    """Stored bytes do not match the digest they are addressed by."""
