"""``grpc/health/v1/health.proto`` (package ``grpc.health.v1``), built in code; see ``_builder``."""

from __future__ import annotations

from typing import Any

from kitex_grpc.health._builder import BuiltFile, file_proto

PACKAGE = "grpc.health.v1"
FILE_NAME = "grpc/health/v1/health.proto"
_P = "." + PACKAGE

HEALTH_FILE = file_proto(
    FILE_NAME,
    PACKAGE,
    [
        ("HealthCheckRequest", [("service", 1, "string", False, None)], []),
        (
            "HealthCheckResponse",
            [("status", 1, f"enum:{_P}.HealthCheckResponse.ServingStatus", False, None)],
            [("ServingStatus", [("UNKNOWN", 0), ("SERVING", 1), ("NOT_SERVING", 2), ("SERVICE_UNKNOWN", 3)])],
        ),
    ],
    "Health",
    [
        ("Check", f"{_P}.HealthCheckRequest", f"{_P}.HealthCheckResponse", False, False),
        ("Watch", f"{_P}.HealthCheckRequest", f"{_P}.HealthCheckResponse", False, True),
    ],
)

BUILT = BuiltFile(HEALTH_FILE)
HealthCheckRequest: Any = BUILT.messages["HealthCheckRequest"]
HealthCheckResponse: Any = BUILT.messages["HealthCheckResponse"]
