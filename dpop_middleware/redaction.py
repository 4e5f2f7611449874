"""Logs that carry no usable credential: a logging filter for tokens, proofs and credential headers.

::

    from dpop_middleware.redaction import install_redaction
    install_redaction()          # every log record of every logger, from now on

or attach the filter to the handlers you choose::

    handler.addFilter(RedactingFilter())

Our own log lines never carry a token or a proof; this is for the others: httpx, httpcore,
requests/urllib3 and framework debug output, a ``logger.debug("%s", request.headers)`` in your
code, an exception whose text quotes a header. The rule of what is redacted is
:func:`dpop_middleware.core.redact.redact_text`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .core.redact import REDACTED, redact_headers, redact_text

__all__ = ["REDACTED", "RedactingFilter", "install_redaction", "redact_headers", "redact_text", "uninstall_redaction"]

# The LogRecord attributes that are not the message, set by logging itself: left alone.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact_record(record: logging.LogRecord) -> None:
    """Rewrite ``record`` in place: message, exception text, stack, and string ``extra`` fields."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging itself reports it later  # noqa: BLE001
        message = str(record.msg)
    record.msg, record.args = redact_text(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    for name, value in list(vars(record).items()):
        if name not in _STANDARD and isinstance(value, str):
            setattr(record, name, redact_text(value))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts tokens, proofs and credential headers; it never drops a record.

    Attach it to handlers (a logger's own filters do not see records propagated from its children,
    e.g. ``httpcore.http11`` under ``httpcore``), or use :func:`install_redaction` for every record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_lock = threading.Lock()
_replaced: dict[str, Any] = {}  # "factory": the record factory we wrapped, while installed


def install_redaction() -> None:
    """Redact every log record from now on, whichever logger or handler (present or future) sees it.

    Wraps the process's log record factory (:func:`logging.setLogRecordFactory`); idempotent.
    ``extra`` fields are set after the factory runs: a :class:`RedactingFilter` on the handler
    covers those too.
    :func:`uninstall_redaction` puts the previous factory back.
    """
    with _lock:
        if _replaced:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redact_record(record)
            return record

        _replaced["factory"] = previous
        logging.setLogRecordFactory(factory)


def uninstall_redaction() -> None:
    """Undo :func:`install_redaction` (restores the factory it replaced)."""
    with _lock:
        if _replaced:
            logging.setLogRecordFactory(_replaced.pop("factory"))
