"""The runtime service: hives, workers, scheduling, models and services over HTTP
(``registry-runtime serve``), its Python client (:mod:`~runtime.service.client`), and the agent
that sends a hive's heartbeats through it.

The state: :mod:`~runtime.service.hives` (heartbeats, liveness, the per-model worker index),
:mod:`~runtime.service.scheduler`, :mod:`~runtime.service.services` (the service registry and its
health checks), :mod:`~runtime.service.models` (the registry's model list, the default model),
:mod:`~runtime.service.usage` (how often each model is scheduled), :mod:`~runtime.service.catalog`
(what survives a restart) and their wire types in :mod:`~runtime.service.types`. Where it lives
is one protocol, :mod:`~runtime.service.state`, with two implementations:
:mod:`~runtime.service.state_memory` (this process and SQLite, the default) and
:mod:`~runtime.service.state_redis` (Redis, shared by replicas; its keys and Lua scripts in
:mod:`~runtime.service.redis_layout`).

The routes, one :class:`~runtime.service.endpoints.Endpoint` row each, by concern:
:mod:`~runtime.service.hive_routes`, :mod:`~runtime.service.model_routes`,
:mod:`~runtime.service.service_routes`, :mod:`~runtime.service.alias_routes`.

The one HTTP layer under them: :mod:`~runtime.service.http` (rows to an app),
:mod:`~runtime.service.endpoints` (the row, reading a request), :mod:`~runtime.service.tokens`
(access), :mod:`~runtime.service.errors` (the status table), :mod:`~runtime.service.openapi`,
:mod:`~runtime.service.metrics`. :mod:`~runtime.service.server` assembles it all and serves it.
"""
