"""Inside Samband's own test suite this package is not pip-installed: its entry point is registered
from the checkout (checkout.py). Installed with `pip install -e .`, nothing here is needed."""

from __future__ import annotations

import sys

from checkout import register_checkout

try:
    import samband_sftp_drop  # noqa: F401 (installed: nothing to do)
except ImportError:
    from connectors import api

    sys.path[:0] = register_checkout()
    api._delivery_kinds.cache_clear()
