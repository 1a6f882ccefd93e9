"""Settings shared by the bus tests' worker environment and their assertions."""

PSEUDONYM_KEY = "5d1c0a3f7e9b24c6a8f0e1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f70"  # a test key: 32 bytes, hex
API_TOKEN = "test-token-rw"
READ_TOKEN = "test-token-ro"
