"""TCP connections served from one epoll set inside asyncio's selector event loop (Linux).

On asyncio's own loop every read of a socket runs through interpreted asyncio code: the selector's
key lookup, the loop's callback queue, a handle, the transport's read methods; every write through
the transport's ``write``. For a server answering many small requests that is a fifth of its CPU per
request (bench/README.md). :class:`EpollListener` registers one ``select.epoll`` instance with the
loop as a single reader: when any of its sockets is ready, one compiled callback accepts new
connections and reads and writes every ready one. Each connection gets an :class:`EpollTransport`,
which does for its :class:`asyncio.BufferedProtocol` what asyncio's socket transport does:

* reads go into the protocol's ``get_buffer`` and are reported with ``buffer_updated``; the end of
  the stream with ``eof_received`` (then the transport closes unless that returns true);
* writes are sent at once; what the socket does not take is kept and sent when it becomes writable,
  with ``pause_writing``/``resume_writing`` around asyncio's 64 KiB / 16 KiB water marks; the unsent
  rest of a large ``bytes`` written to an empty buffer is kept as a view of it, not copied (a 64 MiB
  reply is then held once, not twice, while the socket drains);
* ``close`` sends what is kept first; ``abort`` drops it; ``connection_lost`` follows in a later loop
  callback, then the socket is closed;
* a socket error or an exception from the protocol's callbacks is logged and ends that connection
  only.

Other loops (uvloop, or a loop without epoll) keep ``loop.create_server``; see
:func:`can_serve_with_epoll`. Kept on purpose: the epoll set is level-triggered, like asyncio's
selector, and a socket is in it only while it waits for something (reading not paused, or bytes
kept to write), as asyncio registers a socket only while it has a reader or a writer.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import select
import socket
from collections.abc import Callable
from typing import Any, Final

__all__ = ["EpollListener", "EpollTransport", "can_serve_with_epoll"]

logger = logging.getLogger("kitex_grpc.transport")

_EPOLLIN: Final = select.EPOLLIN if hasattr(select, "EPOLLIN") else 1
_EPOLLOUT: Final = select.EPOLLOUT if hasattr(select, "EPOLLOUT") else 4
_HIGH_WATER: Final = 64 * 1024  # asyncio's default write-buffer limits (transports.py)
_LOW_WATER: Final = 16 * 1024
# The smallest unsent rest of a ``bytes`` write kept as a view rather than copied: below it the copy
# is cheap, and a small view would keep alive the whole object it is a view of.
_HOLD_MIN: Final = 256 * 1024
# Accept errors that mean "out of resources": stop accepting for a while, as asyncio does
# (selector_events._accept_connection, constants.ACCEPT_RETRY_DELAY).
_ACCEPT_RETRY_DELAY: Final = 1.0
_RESOURCE_ERRNOS: Final = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

ProtocolFactory = Callable[[], asyncio.BufferedProtocol]


def can_serve_with_epoll(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether :class:`EpollListener` can serve on ``loop``: asyncio's selector loop, on Linux."""
    return hasattr(select, "epoll") and isinstance(loop, asyncio.SelectorEventLoop)


async def listening_sockets(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for ``host`` (every interface when empty or None) and
    ``port``, one per address family, as ``loop.create_server`` makes them."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: the IPv4 socket takes IPv4
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {address!r}: {exc.strerror}"
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class EpollListener:
    """Accepts connections on listening sockets and serves them all from one epoll set."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket], factory: ProtocolFactory
    ) -> None:
        self._loop = loop
        self._listening: dict[int, socket.socket] = {sock.fileno(): sock for sock in sockets}
        self._factory = factory
        self._epoll = select.epoll()
        self._transports: dict[int, EpollTransport] = {}
        self._accepting = False
        self._closed = False  # no more accepting; the epoll set closes once no connection is left
        self._backlog = 100  # connections accepted per wake-up of a listening socket (asyncio's)
        self.sockets = sockets

    def start(self) -> None:
        """Start accepting (call on the loop's thread)."""
        self._loop.add_reader(self._epoll.fileno(), self._poll)
        self._accept_on()

    def close(self) -> None:
        """Stop accepting and close the listening sockets; connections stay until they close."""
        if self._closed:
            return
        self._closed = True
        self._accept_off()
        for sock in self._listening.values():
            sock.close()
        self._listening.clear()
        if not self._transports:
            self._shut()

    def _shut(self) -> None:
        self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()

    def _accept_on(self) -> None:
        if self._accepting or self._closed:
            return
        self._accepting = True
        for fd in self._listening:
            self._epoll.register(fd, _EPOLLIN)

    def _accept_off(self) -> None:
        if not self._accepting:
            return
        self._accepting = False
        for fd in self._listening:
            self._epoll.unregister(fd)

    # Level-triggered: whatever is not handled in this pass is reported again in the next one.
    def _poll(self) -> None:
        transports = self._transports
        for fd, events in self._epoll.poll(0):
            transport = transports.get(fd)
            if transport is None:
                listening = self._listening.get(fd)
                if listening is not None:
                    self._accept(listening)
                continue
            # epoll reports a hang-up or an error with either; each side then finds out which.
            if events & ~_EPOLLOUT and transport.reading:
                transport.read_ready()
            if events & ~_EPOLLIN and transport.pending_write():
                transport.write_ready()

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(self._backlog):
            try:
                sock, _ = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    logger.error(
                        "socket.accept() out of system resource (%s); accepting again in %.0f s",
                        exc,
                        _ACCEPT_RETRY_DELAY,
                    )
                    self._accept_off()
                    self._loop.call_later(_ACCEPT_RETRY_DELAY, self._accept_on)
                else:
                    logger.error("socket.accept() failed: %s", exc)
                return
            self._connect(sock)

    def _connect(self, sock: socket.socket) -> None:
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's TCP transports
            protocol = self._factory()
        except Exception as exc:
            logger.error("cannot serve an accepted connection: %s", exc, exc_info=exc)
            sock.close()
            return
        transport = EpollTransport(self, sock, protocol)
        self._transports[sock.fileno()] = transport
        transport.start()

    def watch(self, transport: EpollTransport, fd: int, old: int, new: int) -> None:
        """Change what the epoll set waits for on ``fd`` from ``old`` to ``new`` (0: nothing)."""
        if old == new or self._epoll.closed:
            return
        if not old:
            self._epoll.register(fd, new)
        elif not new:
            self._epoll.unregister(fd)
        else:
            self._epoll.modify(fd, new)

    def forget(self, fd: int) -> None:
        """``fd``'s transport is gone (its socket is closed next, or handed elsewhere)."""
        self._transports.pop(fd, None)
        if self._closed and not self._transports and not self._epoll.closed:
            self._shut()


class EpollTransport:
    """One connection of an :class:`EpollListener`: the transport its protocol is given."""

    def __init__(self, listener: EpollListener, sock: socket.socket, protocol: Any) -> None:
        self._listener = listener
        self._loop = listener._loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol  # an asyncio.BufferedProtocol
        # What was written and the socket has not taken yet: ``_held`` (the unsent rest of one large
        # ``bytes`` write, a view of it: bytes are immutable), then ``_buffer`` (copies), in that order.
        self._held: memoryview | None = None
        self._buffer = bytearray()
        self._watching = 0  # the events the epoll set waits for on this socket
        self.reading = True  # not paused, not closing
        self._closing = False
        self._lost = False  # connection_lost is scheduled or done: nothing more happens
        self._writing_paused = False  # the protocol was told pause_writing
        self._high = _HIGH_WATER
        self._low = _LOW_WATER
        self._extra: dict[str, Any] = {"socket": sock}
        for name, get in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            try:
                self._extra[name] = get()
            except OSError:  # reset already: asyncio leaves the name out too
                continue

    def start(self) -> None:
        self._watch()
        try:
            self._protocol.connection_made(self)
        except Exception as exc:
            self._fatal_error(exc, "protocol.connection_made() failed")

    # -- asyncio.Transport --------------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self._watch()

    def resume_reading(self) -> None:
        if not self.reading and not self._closing:
            self.reading = True
            self._watch()

    def get_write_buffer_size(self) -> int:
        held = self._held
        return len(self._buffer) if held is None else len(held) + len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = _HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._pause_writing_if_full()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._lost or not data:
            return
        if not self._buffer and self._held is None:  # nothing kept: try the socket now
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except Exception as exc:
                self._fatal_error(exc, "fatal write error on socket")
                return
            if sent == len(data):
                return
            if type(data) is bytes and len(data) - sent >= _HOLD_MIN:
                self._held = memoryview(data)[sent:]
            else:
                self._buffer += memoryview(data)[sent:]
            self._watch()
        else:
            self._buffer += data
        self._pause_writing_if_full()

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        """Close after what is kept has been sent; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self.reading = False
        self._watch()
        if not self.pending_write():
            self._lose(None)

    def abort(self) -> None:
        """Close now, dropping what is kept; ``connection_lost(None)`` follows."""
        self._force_close(None)

    def detach(self) -> socket.socket:
        """Take the socket out of the epoll set and return it open, for another transport to serve;
        this transport is done (its protocol is not told)."""
        self._closing = True
        self._lost = True
        self.reading = False
        self._held = None
        self._buffer.clear()
        self._watch()
        self._listener.forget(self._fd)
        return self._sock

    # -- the listener's side -------------------------------------------------------------------------------

    def pending_write(self) -> bool:
        return (self._held is not None or bool(self._buffer)) and not self._lost

    def read_ready(self) -> None:
        protocol = self._protocol
        try:
            buf = protocol.get_buffer(-1)
            received = self._sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except Exception as exc:
            self._fatal_error(exc, "fatal read error on socket")
            return
        if not received:
            self._eof()
            return
        try:
            protocol.buffer_updated(received)
        except Exception as exc:
            self._fatal_error(exc, "protocol.buffer_updated() failed")

    def write_ready(self) -> None:
        held = self._held
        try:
            sent = self._sock.send(self._buffer if held is None else held)
        except (BlockingIOError, InterruptedError):
            return
        except Exception as exc:
            self._fatal_error(exc, "fatal write error on socket")
            return
        if held is None:
            del self._buffer[:sent]
        else:
            self._held = held[sent:] if sent < len(held) else None
        if self._writing_paused and self.get_write_buffer_size() <= self._low:
            self._writing_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._fatal_error(exc, "protocol.resume_writing() failed")
                return
        if self._held is None and not self._buffer:
            self._watch()
            if self._closing:
                self._lose(None)

    # -- internals ---------------------------------------------------------------------------------------

    def _watch(self) -> None:
        events = 0
        if self.reading:
            events |= _EPOLLIN
        if (self._held is not None or self._buffer) and not self._lost:
            events |= _EPOLLOUT
        old, self._watching = self._watching, events
        self._listener.watch(self, self._fd, old, events)

    def _pause_writing_if_full(self) -> None:
        if not self._writing_paused and self.get_write_buffer_size() > self._high:
            self._writing_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as exc:
                self._fatal_error(exc, "protocol.pause_writing() failed")

    def _eof(self) -> None:
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._fatal_error(exc, "protocol.eof_received() failed")
            return
        if keep_open:
            self.pause_reading()
        else:
            self.close()

    def _fatal_error(self, exc: Exception, message: str) -> None:
        if isinstance(exc, OSError):  # the peer reset or vanished: routine, as asyncio logs it
            logger.debug("%s: %s", message, exc)
        else:
            logger.error("%s on %s", message, self._extra.get("peername"), exc_info=exc)
        self._force_close(exc)

    def _force_close(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._held = None
        self._buffer.clear()
        self._closing = True
        self.reading = False
        self._lose(exc)

    def _lose(self, exc: Exception | None) -> None:
        """No more reading or writing; ``connection_lost`` in the next loop callback."""
        self._lost = True
        self._watch()
        self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._listener.forget(self._fd)
            self._sock.close()
