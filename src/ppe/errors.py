"""Every error ``ppe`` raises on purpose; each message names the file or field and the fix.

The hierarchy::

    Exception
    ├── PpeError                  input the user controls is wrong; the CLI prints one line and
    │   │                         exits with ``exit_code`` (1), no traceback
    │   ├── ConfigError           an unknown config key or a bad value
    │   ├── DataError             a dataset file is missing, malformed or inconsistent
    │   │   └── DatasetInvalidError   a dataset check found problems (all listed)
    │   ├── DocumentError         a step's JSON document is missing or not what its writer writes
    │   ├── GateError             the gate cannot compare the two evaluations
    │   ├── RegistryError         the model registry is unusable or the request cannot be met
    │   ├── AzureLoginError       no Azure credential could be obtained
    │   ├── RunLocalError         ``ppe aml run-local``: a job it cannot run, or a node failed
    │   ├── ConfigError
    │   │   └── OutboxUnavailableError  the edge module's queue folder or database cannot be
    │   │                         opened for writing (a deployment problem)
    │   ├── ManifestError         an IoT Edge deployment template, variable or manifest is wrong
    │   ├── ModelLoadError        the edge runtime cannot load the model, labels or spec
    │   ├── FrameSourceError      the edge frame source cannot be opened
    │   ├── MalformedAlertError   a queued message is not an alert the module sends (alerts
    │   │                         consumer: dead-lettered, never retried into success)
    │   └── NotificationError     the alert webhook did not accept the notification (retried)
    ├── OutboxWriteError          the edge module's storage refused a write (disk full); the
    │                             module keeps the alert in memory and retries
    ├── ClientError               the edge module's HTTP server refuses a request (a 4xx status
    │                             with a JSON body); the server answers it, nobody exits
    └── ValueError
        └── GraphError            the step graph is inconsistent (a programming error)

Standard library only: every layer imports it, the edge image included.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus


class PpeError(Exception):
    """An error caused by input the user controls (files, config, flags).

    The CLI prints the message on one line (no traceback) and exits with ``exit_code``.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(PpeError):
    """The configuration has an unknown key or a bad value."""


class DataError(PpeError):
    """A dataset file is missing, malformed or inconsistent."""


class DatasetInvalidError(DataError):
    """A dataset has problems; ``problems`` lists all of them."""

    def __init__(self, source: str, problems: Sequence[object]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n  ".join(str(problem) for problem in self.problems)
        super().__init__(f"{source}: {count} problem{'s' * (count != 1)}:\n  {lines}")


class DocumentError(PpeError):
    """A step's document is missing, not JSON, or does not have the fields its writer writes."""


class GateError(PpeError):
    """The gate cannot compare the two models (bad or incomparable metrics files)."""


class RegistryError(PpeError):
    """The registry is unusable or the request cannot be met (unknown model or version, ...)."""


class AzureLoginError(PpeError):
    """No Azure credential could be obtained."""


class RunLocalError(PpeError):
    """The job YAML cannot run here, or one of its nodes failed."""


class ManifestError(PpeError):
    """The template, a variable, ``module.json`` or the rendered manifest is wrong."""


class ModelLoadError(PpeError):
    """The model, its labels or its spec cannot be loaded or do not agree."""


class FrameSourceError(PpeError):
    """The frame source does not exist or cannot be opened."""


class OutboxUnavailableError(ConfigError):
    """The queue folder or database cannot be opened for writing (a deployment problem)."""


class OutboxWriteError(Exception):
    """The storage refused a write (disk full, I/O error); the outbox is unchanged."""


class MalformedAlertError(PpeError):
    """A queued message is not an alert the module sends; retrying cannot fix it."""


class NotificationError(PpeError):
    """The webhook did not accept the notification; the message is retried."""


class ClientError(Exception):
    """A request the edge server refuses with a 4xx status and a JSON error body.

    Args:
        status: the HTTP status (4xx).
        code: a short machine-readable reason.
        message: what is wrong and what to send instead.
    """

    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class GraphError(ValueError):
    """The step graph is inconsistent (a programming error, caught by the tests)."""
