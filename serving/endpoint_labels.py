"""Bounded `endpoint` labels on BentoML's HTTP metrics: unknown paths share one label.

BentoML's traffic-metrics middleware runs before any of ours and labels every request by
its raw path, so requests to random paths, with or without a key, would add a time series
each and grow `/metrics` without bound. `install` swaps in a subclass that labels each
request by its route (`known` paths as they are, paths under a `prefix` by the prefix,
paths matching a route template such as `/v2/models/{model_name}/infer` by the template)
and everything else as `OTHER`; the request itself goes on with its real path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bentoml._internal.server.http import instruments
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

OTHER = "other"
REMEMBERED_PATHS = 256
_REAL_PATH = "serving.real_path"


class _RealPath:
    """Gives the request its real path back after the metrics middleware labelled it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _REAL_PATH in scope:
            real_path = scope[_REAL_PATH]
            scope = {key: value for key, value in scope.items() if key != _REAL_PATH}
            scope["path"] = real_path
        await self.app(scope, receive, send)


class BoundedEndpointMetrics(instruments.RunnerTrafficMetricsMiddleware):
    known: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    templates: tuple[tuple[re.Pattern[str], str], ...] = ()

    def __init__(self, app: ASGIApp, **options: object) -> None:
        super().__init__(_RealPath(app), **options)
        self._labels: dict[str, str] = {}  # the first paths seen, up to REMEMBERED_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            label = self._labels.get(path)
            if label is None:
                label = endpoint_label(path, self.known, self.prefixes, self.templates)
                if len(self._labels) < REMEMBERED_PATHS:
                    self._labels[path] = label
            if label != path:
                scope = {**scope, "path": label, _REAL_PATH: path}
        await super().__call__(scope, receive, send)


def endpoint_label(
    path: str,
    known: frozenset[str],
    prefixes: tuple[str, ...],
    templates: tuple[tuple[re.Pattern[str], str], ...] = (),
) -> str:
    if path in known:
        return path
    for prefix in prefixes:
        if path.startswith(prefix):
            return prefix.rstrip("/")
    for pattern, template in templates:
        if pattern.match(path):
            return template
    return OTHER


def install(
    known: Iterable[str], prefixes: Iterable[str] = (), templates: Iterable[str] = ()
) -> None:
    """Labels BentoML's HTTP metrics by route from now on (call before the app is built)."""
    BoundedEndpointMetrics.known = frozenset(known)
    BoundedEndpointMetrics.prefixes = tuple(prefixes)
    # in order: the first template a path matches labels it
    BoundedEndpointMetrics.templates = tuple(
        (compile_path(template)[0], template) for template in templates
    )
    instruments.RunnerTrafficMetricsMiddleware = BoundedEndpointMetrics
