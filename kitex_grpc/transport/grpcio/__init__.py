"""The grpcio transport: an adapter that leads grpc.aio calls into our chain, and out of it.

This package is the only place that imports ``grpc``.
"""
