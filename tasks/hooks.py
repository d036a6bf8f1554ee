"""The project's global hooks and middleware, named in settings, which run for every task."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from stepwise.runs.engine.hooks import Hooks, InvalidHook

_cache: dict[tuple, Hooks] = {}


def global_hooks() -> Hooks:
    """Return STEPWISE_HOOKS (``{"on_failure": ["app.hooks.alert"], ...}``) and STEPWISE_MIDDLEWARE as Hooks.

    Read on every attempt (a settings change in tests holds at once), imported once per value.
    """
    named = getattr(settings, "STEPWISE_HOOKS", {}) or {}
    middleware = list(getattr(settings, "STEPWISE_MIDDLEWARE", []) or [])
    if not named and not middleware:
        return Hooks()
    if not isinstance(named, dict):
        raise ImproperlyConfigured("STEPWISE_HOOKS must be a dict of hook name to a list of dotted paths")
    key = (tuple((name, tuple(_paths(paths))) for name, paths in sorted(named.items())), tuple(middleware))
    if key not in _cache:
        loaded = {name: [_load(path, f"STEPWISE_HOOKS[{name!r}]") for path in paths] for name, paths in key[0]}
        loaded["middleware"] = [_load(path, "STEPWISE_MIDDLEWARE") for path in middleware]
        try:
            _cache[key] = Hooks.of(loaded, where="STEPWISE_HOOKS")
        except InvalidHook as exc:
            raise ImproperlyConfigured(str(exc)) from None
    return _cache[key]


def _paths(paths: object) -> list[str]:
    return [paths] if isinstance(paths, str) else list(paths)


def _load(path: str, where: str):
    try:
        return import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{where}: cannot import {path!r}: {exc}") from None
