"""Connector tests use the conformance kit's fixtures, as a third-party connector package would."""

from connectors.testing.plugin import *  # noqa: F403
