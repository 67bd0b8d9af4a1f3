"""The HTTP layer of the Salesforce stand-in: the SOAP login, the REST API's query and
query-more resources, sessions, Salesforce's error shapes, over TLS on 127.0.0.1.

Routes (any other answers 404 ``NOT_FOUND``):

- ``POST /services/Soap/u/{version}``: the partner API's login (what simple-salesforce's
  SalesforceLogin sends): a user added with ``store.add_user`` gets a session id and
  the stand-in as its server URL; anyone else a SOAP fault ``INVALID_LOGIN`` (HTTP 500).
- ``GET /services/data/v{version}/query?q=SOQL``: the first page of a query (soql.py has
  the SOQL it answers); ``Sforce-Query-Options: batchSize=N`` is honoured (200..2000).
- ``GET /services/data/v{version}/query/{locator}-{offset}``: the next page
  (``nextRecordsUrl``); an unknown or expired cursor is 400 ``INVALID_QUERY_LOCATOR``.

A REST request without a live session (``Authorization: Bearer ...``) is 401
``INVALID_SESSION_ID``. A request runs with the store's lock held.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from meterline.demo.stripe_standin.server import LoopbackHandler, LoopbackServer, ServerThread

from .store import ApiError, Store
from .tls import write_certificate

_QUERY = re.compile(r"/services/data/v(\d{2,3}\.0)/query/?\Z")
_MORE = re.compile(r"/services/data/v(\d{2,3}\.0)/query/([0-9A-Za-z]+-\d+)\Z")
_LOGIN = re.compile(r"/services/Soap/u/(\d{2,3}\.0)\Z")
_BATCH = re.compile(r"batchSize=(\d+)")
_PARTNER = "{urn:partner.soap.sforce.com}"
_INVALID_LOGIN = "Invalid username, password, security token; or user locked out."


def encode(value: Any) -> str:
    """JSON text of an answer; a Decimal is written as the number it is (Salesforce
    writes a number field's value with its decimals, e.g. 15.0)."""
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text if "." in text else text + ".0"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value)


def _soap(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope'
        ' xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns="urn:partner.soap.sforce.com" xmlns:sf="urn:fault.partner.soap.sforce.com"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )


def _login_fault(code: str, message: str) -> str:
    return _soap(
        f"<soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {message}"
        '</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}"
        "</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>"
    )


class Api:
    """Requests to answers: (status, content type, body)."""

    def __init__(self, store: Store, base_url: Callable[[], str]) -> None:
        self.store = store
        self.base_url = base_url

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, str]:
        parts = urlsplit(target)
        with self.store.lock:
            if method == "POST" and (found := _LOGIN.match(parts.path)):
                return self._login(found.group(1), body)
            try:
                if method == "GET" and _QUERY.match(parts.path):
                    kind = "query"
                elif method == "GET" and _MORE.match(parts.path):
                    kind = "query_more"
                else:
                    self.store.requests["not_found"] += 1
                    raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
                self.store.requests[kind] += 1
                fault = self.store.take_fault(kind)
                if fault is not None:
                    raise ApiError(fault.status, fault.code, fault.message)
                self._authorize(headers)
                if kind == "query":
                    soql = parse_qs(parts.query).get("q", [""])[0]
                    batch = _BATCH.search(headers.get("sforce-query-options", ""))
                    answer = self.store.query(soql, int(batch.group(1)) if batch else None)
                else:
                    found_more = _MORE.match(parts.path)
                    assert found_more is not None
                    answer = self.store.query_more(found_more.group(2))
                return 200, "application/json;charset=UTF-8", encode(answer)
            except ApiError as exc:
                return exc.status, "application/json;charset=UTF-8", encode(exc.body())

    def _authorize(self, headers: dict[str, str]) -> None:
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token not in self.store.sessions:
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def _login(self, version: str, body: bytes) -> tuple[int, str, str]:
        self.store.requests["login"] += 1
        xml = "text/xml;charset=UTF-8"
        fault = self.store.take_fault("login")
        if fault is not None:
            return fault.status, xml, _login_fault(fault.code, fault.message)
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return 500, xml, _login_fault("INVALID_LOGIN", _INVALID_LOGIN)
        username = root.findtext(f".//{_PARTNER}username") or ""
        password = root.findtext(f".//{_PARTNER}password") or ""
        if self.store.users.get(username) != password:
            return 500, xml, _login_fault("INVALID_LOGIN", _INVALID_LOGIN)
        session = self.store.new_session()
        server = f"{self.base_url()}/services/Soap/u/{version}/00D5e0000000001"
        return (
            200,
            xml,
            _soap(
                "<loginResponse><result>"
                f"<metadataServerUrl>{self.base_url()}/services/Soap/m/{version}/00D5e0000000001"
                "</metadataServerUrl><passwordExpired>false</passwordExpired>"
                f"<sandbox>false</sandbox><serverUrl>{server}</serverUrl>"
                f"<sessionId>{session}</sessionId><userId>0055e000000001AAA</userId>"
                "</result></loginResponse>"
            ),
        )


class _Handler(LoopbackHandler):
    server: _Server

    def _serve(self) -> None:
        body = self.read_body()
        if body is None:
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, content_type, text = self.server.api.handle(self.command, self.path, headers, body)
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(LoopbackServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import ssl

        # A client that does not trust the certificate hangs up in the handshake.
        if isinstance(sys.exc_info()[1], ssl.SSLError):
            return
        super().handle_error(request, client_address)

    def __init__(self, port: int, api: Api, verbose: bool, cert: Path, key: Path) -> None:
        import ssl

        self.api = api
        self.verbose = verbose
        super().__init__(("127.0.0.1", port), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        # The handshake happens in the request's own thread, on its first read.
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )


class SalesforceStandIn:
    """A local server speaking the part of Salesforce's APIs the sync uses (module
    docstring; docs/salesforce.md, "The stand-in").

        with SalesforceStandIn() as sf:
            sf.store.define("Account", {"Name": "string"})
            sf.store.insert("Account", {"Name": "Acme"})
            env = sf.session_env()   # METERLINE_SALESFORCE_INSTANCE_URL, _SESSION_ID,
                                     # and REQUESTS_CA_BUNDLE (its certificate)
    """

    def __init__(
        self, port: int = 0, *, page_size: int = 2000, api_version: str = "59.0",
        verbose: bool = False,
    ) -> None:  # fmt: skip
        self.store = Store(page_size=page_size, api_version=api_version)
        self._api = Api(self.store, lambda: self.base_url)
        self._port = port
        self._verbose = verbose
        self._serving: ServerThread | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self.ca_file: Path | None = None

    def start(self) -> SalesforceStandIn:
        self._folder = tempfile.TemporaryDirectory(prefix="sf-standin-")
        cert, key = write_certificate(Path(self._folder.name))
        self.ca_file = cert
        server = _Server(self._port, self._api, self._verbose, cert, key)
        self._serving = ServerThread(server, "salesforce-standin")
        return self

    def reset(self, *, page_size: int | None = None) -> Store:
        """Start over with an empty org (the server keeps running); the new store."""
        with self.store.lock:
            self.store = Store(
                page_size=page_size or self.store.page_size,
                api_version=self.store.api_version,
            )
            self._api.store = self.store
        return self.store

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()
            self._serving = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    @property
    def port(self) -> int:
        if self._serving is None:
            raise RuntimeError("the stand-in is not running")
        return self._serving.port

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def session_env(self) -> dict[str, str]:
        """Settings (environment variables) that read this stand-in with a new session,
        and trust its certificate."""
        return {
            "METERLINE_SALESFORCE_INSTANCE_URL": self.base_url,
            "METERLINE_SALESFORCE_SESSION_ID": self.store.new_session(),
            "REQUESTS_CA_BUNDLE": str(self.ca_file),
        }

    def login_env(self, username: str, password: str, security_token: str) -> dict[str, str]:
        """Settings that log in to this stand-in as a user it accepts (added here)."""
        self.store.add_user(username, password, security_token)
        return {
            "METERLINE_SALESFORCE_USERNAME": username,
            "METERLINE_SALESFORCE_PASSWORD": password,
            "METERLINE_SALESFORCE_SECURITY_TOKEN": security_token,
            "METERLINE_SALESFORCE_LOGIN_URL": self.base_url,
            "REQUESTS_CA_BUNDLE": str(self.ca_file),
        }

    def __enter__(self) -> SalesforceStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
