"""The models and their registry. The layers above (run, analysis, CLI) reach a model only
through :func:`get_model` and the :class:`~kibs_mc.models.base.Model` contract; adding a model is
one module plus one ``conf/model/<name>.yaml`` and one line in :data:`MODELS`
(docs/architecture.md, "Adding a model")."""

from __future__ import annotations

from kibs_mc.models import cowan_jonard, kibs
from kibs_mc.models.base import Model

#: Every model, by name (the Hydra choice ``model=<name>``).
MODELS: dict[str, Model] = {m.name: m for m in (cowan_jonard.MODEL, kibs.MODEL)}


def get_model(name: str) -> Model:
    """The registered model called ``name`` (``KeyError`` if none: config validation has
    already refused unknown names)."""
    return MODELS[name]


def headline(model: Model, limit: int | None = None) -> list[str]:
    """The model's headline outcomes (all outcomes if it names none), at most ``limit``."""
    chosen = [o for o in model.headline if o in model.outcomes] or list(model.outcomes)
    return chosen[:limit] if limit is not None else chosen


__all__ = ["MODELS", "Model", "get_model", "headline"]
