"""Settings shared by the bus tests' worker environment and their assertions."""

PSEUDONYM_KEY = "test-pseudonym-key-not-a-secret"
API_TOKEN = "test-token-rw"
READ_TOKEN = "test-token-ro"
