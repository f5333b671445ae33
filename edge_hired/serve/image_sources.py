"""Image bytes from a message's URL: data URLs always, http(s) and file:// only when enabled.

The server must not fetch arbitrary URLs for its callers: http(s) needs --allow-image-urls and
is bounded in size and time, with redirects followed only on the same host; file:// needs
--media-dir and stays inside it. Everything else is a 400; anything too big a 413.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edge_hired.serve.api_errors import bad_request, too_large

PARAM = "messages.content.image_url.url"
FETCH_TIMEOUT_S = 10.0
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class SourcePolicy:
    """Which image sources are allowed and how large an image may be."""

    max_bytes: int
    allow_urls: bool = False
    media_dir: Path | None = None


def image_bytes(url: str, policy: SourcePolicy) -> bytes:
    """The raw bytes behind `url`, or an ApiError (400 / 413) saying why not."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        return _data_url(url, policy.max_bytes)
    if scheme in ("http", "https") and policy.allow_urls:
        return _fetch(url, policy.max_bytes)
    if scheme == "file" and policy.media_dir is not None:
        return _media_file(url, policy.media_dir, policy.max_bytes)
    allowed = ["data:image/...;base64"]
    allowed += ["http(s)"] if policy.allow_urls else []
    allowed += ["file:// under --media-dir"] if policy.media_dir else []
    got = scheme or url[:16]
    raise bad_request(f"image url: expected {' or '.join(allowed)}, got {got!r}", PARAM)


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        limit = max_bytes / 2**20
        raise too_large(f"image: {size} bytes is over the {limit:g} MiB limit", PARAM)


def _data_url(url: str, max_bytes: int) -> bytes:
    """Decode `data:image/<type>;base64,<payload>` (strict base64)."""
    header, sep, payload = url[5:].partition(",")
    media_type, *params = header.split(";")
    if not sep or "base64" not in params:
        raise bad_request("image data url: expected data:image/...;base64,<data>", PARAM)
    if not media_type.lower().startswith("image/"):
        raise bad_request(f"image data url: expected an image/* type, got {media_type!r}", PARAM)
    _check_size(len(payload) * 3 // 4, max_bytes)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise bad_request(f"image data url: invalid base64 ({error})", PARAM) from error
    _check_size(len(data), max_bytes)
    return data


def _media_file(url: str, media_dir: Path, max_bytes: int) -> bytes:
    """A file:// URL that resolves inside --media-dir."""
    root = media_dir.resolve()
    path = Path(unquote(urlsplit(url).path)).resolve()
    if not path.is_relative_to(root):
        raise bad_request(f"image file: expected a path under --media-dir {root}", PARAM)
    if not path.is_file():
        raise bad_request(f"image file: no such file {path.name!r} under --media-dir", PARAM)
    _check_size(path.stat().st_size, max_bytes)
    return path.read_bytes()


def _fetch(url: str, max_bytes: int) -> bytes:
    """GET with a time limit, a size limit and same-host redirects only."""
    import httpx

    host = urlsplit(url).hostname
    with httpx.Client(timeout=FETCH_TIMEOUT_S, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                with client.stream("GET", url) as response:
                    if not response.is_redirect:
                        return _read_body(response, max_bytes)
                    url = str(response.next_request.url) if response.next_request else url
            except httpx.HTTPError as error:
                raise bad_request(
                    f"image url: fetch failed ({type(error).__name__})", PARAM
                ) from error
            if urlsplit(url).hostname != host:
                raise bad_request("image url: redirect to another host refused", PARAM)
    raise bad_request(f"image url: more than {MAX_REDIRECTS} redirects", PARAM)


def _read_body(response, max_bytes: int) -> bytes:
    """The response body, stopping as soon as it passes `max_bytes`."""
    if response.status_code != 200:
        raise bad_request(f"image url: expected HTTP 200, got {response.status_code}", PARAM)
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        _check_size(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
