"""The route of the models: ``GET /v1/models``, the registry's catalog merged with live state.

The OpenAI-style list of the static ``v1/models`` (with ``serve --registry``), each model with
where it is loaded now, its health, how often ``/v1/schedule`` answered for it and when last, and
whether it is the registry's default (:mod:`runtime.service.models`). The list is read again
(conditionally) on each request; the use counts come from the state, so they survive a restart.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from runtime.service.endpoints import Endpoint
from runtime.service.models import RegistryModels, model_list
from runtime.service.state import State
from runtime.service.types import ModelList


class ModelRoutes:
    """The handler over the registry's model list and the state."""

    def __init__(self, state: State, models: RegistryModels) -> None:
        self.state = state
        self.models = models

    def endpoints(self) -> list[Endpoint]:
        """The rows, in the order ``/openapi.json`` lists them."""
        return [
            Endpoint("GET", "/v1/models", self.list_models,
                     "The registry's models with where they are loaded and how much they are used",
                     answer=ModelList),
        ]  # fmt: skip

    async def list_models(self, request: Request) -> dict[str, Any]:
        await self.models.refreshed()
        usage = await self.state.model_usage()
        live = self.state.hives.workers()
        return model_list(self.models, live, usage, stale=self.state.stale_for() is not None)
