"""The plugin API's own promises: config errors name the field and never echo a value."""

from __future__ import annotations

import pytest
from pydantic import Field

from connectors.api import ConfigError, ConnectorConfig, SecretStr, Source


class _Config(ConnectorConfig):
    url: str
    token: SecretStr
    page_size: int = Field(1000, ge=1)


class _Source(Source):
    Config = _Config


def test_valid_config_parses_and_keeps_the_secret_hidden():
    config = _Source.parse_config({"url": "http://x", "token": "s3cret-value"})
    assert config.token.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(config)


def test_config_error_names_every_bad_field_and_echoes_no_value():
    with pytest.raises(ConfigError) as caught:
        _Source.parse_config({"token": 12345678, "page_size": "not-a-number-xyz", "urll": "typo"})
    message = str(caught.value)
    fields = {path for path, _ in caught.value.problems}
    assert {"url", "token", "page_size", "urll"} <= fields
    assert "12345678" not in message and "not-a-number-xyz" not in message
    assert message.startswith("invalid config for connector '_Source'")


def test_config_schema_is_json_schema_of_the_declared_model():
    schema = _Source.config_schema()
    assert schema["required"] == ["url", "token"]
    assert schema["properties"]["token"]["format"] == "password"
