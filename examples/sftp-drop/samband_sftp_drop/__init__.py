"""SFTP drop: a Samband delivery kind written from zero (docs/connectors.md, "Writing a delivery kind")."""

from samband_sftp_drop.sink import SftpDropConfig, SftpDropSink

__all__ = ["SftpDropConfig", "SftpDropSink"]
