"""Client options (``with_*``) and the generic :class:`Client`.

::

    from kitex_grpc import client
    cli = kitex_grpc.new_client(service_info, "echo", client.with_host_ports("127.0.0.1:8888"))
"""

from __future__ import annotations

from kitex_grpc.client.client import Client
from kitex_grpc.options._base import fold
from kitex_grpc.options.client import (
    ClientOption,
    ClientOptions,
    ClientSuite,
    with_access_log,
    with_acl_rules,
    with_backup_request,
    with_circuit_breaker,
    with_client_basic_info,
    with_compression,
    with_config_source,
    with_connect_timeout,
    with_failure_retry,
    with_fallback,
    with_grpc_initial_conn_window_size,
    with_grpc_initial_window_size,
    with_grpc_keepalive,
    with_grpc_max_header_list_size,
    with_grpcio_channel_options,
    with_grpcio_interceptors,
    with_host_ports,
    with_instance_middleware,
    with_live_config,
    with_load_balancer,
    with_long_connection,
    with_max_message_size,
    with_middleware,
    with_mux_connection,
    with_resolver,
    with_retry_method_policies,
    with_rpc_timeout,
    with_stream_recv_middleware,
    with_stream_recv_timeout,
    with_stream_send_middleware,
    with_suite,
    with_tag,
    with_timeout_provider,
    with_tls,
    with_tracer,
    with_transport_protocol,
    with_ttheader_streaming_options,
    with_warming_up,
)
from kitex_grpc.serviceinfo import ServiceInfo

__all__ = [
    "Client",
    "ClientOption",
    "ClientOptions",
    "ClientSuite",
    "new_client",
    "with_access_log",
    "with_acl_rules",
    "with_backup_request",
    "with_circuit_breaker",
    "with_client_basic_info",
    "with_compression",
    "with_config_source",
    "with_connect_timeout",
    "with_failure_retry",
    "with_fallback",
    "with_grpc_initial_conn_window_size",
    "with_grpc_initial_window_size",
    "with_grpc_keepalive",
    "with_grpc_max_header_list_size",
    "with_grpcio_channel_options",
    "with_grpcio_interceptors",
    "with_host_ports",
    "with_instance_middleware",
    "with_live_config",
    "with_load_balancer",
    "with_long_connection",
    "with_max_message_size",
    "with_middleware",
    "with_mux_connection",
    "with_resolver",
    "with_retry_method_policies",
    "with_rpc_timeout",
    "with_stream_recv_middleware",
    "with_stream_recv_timeout",
    "with_stream_send_middleware",
    "with_suite",
    "with_tag",
    "with_timeout_provider",
    "with_tls",
    "with_tracer",
    "with_transport_protocol",
    "with_ttheader_streaming_options",
    "with_warming_up",
]


def new_client(service: ServiceInfo, dest_service: str, *opts: ClientOption) -> Client:
    """A client of ``service`` calling ``dest_service``, configured by ``with_*`` options."""
    return Client(service, dest_service, fold(ClientOptions, opts, "client"))
