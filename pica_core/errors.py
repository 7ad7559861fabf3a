"""One small hierarchy for everything that can go wrong talking to Pica.

Every error carries what Pica said (its status, error key and message) and a hint
saying what the person in front of the dashboard should do next. Pages render
``str(error)`` and ``error.hint``; nothing here ever includes the secret key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


LONGEST_WAIT = 86_400.0  # seconds: a rate limit's wait longer than a day is no wait anyone means (unknown)


class PicaError(Exception):
    """Base class: a call to Pica did not give a usable answer."""

    default_hint = "Try again; if it keeps failing, check Pica's status page."

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        key: str | None = None,
        hint: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.key = key
        self.hint = hint or self.default_hint
        self.method = method
        self.path = path
        # The request went out and no answer came back (a timeout, a cut connection): a write may have been done.
        self.maybe_delivered = False

    def after_tries(self, tries: int, seconds: float) -> PicaError:
        """The same error, saying the dashboard already retried: "retry in 5 s" after 15 s of retrying read as
        though nothing had been waited."""
        over = f" over {seconds:.0f} s" if seconds >= 1 else ""
        self.hint = f"Tried {tries} times{over}. {self.hint}"
        return self

    def lasting_hint(self) -> str:
        """The hint as a record read later keeps it (a rate limit's says its wait as a clock time)."""
        return self.hint

    def hint_now(self) -> str:
        """The hint as it reads now: the error may be one remembered a while (a failure held, a cached answer)."""
        return self.hint

    def as_recorded(self) -> str:
        """What Pica answered and what to do, as a record read later keeps it (a sync run's, a triage's row)."""
        hint = self.lasting_hint()
        return f"{self} — {hint}" if hint else str(self)

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method and self.path else ""
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.message}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, key={self.key!r}, message={self.message!r})"


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line saying what to fix."""


class InvalidInputError(PicaError):
    """Input was refused before any request was sent (or Pica answered 400/422)."""

    default_hint = "Correct it and try again: what you entered is kept."


class AuthError(PicaError):
    """401/403: the secret key was refused."""

    default_hint = (
        "Check PICA_SECRET_KEY: it must be a current sk_test_… or sk_live_… key of this Pica account."
    )


class NotFoundError(PicaError):
    """404: the connection, action or route does not exist (for this key's environment)."""

    default_hint = "Check the id or key, and that it belongs to this key's environment (test or live)."


class RateLimitedError(PicaError):
    """429: Pica's rate limit for this account was reached."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        self.retry_after = retry_after
        self.received_at = datetime.now(UTC)
        if retry_after is not None and "hint" not in kwargs:
            kwargs["hint"] = f"Pica's rate limit was reached: retry in {retry_after:.0f} s."
        super().__init__(message, **kwargs)

    default_hint = "Pica's rate limit was reached: wait a minute and retry."

    @property
    def retry_at(self) -> datetime | None:
        """When the wait ends, if Pica said and it is within a day."""
        if self.retry_after is None or not 0 <= self.retry_after < LONGEST_WAIT:
            return None
        return self.received_at + timedelta(seconds=self.retry_after)

    def hint_now(self) -> str:
        """ "retry in 40 s" while it is new; the wait's clock time once it is a few seconds old."""
        return self.hint if datetime.now(UTC) - self.received_at < timedelta(seconds=2) else self.lasting_hint()

    def lasting_hint(self) -> str:
        """The hint for a record read later: the wait as a clock time (UTC), since "retry in 54 s" read an hour on
        misleads; the hint as it is when the wait is unknown or too far off for a clock."""
        if self.retry_at is None:
            return self.hint
        return f"Pica's rate limit was reached: retry after {self.retry_at:%H:%M:%S} UTC."


class UpstreamUnavailableError(PicaError):
    """Pica could not be reached, or answered 5xx."""

    default_hint = "Pica is unreachable or failing right now: retry in a moment, or check PICA_API_URL."


class PicaTimeoutError(UpstreamUnavailableError):
    """Pica did not answer within the configured timeout."""

    default_hint = "Pica did not answer in time: retry, or raise PICA_TIMEOUT_SECONDS."


class InvalidResponseError(PicaError):
    """Pica answered something that is not what the contract says."""

    default_hint = ("Pica's answer was not understood: retry; if it keeps happening, Pica may have changed its API: "
                    "tell whoever maintains the dashboard, with the time it happened.")
