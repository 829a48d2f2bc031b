"""``grpc/reflection/{v1,v1alpha}/reflection.proto``, built in code (see ``kitex_grpc.health._builder``).

The two versions are the same messages in two packages, so they share one table here.
"""

from __future__ import annotations

from kitex_grpc.health._builder import BuiltFile, Message, file_proto

V1 = "grpc.reflection.v1"
V1ALPHA = "grpc.reflection.v1alpha"


def _messages(p: str) -> list[Message]:
    req, resp = "message_request", "message_response"
    return [
        (
            "ServerReflectionRequest",
            [
                ("host", 1, "string", False, None),
                ("file_by_filename", 3, "string", False, req),
                ("file_containing_symbol", 4, "string", False, req),
                ("file_containing_extension", 5, f"{p}.ExtensionRequest", False, req),
                ("all_extension_numbers_of_type", 6, "string", False, req),
                ("list_services", 7, "string", False, req),
            ],
            [],
        ),
        (
            "ExtensionRequest",
            [("containing_type", 1, "string", False, None), ("extension_number", 2, "int32", False, None)],
            [],
        ),
        (
            "ServerReflectionResponse",
            [
                ("valid_host", 1, "string", False, None),
                ("original_request", 2, f"{p}.ServerReflectionRequest", False, None),
                ("file_descriptor_response", 4, f"{p}.FileDescriptorResponse", False, resp),
                ("all_extension_numbers_response", 5, f"{p}.ExtensionNumberResponse", False, resp),
                ("list_services_response", 6, f"{p}.ListServiceResponse", False, resp),
                ("error_response", 7, f"{p}.ErrorResponse", False, resp),
            ],
            [],
        ),
        ("FileDescriptorResponse", [("file_descriptor_proto", 1, "bytes", True, None)], []),
        (
            "ExtensionNumberResponse",
            [("base_type_name", 1, "string", False, None), ("extension_number", 2, "int32", True, None)],
            [],
        ),
        ("ListServiceResponse", [("service", 1, f"{p}.ServiceResponse", True, None)], []),
        ("ServiceResponse", [("name", 1, "string", False, None)], []),
        (
            "ErrorResponse",
            [("error_code", 1, "int32", False, None), ("error_message", 2, "string", False, None)],
            [],
        ),
    ]


def build(package: str) -> BuiltFile:
    """The reflection file of ``package`` (``grpc.reflection.v1`` or ``grpc.reflection.v1alpha``)."""
    p = "." + package
    fdp = file_proto(
        package.replace(".", "/") + "/reflection.proto",
        package,
        _messages(p),
        "ServerReflection",
        [
            (
                "ServerReflectionInfo",
                f"{p}.ServerReflectionRequest",
                f"{p}.ServerReflectionResponse",
                True,
                True,
            )
        ],
    )
    return BuiltFile(fdp)


BUILT_V1 = build(V1)
BUILT_V1ALPHA = build(V1ALPHA)
