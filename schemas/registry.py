"""Schema registries the codec can use.

- CatalogRegistry: serves the catalog itself (every released version plus the current one).
  Ids are derived from the schema (schemas.schema_id), so they are the same on every machine.
  `add(subject, schema)` makes one more schema resolvable by id in every registry over the same
  catalog in this process: a subscription's projection (what Kafka delivery writes with), or a
  delivery-only record such as the purge notice.
- RemoteRegistry: an external Confluent-compatible registry (Confluent, Karapace, Apicurio
  ccompat) at SAMBAND_SCHEMA_REGISTRY_URL. Current schemas are registered there (the registry
  assigns the ids); unknown ids are fetched once and cached. Calls block: they happen once per
  schema, at start or on the first message with a new id.

`registry_from_settings()` picks one from the settings.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from schemas.catalog import Catalog, CatalogError, SchemaVersion, catalog
from schemas.codec import SchemaNotFound
from schemas.schema_id import canonical_text, schema_id

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SubjectNotFound(LookupError):
    pass


class VersionNotFound(LookupError):
    pass


class CatalogRegistry:
    def __init__(self, cat: Catalog):
        self.catalog = cat

    def subjects(self) -> list[str]:
        return list(self.catalog.subjects)

    def versions(self, subject: str) -> list[SchemaVersion]:
        try:
            return self.catalog.versions[subject]
        except KeyError:
            raise SubjectNotFound(subject) from None

    def version(self, subject: str, version: int | str) -> SchemaVersion:
        versions = self.versions(subject)
        if version == "latest":
            return versions[-1]
        found = [v for v in versions if str(v.version) == str(version)]
        if not found:
            raise VersionNotFound(f"{subject} v{version}")
        return found[0]

    def by_id(self, schema_id: int) -> SchemaVersion:
        try:
            return self.catalog.by_id[schema_id]
        except KeyError:
            raise SchemaNotFound(schema_id) from None

    def schema_by_id(self, schema_id: int) -> dict:
        return self.by_id(schema_id).schema

    def current_id(self, name: str) -> int:
        return self.catalog.current(name).id

    def add(self, subject: str, schema: dict) -> int:
        """Serve `schema` (outside the catalog's subjects) by its stable id from now on; the id."""
        version = SchemaVersion(subject, 1, schema, released=False)
        self.catalog.by_id.setdefault(version.id, version)
        return version.id

    def lookup(self, subject: str, schema: dict | str) -> SchemaVersion:
        """The version of `subject` whose schema equals `schema` (JSON text or parsed)."""
        text = canonical_text(json.loads(schema) if isinstance(schema, str) else schema)
        for version in self.versions(subject):
            if version.text == text:
                return version
        raise SchemaNotFound(subject)


class RemoteRegistry:
    def __init__(self, url: str, cat: Catalog, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.catalog = cat
        self.timeout = timeout
        self._schemas: dict[int, dict] = {}
        self._current_ids: dict[str, int] = {}

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def schema_by_id(self, schema_id: int) -> dict:
        if schema_id not in self._schemas:
            try:
                reply = self._request("GET", f"/schemas/ids/{schema_id}")
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise SchemaNotFound(schema_id) from None
                raise
            self._schemas[schema_id] = json.loads(reply["schema"])
        return self._schemas[schema_id]

    def add(self, subject: str, schema: dict) -> int:
        """Registers `schema` under `subject` (idempotent in the registry) and returns the registry's id."""
        key = f"{subject}:{schema_id(schema)}"
        if key not in self._current_ids:
            quoted = urllib.parse.quote(subject, safe="")
            reply = self._request("POST", f"/subjects/{quoted}/versions", {"schema": canonical_text(schema)})
            self._current_ids[key] = reply["id"]
            self._schemas[reply["id"]] = schema
        return self._current_ids[key]

    def current_id(self, name: str) -> int:
        """Registers the current schema under its subject (idempotent in the registry) and returns its id."""
        try:
            current = self.catalog.current(name)
        except CatalogError:
            raise SubjectNotFound(name) from None
        if current.subject not in self._current_ids:
            subject = urllib.parse.quote(current.subject, safe="")
            reply = self._request("POST", f"/subjects/{subject}/versions", {"schema": current.text})
            self._current_ids[current.subject] = reply["id"]
            self._schemas[reply["id"]] = current.schema
        return self._current_ids[current.subject]


def registry_from_settings(settings, cat: Catalog | None = None) -> CatalogRegistry | RemoteRegistry:
    """`settings` is agents.config.Settings (anything with `schema_registry_url`)."""
    cat = cat or catalog()
    if settings.schema_registry_url:
        return RemoteRegistry(settings.schema_registry_url, cat)
    return CatalogRegistry(cat)
