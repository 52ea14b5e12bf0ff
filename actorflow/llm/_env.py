"""Choosing an LLM from the environment, so examples run offline unless a server is configured."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._client import _MODEL_ENV_VARS, OpenAICompatible
from ._scripted import EchoLLM
from ._types import LLM


def llm_from_env(
    fallback: LLM | None = None,
    *,
    default_model: str | None = None,
    environ: Mapping[str, str] | None = None,
    **client_options: Any,
) -> LLM:
    """``OpenAICompatible.from_env()`` if ``OPENAI_BASE_URL`` is set, else ``fallback`` (an ``EchoLLM`` by default).

    Only ``OPENAI_BASE_URL`` switches to a server, not ``OPENAI_API_KEY`` alone: a key left
    in the shell for other tools should not make an example spend money. For OpenAI itself
    set ``OPENAI_BASE_URL=https://api.openai.com/v1``. The model comes from
    ``ACTORFLOW_LLM_MODEL`` (or ``OPENAI_MODEL``), else ``default_model`` (the tutorial's
    ``model="gpt-4o-mini"`` goes there). ``client_options`` (``timeout=``, ``max_retries=``,
    ...) go to the client. ``environ`` replaces ``os.environ``.
    """
    env = os.environ if environ is None else environ
    if env.get("OPENAI_BASE_URL"):
        model = next((env[name] for name in _MODEL_ENV_VARS if env.get(name)), None) or default_model
        return OpenAICompatible.from_env(model, environ=env, **client_options)
    return EchoLLM() if fallback is None else fallback
