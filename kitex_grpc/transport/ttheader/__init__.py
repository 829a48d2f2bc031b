"""TTHeader, TTHeaderFramed and Framed transports over asyncio TCP (KITEX-WIRE.md §1, §2).

``client.TTHeaderClientTransport`` keeps a Kitex-style long-connection pool (one request in flight
per connection); ``server.TTHeaderServerTransport`` detects each connection's protocol and serves
TTHeader, Framed, Buffered and Kitex Protobuf on one port (HTTP/2 is handed to the h2 transport).
"""

from __future__ import annotations
