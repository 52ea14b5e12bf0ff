"""Choosing an LLM from the environment, so examples run offline unless a server is configured."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ._client import OpenAICompatible
from ._scripted import EchoLLM
from ._types import LLM


def llm_from_env(fallback: LLM | None = None, *, environ: Mapping[str, str] | None = None) -> LLM:
    """``OpenAICompatible.from_env()`` if ``OPENAI_BASE_URL`` is set, else ``fallback`` (an ``EchoLLM`` by default).

    Only ``OPENAI_BASE_URL`` switches to a server, not ``OPENAI_API_KEY`` alone: a key left
    in the shell for other tools should not make an example spend money. For OpenAI itself
    set ``OPENAI_BASE_URL=https://api.openai.com/v1``. ``environ`` replaces ``os.environ``.
    """
    env = os.environ if environ is None else environ
    if env.get("OPENAI_BASE_URL"):
        return OpenAICompatible.from_env(environ=env)
    return EchoLLM() if fallback is None else fallback
