"""Folkeregisteret's event feed: the wire format and a local simulator of the feed API."""
