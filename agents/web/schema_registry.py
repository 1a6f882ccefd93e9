"""The read side of the Confluent Schema Registry REST API, served from the schema catalog.

    add_routes(app, CatalogRegistry(catalog()))

GET /schemas/ids/{id}, /schemas/ids/{id}/versions, /schemas/types, /subjects,
/subjects/{subject}/versions, /subjects/{subject}/versions/{version|latest}[/schema].
POST /subjects/{subject}/versions and POST /subjects/{subject} answer with the existing id
when the schema is in the catalog (what serializers with auto-registration call) and refuse
anything else: the catalog only changes through a release in the repository. On the worker the
registration path needs a bearer token (any scope): it writes nothing, but it is a write path.
Errors use Confluent's error codes so standard clients report them properly.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web

from schemas import json_text
from schemas.catalog import SchemaVersion
from schemas.codec import SchemaNotFound
from schemas.registry import CONTENT_TYPE, CatalogRegistry, SubjectNotFound, VersionNotFound

REGISTRY_KEY = web.AppKey("schema_registry", CatalogRegistry)
MAY_REGISTER_KEY = web.AppKey("schema_registry_may_register", Callable)


def add_routes(
    app: web.Application, registry: CatalogRegistry, may_register: Callable[[web.Request], bool] = lambda request: True
) -> None:
    """`may_register`: whether the request may call the registration path (the worker asks for a
    bearer token; nothing is ever written, but no anonymous caller should use a write path)."""
    app[REGISTRY_KEY] = registry
    app[MAY_REGISTER_KEY] = may_register
    app.router.add_get("/schemas/types", schema_types)
    app.router.add_get("/schemas/ids/{id}", schema_by_id)
    app.router.add_get("/schemas/ids/{id}/versions", schema_versions_by_id)
    app.router.add_get("/subjects", subjects)
    app.router.add_get("/subjects/{subject}/versions", subject_versions)
    app.router.add_get("/subjects/{subject}/versions/{version}", subject_version)
    app.router.add_get("/subjects/{subject}/versions/{version}/schema", subject_version_schema)
    app.router.add_post("/subjects/{subject}/versions", register_existing)
    app.router.add_post("/subjects/{subject}", lookup_schema)


def _reply(body, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type=CONTENT_TYPE)


def _error(status: int, code: int, message: str) -> web.Response:
    return _reply({"error_code": code, "message": message}, status)


def _version_body(version: SchemaVersion) -> dict:
    return {"subject": version.subject, "version": version.version, "id": version.id, "schema": version.text}


def _registry(request: web.Request) -> CatalogRegistry:
    return request.app[REGISTRY_KEY]


def _find(request: web.Request) -> SchemaVersion | web.Response:
    try:
        return _registry(request).version(request.match_info["subject"], request.match_info["version"])
    except SubjectNotFound:
        return _error(404, 40401, "Subject not found.")
    except VersionNotFound:
        return _error(404, 40402, "Version not found.")


async def schema_types(request: web.Request) -> web.Response:
    return _reply(["AVRO"])


async def schema_by_id(request: web.Request) -> web.Response:
    try:
        version = _registry(request).by_id(int(request.match_info["id"]))
    except (ValueError, SchemaNotFound):
        return _error(404, 40403, "Schema not found")
    return _reply({"schema": version.text})


async def schema_versions_by_id(request: web.Request) -> web.Response:
    registry = _registry(request)
    try:
        schema_id = registry.by_id(int(request.match_info["id"])).id
    except (ValueError, SchemaNotFound):
        return _error(404, 40403, "Schema not found")
    return _reply(
        [
            {"subject": v.subject, "version": v.version}
            for s in registry.subjects()
            for v in registry.versions(s)
            if v.id == schema_id
        ]
    )


async def subjects(request: web.Request) -> web.Response:
    return _reply(_registry(request).subjects())


async def subject_versions(request: web.Request) -> web.Response:
    try:
        return _reply([v.version for v in _registry(request).versions(request.match_info["subject"])])
    except SubjectNotFound:
        return _error(404, 40401, "Subject not found.")


async def subject_version(request: web.Request) -> web.Response:
    found = _find(request)
    return found if isinstance(found, web.Response) else _reply(_version_body(found))


async def subject_version_schema(request: web.Request) -> web.Response:
    found = _find(request)
    return found if isinstance(found, web.Response) else web.Response(text=found.text, content_type="application/json")


async def _lookup(request: web.Request) -> SchemaVersion | web.Response:
    try:
        body = await request.json(loads=json_text.loads)
        return _registry(request).lookup(request.match_info["subject"], body["schema"])
    except (ValueError, KeyError, TypeError):
        return _error(422, 42201, "Invalid schema")
    except SubjectNotFound:
        return _error(404, 40401, "Subject not found.")
    except SchemaNotFound:
        return _error(404, 40403, "Schema not found: the catalog changes only through a release")


async def register_existing(request: web.Request) -> web.Response:
    if not request.app[MAY_REGISTER_KEY](request):
        return _error(401, 40101, "Unauthorized: registering needs a bearer token of the bus's API.")
    found = await _lookup(request)
    return found if isinstance(found, web.Response) else _reply({"id": found.id})


async def lookup_schema(request: web.Request) -> web.Response:
    found = await _lookup(request)
    return found if isinstance(found, web.Response) else _reply(_version_body(found))
