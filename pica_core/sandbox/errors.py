"""Pica's error bodies (V1 shape), so the sandbox fails exactly as Pica does."""

from __future__ import annotations

import json

from starlette.responses import Response

_ERRORS = {
    400: ("BadRequest", 2000, "bad_request"),
    401: ("Unauthorized", 2010, "unauthorized"),
    403: ("Forbidden", 2002, "forbidden"),
    404: ("NotFound", 2005, "not_found"),
    405: ("MethodNotAllowed", 2004, "method_not_allowed"),
    409: ("Conflict", 2001, "conflict"),
    413: ("PayloadTooLarge", 2000, "payload_too_large"),
    422: ("UnprocessableEntity", 2011, "unprocessable_entity"),
    424: ("FailedDependency", 2007, "failed_dependency"),
    429: ("TooManyRequests", 2009, "too_many_requests"),
    500: ("InternalServerError", 2003, "internal_server_error"),
    501: ("NotImplemented", 2006, "not_implemented"),
    502: ("BadGateway", 2003, "bad_gateway"),
    503: ("ServiceUnavailable", 2008, "service_unavailable"),
    504: ("GatewayTimeout", 2008, "gateway_timeout"),
}


def error_body(status: int, message: str) -> dict:
    kind, code, key = _ERRORS.get(status, ("InternalServerError", 2003, "internal_server_error"))
    return {"type": kind, "code": code, "status": status, "key": f"err::application::{key}",
            "message": message, "meta": None}


def pica_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(error_body(status, message)), status, headers=headers,
                    media_type="application/json")


class PicaHTTPError(Exception):
    """Raised inside handlers; turned into a Pica-shaped error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
