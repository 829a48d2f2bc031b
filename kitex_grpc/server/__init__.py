"""Server options (``with_*``) and the :class:`Server`.

::

    from kitex_grpc import server
    svr = kitex_grpc.new_server(server.with_service_addr("127.0.0.1:8888"))
    svr.register_service(service_info, handler)
    await svr.run()
"""

from __future__ import annotations

from kitex_grpc.options._base import fold
from kitex_grpc.options.server import (
    ServerOption,
    ServerOptions,
    ServerSuite,
    WorkersOption,
    with_access_log,
    with_acl_rules,
    with_concurrency_limit,
    with_config_source,
    with_exit_wait_time,
    with_grpc_flood_limits,
    with_grpc_initial_conn_window_size,
    with_grpc_initial_window_size,
    with_grpc_keepalive,
    with_grpc_keepalive_enforcement_policy,
    with_grpc_max_concurrent_streams,
    with_grpc_max_header_list_size,
    with_grpcio_interceptors,
    with_grpcio_server_options,
    with_health,
    with_http_probes,
    with_lifecycle_hook,
    with_limit,
    with_limit_reporter,
    with_listener,
    with_max_conn_idle_time,
    with_max_message_size,
    with_metrics_endpoint,
    with_middleware,
    with_read_write_timeout,
    with_reflection,
    with_registry,
    with_registry_info,
    with_server_basic_info,
    with_service_addr,
    with_stream_recv_middleware,
    with_stream_send_middleware,
    with_suite,
    with_tls,
    with_tracer,
    with_transport_protocol,
    with_ttheader_streaming_options,
    with_workers,
)
from kitex_grpc.server.server import Server

__all__ = [
    "Server",
    "ServerOption",
    "ServerOptions",
    "ServerSuite",
    "WorkersOption",
    "new_server",
    "with_access_log",
    "with_acl_rules",
    "with_concurrency_limit",
    "with_config_source",
    "with_exit_wait_time",
    "with_grpc_flood_limits",
    "with_grpc_initial_conn_window_size",
    "with_grpc_initial_window_size",
    "with_grpc_keepalive",
    "with_grpc_keepalive_enforcement_policy",
    "with_grpc_max_concurrent_streams",
    "with_grpc_max_header_list_size",
    "with_grpcio_interceptors",
    "with_grpcio_server_options",
    "with_health",
    "with_http_probes",
    "with_lifecycle_hook",
    "with_limit",
    "with_limit_reporter",
    "with_listener",
    "with_max_conn_idle_time",
    "with_max_message_size",
    "with_metrics_endpoint",
    "with_middleware",
    "with_read_write_timeout",
    "with_reflection",
    "with_registry",
    "with_registry_info",
    "with_server_basic_info",
    "with_service_addr",
    "with_stream_recv_middleware",
    "with_stream_send_middleware",
    "with_suite",
    "with_tls",
    "with_tracer",
    "with_transport_protocol",
    "with_ttheader_streaming_options",
    "with_workers",
]


def new_server(*opts: ServerOption) -> Server:
    """A server configured by ``with_*`` options; register services on it before starting."""
    return Server(fold(ServerOptions, opts, "server"))
