"""Model registry (timm style): ``@register_model(name)`` on a factory, ``create_model(name)``.

Every registered model is a plain ``nn.Module`` mapping a batch of grayscale face blocks
``(N, 1, T, H, W)`` float in [0, 1] to logits ``(N, num_classes)``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from omgclip.errors import OmgclipError
from omgclip.labels import NUM_CLASSES

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model class or factory under ``name``.

    The factory is called as ``factory(num_classes=..., **kwargs)``.
    """

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name] is not factory:
            raise ValueError(f"model name {name!r} is already registered")
        _MODELS[name] = factory
        return factory

    return decorator


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_MODELS)


def create_model(name: str, num_classes: int = NUM_CLASSES, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``.

    Raises :class:`OmgclipError` for an unknown name or an option the model does not take.
    """
    try:
        factory = _MODELS[name]
    except KeyError:
        raise OmgclipError(
            f"unknown model {name!r} (choose from: {', '.join(list_models())})"
        ) from None
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            known = sorted(k for k in params if k != "num_classes")
            raise OmgclipError(
                f"model {name!r} does not take option(s) {', '.join(unknown)} "
                f"(it takes: {', '.join(known) or 'none'})"
            )
    return factory(num_classes=num_classes, **kwargs)
