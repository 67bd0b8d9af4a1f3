"""Reading Salesforce with simple-salesforce: the connection from the settings, SOQL
queries followed page by page (``nextRecordsUrl``), and Salesforce's errors turned into
the sync's two kinds (errors.py).

Credentials (docs/salesforce.md): METERLINE_SALESFORCE_USERNAME, _PASSWORD and
_SECURITY_TOKEN log in through the SOAP login at METERLINE_SALESFORCE_LOGIN_URL
(simple-salesforce's SalesforceLogin; the login URL is its ``scratch_url``, so a sandbox
or My Domain URL works as given); or METERLINE_SALESFORCE_INSTANCE_URL with
_SESSION_ID (a session id or an OAuth access token) reads without logging in. The
password, token and session id are never printed, logged or put in a message.

Numbers are read as exact decimals (the SDK's ``parse_float``): a percent or an amount
from Salesforce never passes through a float. Each request waits at most
METERLINE_SALESFORCE_TIMEOUT_S. TLS is verified by requests' own rules (a private CA:
its REQUESTS_CA_BUNDLE variable).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from meterline.settings import Settings, settings
from meterline.sources.salesforce.errors import (
    SalesforceNotConfigured,
    SalesforceRefused,
    SalesforceUnavailable,
)

if TYPE_CHECKING:
    import requests

#: Longest record Id taken (Salesforce's are 15 or 18 characters).
ID_MAX = 18
#: A page's nextRecordsUrl: the REST API's query locator path
#: (/services/data/v59.0/query/01gD0000002HU6KIAW-2000).
_NEXT_URL = re.compile(r"/services/data/v[0-9]+\.[0-9]+/query(All)?/[A-Za-z0-9_-]+\Z")
# Query errors a changed mapping or query fixes (Salesforce's errorCode values).
_QUERY_REFUSED = {
    "INVALID_FIELD",
    "INVALID_TYPE",
    "MALFORMED_QUERY",
    "INVALID_QUERY_FILTER_OPERATOR",
}
# Errors that pass: running the sync again can succeed.
_TRY_AGAIN = {
    "INVALID_QUERY_LOCATOR",
    "REQUEST_LIMIT_EXCEEDED",
    "SERVER_UNAVAILABLE",
    "UNABLE_TO_LOCK_ROW",
    "QUERY_TIMEOUT",
}


@dataclass(frozen=True)
class SalesforceConfig:
    """How to reach Salesforce (the module docstring): a login, or a session."""

    api_version: str
    timeout_s: float
    login_url: str
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    instance_url: str | None = None
    session_id: SecretStr | None = None

    @property
    def logs_in(self) -> bool:
        return self.username is not None

    @property
    def where(self) -> str:
        """The host the sync talks to first, for messages."""
        url = self.login_url if self.logs_in else (self.instance_url or "")
        return urlsplit(url).netloc


def salesforce_config(config: Settings | None = None) -> SalesforceConfig:
    """The Salesforce settings. Raises SalesforceNotConfigured when neither a whole login
    (username, password, security token) nor a session (instance URL, session id) is
    set, naming what is missing."""
    cfg = config or settings()
    # A blank setting (an empty variable, a line `KEY=` in .env) is not a credential.
    login = (
        _given(cfg.salesforce_username),
        _given(cfg.salesforce_password),
        _given(cfg.salesforce_security_token),
    )
    session = (_given(cfg.salesforce_instance_url), _given(cfg.salesforce_session_id))
    base = SalesforceConfig(
        api_version=cfg.salesforce_api_version,
        timeout_s=cfg.salesforce_timeout_s,
        login_url=cfg.salesforce_login_url,
    )
    if all(v is not None for v in login):
        return replace(
            base,
            username=cfg.salesforce_username,
            password=cfg.salesforce_password,
            security_token=cfg.salesforce_security_token,
        )
    if all(v is not None for v in session):
        return replace(
            base, instance_url=cfg.salesforce_instance_url, session_id=cfg.salesforce_session_id
        )
    # Name what is missing of the way that was begun (the login when both were).
    names, given = (
        (("USERNAME", "PASSWORD", "SECURITY_TOKEN"), login)
        if any(v is not None for v in login) or not any(v is not None for v in session)
        else (("INSTANCE_URL", "SESSION_ID"), session)
    )
    missing = [f"METERLINE_SALESFORCE_{n}" for n, v in zip(names, given, strict=True) if v is None]
    said = ", ".join(missing) if any(v is not None for v in given) else "all of them (or blank)"
    raise SalesforceNotConfigured(
        "Salesforce is not configured: set METERLINE_SALESFORCE_USERNAME, _PASSWORD and"
        " _SECURITY_TOKEN (a login), or METERLINE_SALESFORCE_INSTANCE_URL and _SESSION_ID"
        f" (docs/salesforce.md); missing: {said}"
    )


def _given(value: str | SecretStr | None) -> str | SecretStr | None:
    """``value``, or None when it is unset or blank."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return None if text is None or not text.strip() else value


def _timeout_session(timeout_s: float) -> requests.Session:
    """A requests session whose every request waits at most ``timeout_s`` (the SDK's
    login passes no timeout of its own)."""
    import requests

    class _Session(requests.Session):
        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout_s)
            return super().request(method, url, *args, **kwargs)

    return _Session()


def _errors_of(content: Any) -> tuple[str, str]:
    """(errorCode, message) of Salesforce's JSON error body ``[{"message", "errorCode"}]``."""
    if isinstance(content, (bytes, str)):
        try:
            content = json.loads(content)
        except ValueError:
            return "", str(content)[:200]
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return str(first.get("errorCode") or ""), " ".join(str(first.get("message") or "").split())
    return "", str(content)[:200]


class NotQueryResult(ValueError):
    """An answer to a query that is not the REST API's query result (what is wrong)."""


def page_of(result: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The records of one page of a query result and the URL of the next page (None when
    ``done``). Raises NotQueryResult for anything but the REST API's shape: an object
    with ``done`` true or false, ``records`` a list of records each with its ``Id``, and
    ``nextRecordsUrl`` while not done."""
    if not isinstance(result, dict):
        raise NotQueryResult(f"the answer is a JSON {type(result).__name__}, not an object")
    records, done = result.get("records"), result.get("done")
    if not isinstance(done, bool):
        raise NotQueryResult(f"done is {str(done)[:40]!r}, not true or false")
    if not isinstance(records, list):
        raise NotQueryResult(f"records is {type(records).__name__}, not a list")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise NotQueryResult(f"records[{i}] is {type(record).__name__}, not a record")
        record_id = record.get("Id")
        if not isinstance(record_id, str) or not record_id or len(record_id) > ID_MAX:
            raise NotQueryResult(f"records[{i}] has no Id of a record ({str(record_id)[:40]!r})")
    if done:
        return records, None
    next_url = result.get("nextRecordsUrl")
    if not isinstance(next_url, str) or not next_url:
        raise NotQueryResult("a page that is not the last has no nextRecordsUrl")
    if not _NEXT_URL.match(next_url):
        # The SDK appends it to https://INSTANCE: anything but a path of the REST API
        # could send the session elsewhere ('@host/...').
        raise NotQueryResult(f"nextRecordsUrl {next_url[:100]!r} is not a query locator path")
    return records, next_url


class SalesforceReader:
    """A connection to one org, for SOQL queries. Connecting logs in when the config
    holds a login. Raises SalesforceRefused (a refused login) or SalesforceUnavailable."""

    def __init__(self, config: SalesforceConfig) -> None:
        from simple_salesforce import Salesforce, SalesforceLogin
        from simple_salesforce.exceptions import SalesforceAuthenticationFailed

        self.config = config
        session = _timeout_session(config.timeout_s)
        with self._translated("logging in"):
            if config.logs_in:
                assert config.password is not None and config.security_token is not None
                try:
                    session_id, instance = SalesforceLogin(
                        username=config.username,
                        password=config.password.get_secret_value(),
                        security_token=config.security_token.get_secret_value(),
                        sf_version=config.api_version,
                        session=session,
                        scratch_url=config.login_url,
                    )
                except SalesforceAuthenticationFailed as exc:
                    raise SalesforceRefused(
                        f"Salesforce at {config.where} refused the login of"
                        f" {config.username} ({exc.code}: {' '.join(exc.auth_message.split())}):"
                        " check METERLINE_SALESFORCE_USERNAME, _PASSWORD, _SECURITY_TOKEN"
                        " and _LOGIN_URL"
                    ) from None
                self.sf = Salesforce(
                    session_id=session_id,
                    instance=instance,
                    version=config.api_version,
                    session=session,
                    parse_float=Decimal,
                )
            else:
                assert config.session_id is not None
                self.sf = Salesforce(
                    session_id=config.session_id.get_secret_value(),
                    instance_url=config.instance_url,
                    version=config.api_version,
                    session=session,
                    parse_float=Decimal,
                )
        self.requests = 0

    def query(self, soql: str, what: str) -> list[dict[str, Any]]:
        """Every record of a SOQL query, page after page (``nextRecordsUrl``, the REST
        API's query locator) until ``done``. ``what`` names the query in messages (an
        object's API name)."""
        return list(self._pages(soql, what))

    def _pages(self, soql: str, what: str) -> Iterator[dict[str, Any]]:
        with self._translated(f"reading {what}"):
            self.requests += 1
            result = self.sf.query(soql)
            followed: set[str] = set()
            while True:
                records, next_url = page_of(result)
                yield from records
                if next_url is None:
                    return
                if next_url in followed:
                    # A cursor that leads back to a page already read would never end.
                    raise NotQueryResult(f"nextRecordsUrl {next_url[:100]} was given twice")
                followed.add(next_url)
                self.requests += 1
                result = self.sf.query_more(next_url, identifier_is_url=True)

    def _translated(self, doing: str) -> _Translate:
        return _Translate(self.config, doing)


class _Translate:
    """Around a call: the SDK's and requests' exceptions as SalesforceRefused (change
    something first) or SalesforceUnavailable (run again), in one line without secrets."""

    def __init__(self, config: SalesforceConfig, doing: str) -> None:
        self.config = config
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, (SalesforceRefused, SalesforceUnavailable)):
            return
        import requests
        from simple_salesforce.exceptions import SalesforceError

        where = f"Salesforce at {self.config.where}"
        if isinstance(exc, requests.exceptions.RequestException):
            kind = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "unreachable"
            detail = type(exc).__name__
            raise SalesforceUnavailable(
                f"{where} {kind} while {self.doing} ({detail}); nothing was stored: run the"
                " sync again"
            ) from None
        if isinstance(exc, SalesforceError):
            code, message = _errors_of(exc.content)
            said = f"{exc.status} {code}: {message}" if code else f"{exc.status}: {message}"
            if exc.status == 401:
                if self.config.logs_in:
                    raise SalesforceUnavailable(
                        f"{where} ended the session while {self.doing} ({said}); nothing was"
                        " stored: run the sync again (it logs in afresh)"
                    ) from None
                raise SalesforceRefused(
                    f"{where} refused the session while {self.doing} ({said}): set a current"
                    " METERLINE_SALESFORCE_SESSION_ID, or log in with"
                    " METERLINE_SALESFORCE_USERNAME, _PASSWORD and _SECURITY_TOKEN"
                ) from None
            if code in _TRY_AGAIN or exc.status >= 500:
                raise SalesforceUnavailable(
                    f"{where} could not answer while {self.doing} ({said}); nothing was"
                    " stored: run the sync again"
                ) from None
            if code in _QUERY_REFUSED:
                raise SalesforceRefused(
                    f"{where} refused the query while {self.doing} ({said}): fix the field"
                    " mapping (its object names, field paths and where conditions)"
                ) from None
            raise SalesforceRefused(
                f"{where} refused the request while {self.doing} ({said}): check the user's"
                " access to the objects and fields the mapping reads"
            ) from None
        if isinstance(exc, (ValueError, KeyError, RecursionError)):
            # A body that is not the REST API's JSON (a proxy's page, a cut answer), or
            # JSON that is not a query result.
            detail = str(exc) if isinstance(exc, NotQueryResult) else type(exc).__name__
            raise SalesforceUnavailable(
                f"{where} answered something else than the REST API's JSON while"
                f" {self.doing} ({detail}); nothing was stored: run the sync again"
            ) from None
