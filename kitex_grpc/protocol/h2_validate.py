"""RFC 9113 §8.1.1 / §8.2 / §8.3 checks of a received HTTP/2 header block (sans-IO).

h2's own inbound validation is off (``transport/h2/config.py``: it would also refuse values gRPC
peers send, such as a ``grpc-message`` with a trailing space), so the core checks what makes a
request or response *malformed* here, once per decoded block: upper-case field names, unknown or
misplaced pseudo-header fields, connection-specific fields, ``te`` other than ``trailers``, missing,
duplicated or empty request pseudo-header fields, a missing or duplicated ``:status``, and
pseudo-header fields in trailers. A malformed block is a stream error of type PROTOCOL_ERROR
(§8.1.1): the caller resets that stream alone, as grpc-go does, and the connection goes on.

Each check is one pass over the list with set and dict look-ups, no regular expression: it runs on
every HEADERS frame. Field values are not scanned for NUL/CR/LF (§8.2.1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import h2.events

Header = tuple[bytes, bytes]

# §8.2.2: fields that are connection-specific in HTTP/1.1 make a message malformed; ``te`` is
# allowed in a request with the value ``trailers`` only.
_CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te")
)
# §8.3.1: the request pseudo-header fields, as bits so a duplicate is one AND.
_METHOD, _SCHEME, _PATH, _AUTHORITY = 1, 2, 4, 8
_REQUEST_PSEUDO = {b":method": _METHOD, b":scheme": _SCHEME, b":path": _PATH, b":authority": _AUTHORITY}
_COLON = ord(":")


def _regular(name: bytes, value: bytes, request: bool) -> str | None:
    """The problem with one field outside the pseudo-header block (§8.2, §8.2.2), or None."""
    if not name:
        return "empty header field name"
    if name[0] == _COLON:  # §8.1: trailers carry no pseudo-header fields (reached for trailers only)
        return f"pseudo-header field {name!r} in trailers"
    # islower() is false for a name without letters ("x-1" is lower, "123" is not): check those in full.
    if not name.islower() and name.lower() != name:
        return f"upper-case header field name {name!r}"
    if name in _CONNECTION_SPECIFIC and not (request and name == b"te" and value == b"trailers"):
        return f"connection-specific header field {name!r}"
    return None


def check_request(headers: Iterable[Header]) -> str | None:
    """Why a request header block is malformed (RFC 9113 §8.3.1), or None if it is well-formed."""
    seen = 0
    regular = False
    method = b""
    pseudo = _REQUEST_PSEUDO
    special = _CONNECTION_SPECIFIC
    for name, value in headers:
        if name and name[0] == _COLON:
            if regular:
                return f"pseudo-header field {name!r} after a regular header field"
            bit = pseudo.get(name, 0)
            if not bit or seen & bit:
                if not bit:
                    return f"{name!r} is not a request pseudo-header field"
                return f"duplicated pseudo-header field {name!r}"
            seen |= bit
            if bit == _PATH:
                if not value:
                    return "empty :path"
            elif bit == _METHOD:
                method = value
        else:
            regular = True
            # The common case costs two C calls: a lower-case name that is not connection-specific
            # (``te: trailers``, which every gRPC request carries, is let through here too).
            if (
                (name in special and not (name == b"te" and value == b"trailers")) or not name.islower()
            ) and (problem := _regular(name, value, True)) is not None:
                return problem
    if method == b"CONNECT":  # §8.5: only :method and :authority
        if seen != _METHOD | _AUTHORITY:
            return "CONNECT request with pseudo-header fields other than :method and :authority"
        return None
    missing = (_METHOD | _SCHEME | _PATH) & ~seen
    if missing:
        absent = [name.decode() for name, bit in _REQUEST_PSEUDO.items() if missing & bit]
        return f"missing pseudo-header field {', '.join(absent)}"
    return None


def check_response(headers: Iterable[Header]) -> str | None:
    """Why a response header block (final or informational) is malformed (§8.3.2), or None."""
    status = False
    regular = False
    for name, value in headers:
        if name and name[0] == _COLON:
            if regular:
                return f"pseudo-header field {name!r} after a regular header field"
            if name != b":status":
                return f"{name!r} is not a response pseudo-header field"
            if status:
                return "duplicated pseudo-header field b':status'"
            status = True
        else:
            regular = True
            if (name in _CONNECTION_SPECIFIC or not name.islower()) and (
                problem := _regular(name, value, False)
            ) is not None:
                return problem
    return None if status else "missing pseudo-header field :status"


def _check_trailers(headers: Iterable[Header], request: bool) -> str | None:
    for name, value in headers:
        # An empty name is not lower-case: _regular reports it before looking at name[0].
        if (not name.islower() or name[0] == _COLON or name in _CONNECTION_SPECIFIC) and (
            problem := _regular(name, value, request)
        ) is not None:
            return problem
    return None


def check_request_trailers(headers: Iterable[Header]) -> str | None:
    """Why a request's trailer block is malformed (§8.1), or None."""
    return _check_trailers(headers, True)


def check_response_trailers(headers: Iterable[Header]) -> str | None:
    """Why a response's trailer block is malformed (§8.1), or None."""
    return _check_trailers(headers, False)


# The check for the event h2 made of a header block, by the side that received it (client_side).
_SERVER_CHECKS: dict[type, Callable[[Iterable[Header]], str | None]] = {
    h2.events.RequestReceived: check_request,
    h2.events.TrailersReceived: check_request_trailers,
}
_CLIENT_CHECKS: dict[type, Callable[[Iterable[Header]], str | None]] = {
    h2.events.ResponseReceived: check_response,
    h2.events.InformationalResponseReceived: check_response,
    h2.events.TrailersReceived: check_response_trailers,
}


def malformed(event: h2.events.Event, headers: Iterable[Header], client_side: bool) -> str | None:
    """Why the header block behind ``event`` (h2's event for it) is malformed, or None."""
    check = (_CLIENT_CHECKS if client_side else _SERVER_CHECKS).get(type(event))
    return None if check is None else check(headers)
