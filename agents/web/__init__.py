"""HTTP endpoints of the bus, as plain aiohttp handlers the worker's web server mounts."""
