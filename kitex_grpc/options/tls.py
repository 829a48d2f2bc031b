"""TLS settings as PEM bytes, usable by every transport (grpcio takes PEM, asyncio an SSLContext)."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path


@dataclasses.dataclass(frozen=True, slots=True)
class TLSConfig:
    """PEM-encoded TLS material.

    Client: ``root_certificates`` to verify the server (system roots when ``None``), and a
    ``certificate_chain`` + ``private_key`` pair for mutual TLS. ``server_hostname`` overrides the
    name checked against the server certificate.
    Server: ``certificate_chain`` + ``private_key`` (required), and ``root_certificates`` with
    ``require_client_auth`` for mutual TLS.
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_hostname: str | None = None
    require_client_auth: bool = False

    @classmethod
    def from_files(
        cls,
        *,
        root_certificates: str | Path | None = None,
        certificate_chain: str | Path | None = None,
        private_key: str | Path | None = None,
        server_hostname: str | None = None,
        require_client_auth: bool = False,
    ) -> TLSConfig:
        def read(path: str | Path | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return cls(
            read(root_certificates),
            read(certificate_chain),
            read(private_key),
            server_hostname,
            require_client_auth,
        )

    def client_ssl_context(self, alpn: list[str]) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.root_certificates is not None:
            ctx.load_verify_locations(cadata=self.root_certificates.decode())
        self._load_pair(ctx)
        ctx.set_alpn_protocols(alpn)
        return ctx

    def server_ssl_context(self, alpn: list[str]) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._load_pair(ctx)
        if self.root_certificates is not None:
            ctx.load_verify_locations(cadata=self.root_certificates.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED if self.require_client_auth else ssl.CERT_NONE
        ctx.set_alpn_protocols(alpn)
        return ctx

    def _load_pair(self, ctx: ssl.SSLContext) -> None:
        if self.certificate_chain is None or self.private_key is None:
            return
        import tempfile

        # ssl can only load a key pair from files.
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert.write_bytes(self.certificate_chain)
            key.write_bytes(self.private_key)
            ctx.load_cert_chain(str(cert), str(key))

    def validate_for_server(self, option: str) -> None:
        if self.certificate_chain is None or self.private_key is None:
            raise ValueError(f"{option}: a server needs both certificate_chain and private_key")
        if self.require_client_auth and self.root_certificates is None:
            raise ValueError(f"{option}: require_client_auth needs root_certificates to verify clients")

    def validate_for_client(self, option: str) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError(f"{option}: certificate_chain and private_key go together for mutual TLS")
