"""ACL (Kitex ``pkg/acl/acl.go``): reject functions run before discovery (client) or before the
handler (server); the first that returns a reason ends the call with :class:`ACLError`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kitex_grpc.endpoint import identity
from kitex_grpc.errors import ACLError
from kitex_grpc.observability.metrics import REJECT_ACL, record_rejection

if TYPE_CHECKING:
    from kitex_grpc.endpoint import Endpoint, Middleware
    from kitex_grpc.rpcinfo import RPCInfo

RejectFunc = Callable[["RPCInfo", Any], "BaseException | str | None"]
"""Kitex ``acl.RejectFunc``: return ``None`` to allow, or a reason (an exception or a message)."""


def acl_middleware(rules: Sequence[RejectFunc]) -> Middleware:
    """The ``acl`` middleware over ``rules``; the identity when there are none."""
    if not rules:
        return identity
    checks = tuple(rules)

    def middleware(next_endpoint: Endpoint) -> Endpoint:
        async def acl(ri: RPCInfo, request: Any) -> Any:
            for rule in checks:
                reason = rule(ri, request)
                if reason is not None:
                    record_rejection(REJECT_ACL, ri)
                    if isinstance(reason, BaseException):
                        raise ACLError(str(reason)).with_cause(reason)
                    raise ACLError(str(reason))
            return await next_endpoint(ri, request)

        return acl

    return middleware
