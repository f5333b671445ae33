"""Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, by status code.

Every client mistake becomes an `ApiError` with a 4xx status; the handlers in `app` turn it,
FastAPI's validation errors and malformed JSON into this shape, so no client input yields a 500.
"""

from __future__ import annotations

from typing import Any

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    503: "server_error",
}


class ApiError(Exception):
    """A request the server refuses, with the HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI's clients parse."""
        kind = ERROR_TYPES.get(self.status, "server_error")
        return {
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        }


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """400: the client sent something the server cannot use."""
    return ApiError(400, message, param, code)


def too_large(message: str, param: str | None = None) -> ApiError:
    """413: an image over --max-image-mb or the decoder's pixel limit."""
    return ApiError(413, message, param, "payload_too_large")


def unavailable(message: str, retry_after_s: int = 1) -> ApiError:
    """503 with Retry-After: loading, or the queue is full."""
    return ApiError(503, message, None, "unavailable", {"Retry-After": str(retry_after_s)})
