"""A real SFTP server on 127.0.0.1 (asyncssh), serving one folder, for the SFTP drop kind's tests."""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncssh


@dataclass
class SftpServer:
    host: str
    port: int
    username: str
    password: str
    host_key: str  # the server's public key, OpenSSH format
    root: Path  # what the server serves, on this machine

    def received(self, directory: str = "inbox") -> list[Path]:
        """Finished files only (a temp file starts with a dot)."""
        return sorted(p for p in (self.root / directory).glob("*.jsonl"))


@asynccontextmanager
async def sftp_server(root: Path, username: str = "samband"):
    password = secrets.token_urlsafe(16)

    class Server(asyncssh.SSHServer):
        def begin_auth(self, _username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, user: str, given: str) -> bool:
            return user == username and secrets.compare_digest(given, password)

    key = asyncssh.generate_private_key("ssh-ed25519")
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    listener = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_factory=Server,
        server_host_keys=[key],
        sftp_factory=lambda channel: asyncssh.SFTPServer(channel, chroot=str(root).encode()),
    )
    port = listener.sockets[0].getsockname()[1]
    try:
        yield SftpServer("127.0.0.1", port, username, password, key.export_public_key().decode().strip(), root)
    finally:
        listener.close()
        await listener.wait_closed()
