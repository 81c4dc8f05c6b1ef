"""Images in side information, shown to a vision-capable reflection model (gepa's
``gepa.image.Image``).

An evaluator puts :class:`Image` objects anywhere in the side information it returns (at
the top, nested in dicts or lists). The reflection prompt then carries a text placeholder
``[IMAGE-N]`` where each one was, and the prompt is sent as one user message whose content
is the text followed by the images (:func:`image_message`): OpenAI-style ``image_url``
parts, which gepetto's Anthropic client turns into Anthropic ``image`` blocks
(:func:`anthropic_image_block`). Without images the prompt stays a plain ``str``.

A run's journal keeps an image as data (:func:`image_to_data`: a one-key object
``{"__gepetto_image__": {...}}`` with its URL, or its base64 data and media type; an image
given by ``path`` is read then, so the journal holds the picture itself) and a resumed run
gets :class:`Image` objects back (:func:`restore_images`), so its reflection prompts are the
ones an uninterrupted run sends.

Example:
    >>> Image(url="https://example.com/plot.png").to_openai_content_part()
    {'type': 'image_url', 'image_url': {'url': 'https://example.com/plot.png'}}
    >>> Image(base64_data="iVBORw0KGgo=", media_type="image/png").data_url()
    'data:image/png;base64,iVBORw0KGgo='
    >>> Image()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gepetto.errors.ConfigError: Exactly one of url, path, or base64_data must be provided...
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gepetto.errors import ConfigError

__all__ = [
    "IMAGE_TAG",
    "Image",
    "anthropic_image_block",
    "image_from_data",
    "image_message",
    "image_to_data",
    "restore_images",
]

IMAGE_TAG = "__gepetto_image__"
"""The only key of an image's journaled form (:func:`image_to_data`)."""

_MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".svg": "image/svg+xml",
}
_DATA_URL = re.compile(r"^data:(?P<media_type>[^;,]+);base64,(?P<data>.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Image:
    """One image: a URL (``https:`` or ``data:``), a file path (read when the prompt is
    sent) or base64 data with its media type.

    Raises:
        ConfigError: not exactly one source, or ``base64_data`` without ``media_type``
            (a ``ValueError``, as in gepa).
    """

    url: str | None = None
    path: str | os.PathLike[str] | None = None
    base64_data: str | None = None
    media_type: str | None = None

    def __post_init__(self) -> None:
        sources = [s for s in (self.url, self.path, self.base64_data) if s is not None]
        if len(sources) != 1:
            raise ConfigError(
                "Exactly one of url, path, or base64_data must be provided for an Image "
                f"(got {len(sources)})"
            )
        if self.base64_data is not None and not self.media_type:
            raise ConfigError(
                "media_type is required when using base64_data, e.g. media_type='image/png'"
            )

    def data_url(self) -> str:
        """The URL a chat API accepts: the ``url`` as given, or a ``data:`` URL of the file
        (its media type guessed from the extension unless given) or of the base64 data."""
        if self.url is not None:
            return self.url
        if self.path is not None:
            media_type, data = _file_data(self.path, self.media_type)
            return f"data:{media_type};base64,{data}"
        return f"data:{self.media_type};base64,{self.base64_data}"

    def to_openai_content_part(self) -> dict[str, Any]:
        """The image as an OpenAI chat content part (``{"type": "image_url", ...}``)."""
        return {"type": "image_url", "image_url": {"url": self.data_url()}}

    def to_anthropic_content_block(self) -> dict[str, Any]:
        """The image as an Anthropic Messages content block (``{"type": "image", ...}``)."""
        return anthropic_image_block(self.to_openai_content_part())


def _file_data(path: str | os.PathLike[str], media_type: str | None) -> tuple[str, str]:
    """The media type (guessed from the extension unless given) and base64 data of a file."""
    with open(path, "rb") as file:
        data = base64.b64encode(file.read()).decode("ascii")
    extension = os.path.splitext(os.fspath(path))[1].lower()
    return media_type or _MEDIA_TYPES.get(extension, "image/png"), data


def image_to_data(image: Image) -> dict[str, Any]:
    """The image as JSON data for the journal: ``{IMAGE_TAG: fields}``.

    An image given by ``path`` is read now and kept as base64 data with its media type (the
    one its data URL has), so a resumed run shows the same picture even if the file has
    changed or gone since; a file that cannot be read keeps its path.

    Example:
        >>> image_to_data(Image(url="https://example.com/a.png"))
        {'__gepetto_image__': {'url': 'https://example.com/a.png'}}
        >>> restore_images([image_to_data(Image(base64_data="AAA", media_type="image/gif"))])
        [Image(url=None, path=None, base64_data='AAA', media_type='image/gif')]
    """
    fields: dict[str, Any]
    if image.url is not None:
        fields = {"url": image.url}
    elif image.path is not None:
        try:
            media_type, data = _file_data(image.path, image.media_type)
        except OSError:
            fields = {"path": os.fspath(image.path)}
        else:
            fields = {"base64_data": data, "media_type": media_type}
    else:
        fields = {"base64_data": image.base64_data}
    if image.media_type is not None:
        fields.setdefault("media_type", image.media_type)
    return {IMAGE_TAG: fields}


def image_from_data(value: object) -> Image | None:
    """The :class:`Image` of a journaled form (:func:`image_to_data`), else ``None`` (also
    for an object with the tag whose fields do not make an image)."""
    if not (isinstance(value, Mapping) and len(value) == 1 and IMAGE_TAG in value):
        return None
    fields = value[IMAGE_TAG]
    if not isinstance(fields, Mapping) or not set(fields) <= _IMAGE_FIELDS:
        return None
    try:
        return Image(**fields)
    except (ConfigError, TypeError):
        return None


_IMAGE_FIELDS = frozenset({"url", "path", "base64_data", "media_type"})


def restore_images(value: Any) -> Any:
    """``value`` (JSON data read back from a journal) with each journaled image an
    :class:`Image` again, at any depth in dicts and lists; everything else unchanged."""
    if isinstance(value, dict):
        image = image_from_data(value)
        if image is not None:
            return image
        return {key: restore_images(item) for key, item in value.items()}
    if isinstance(value, list):
        return [restore_images(item) for item in value]
    return value


def image_message(text: str, images: list[Image]) -> str | list[dict[str, Any]]:
    """The prompt ``text`` with ``images``: ``text`` itself when there are none, else one
    user message whose content is the text part, then one ``image_url`` part per image."""
    if not images:
        return text
    parts = [{"type": "text", "text": text}, *(i.to_openai_content_part() for i in images)]
    return [{"role": "user", "content": parts}]


def anthropic_image_block(part: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part as an Anthropic ``image`` block: a ``data:``
    URL becomes a base64 source, any other URL a URL source.

    Example:
        >>> anthropic_image_block({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}})
        {'type': 'image', 'source': {'type': 'base64', 'media_type': 'image/png', 'data': 'AAA'}}
    """  # noqa: E501
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    if not isinstance(url, str):
        raise ConfigError(f"an image_url content part needs a URL, got {part!r}")
    found = _DATA_URL.match(url)
    if found is not None:
        source = {"type": "base64", "media_type": found["media_type"], "data": found["data"]}
    else:
        source = {"type": "url", "url": url}
    return {"type": "image", "source": source}
