"""Pull delivery: a subscription fetches its events over HTTP (sink.py; the bus reads them back in agents/delivery/sent.py)."""
