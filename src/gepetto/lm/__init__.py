"""Language-model clients for gepetto."""

from gepetto.lm.protocol import AsyncLM, LanguageModel, Messages, Prompt, as_async_lm

__all__ = ["AsyncLM", "LanguageModel", "Messages", "Prompt", "as_async_lm"]
