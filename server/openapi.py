"""Stable OpenAPI operation ids (`<tag>-<function>`), so generated clients get clean names."""

from __future__ import annotations

from fastapi.routing import APIRoute


def operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name
