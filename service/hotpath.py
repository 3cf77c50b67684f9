"""The scoring endpoints' short way through the ASGI stack.

Why: a single-sample scoring request does about 100 us of work of its own, and FastAPI's
stack around a route (error, telemetry and body-limit middleware, the exception middleware,
the exit-stack middleware, route matching over every route, the request/response wrapper)
cost about 40 us more per request on this machine, measured in-process. The two endpoints
that carry the traffic (``POST /v1/models/{name}/score`` and ``POST /v2/models/{name}/infer``)
take only the Request and the model name, parse their own query and body, and map their own
errors, so they need none of it: :class:`ServiceApp` sends them straight to the same
:class:`~service.middleware.RequestContextMiddleware` (request id, body limit, access log)
and the same handlers, with errors turned into responses by :func:`service.errors.respond`,
the one place that does it for every route. Everything else (and any other method on these
paths) goes through FastAPI as usual; the FastAPI routes of the two paths stay registered for
the OpenAPI schema.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service import errors
from service.middleware import BodyDeadlines, RequestContextMiddleware

Endpoint = Callable[[Request, str], Awaitable[Response]]


def route_path(scope: Scope) -> str:
    """The request path below the app's mount point (``root_path``), as Starlette's router
    matches it."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):]
    return path


class HotRoute:
    """``POST`` on a path with one ``{name}`` segment, served by ``endpoint(request, name)``."""

    def __init__(self, path: str, endpoint: Endpoint) -> None:
        if path.count("{name}") != 1:
            raise ValueError(f"hot path {path!r} must have exactly one {{name}} segment")
        head, tail = path.split("{name}")
        self.path = path
        self.pattern = re.compile(f"^{re.escape(head)}([^/]+){re.escape(tail)}$")
        self.endpoint = endpoint


class ServiceApp(FastAPI):
    """FastAPI with the request-context middleware, and :class:`HotRoute` requests
    dispatched before its middleware stack."""

    def __init__(self, *, hot_routes: Sequence[HotRoute], max_body_bytes: int,
                 access_log: bool, body_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot_routes = tuple(hot_routes)
        # the same request context on both ways in: inside FastAPI's stack for every other
        # route, directly around the hot routes (one body-deadline watchdog for both)
        deadlines = BodyDeadlines(body_timeout_s)
        self.add_middleware(RequestContextMiddleware, max_body_bytes=max_body_bytes,
                            access_log=access_log, deadlines=deadlines)
        self._hot = RequestContextMiddleware(self._serve_hot, max_body_bytes=max_body_bytes,
                                             access_log=access_log, deadlines=deadlines)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        hot = self._hot
        routes = self.hot_routes

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["method"] == "POST":
                path = route_path(scope)
                for route in routes:
                    match = route.pattern.match(path)
                    if match is not None:
                        scope["path_params"] = {"name": match.group(1)}
                        scope["hot_route"] = route
                        await hot(scope, receive, send)
                        return
            await stack(scope, receive, send)

        return dispatch

    @staticmethod
    async def _serve_hot(scope: Scope, receive: Receive, send: Send) -> None:
        route: HotRoute = scope["hot_route"]
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request, scope["path_params"]["name"])
        except ClientDisconnect:
            return  # nobody to answer; the access log records the request as 500
        except Exception as exc:
            response = errors.respond(request, exc)
        await response(scope, receive, send)
