"""The pure-Python gRPC transport (``TransportProtocol.GRPC_H2``): asyncio shells over the sans-IO
cores in :mod:`kitex_grpc.protocol.h2_call`.

Modules, one job each:

- :mod:`.config`: defaults (windows, backpressure marks, keepalive) and the core's configuration.
- :mod:`.status`: translation between HTTP/2 / gRPC outcomes and :mod:`kitex_grpc.errors`.
- :mod:`.protocol`: the ``asyncio.Protocol`` base that drives one core (bytes in, events, bytes out),
  batches writes and runs the keepalive PING.
- :mod:`.client_conn` / :mod:`.client`: one multiplexed connection per address, and the
  :class:`~kitex_grpc.transport.base.ClientTransport` on top.
- :mod:`.server_call`: one server call (its state and wake-ups) and the StreamIO the chain sees.
- :mod:`.server_conn` / :mod:`.server`: one protocol per accepted (or adopted) connection, and the
  :class:`~kitex_grpc.transport.base.ServerTransport` with graceful drain.

``h2`` is imported only here and in :mod:`kitex_grpc.protocol`.
"""
