"""Model cards and markdown files as HTML that is safe to put in a page.

Markdown is rendered by markdown-it (CommonMark, tables, strikethrough) with raw HTML allowed, because real cards
use it (``<img>``, ``<details>``, centred headers); then the whole output goes through nh3 (ammonia) with an
allowlist: no ``<script>``/``<style>``/``<iframe>``/forms, no event-handler or ``style`` attributes, and only
``http``, ``https`` and ``mailto`` URLs (relative ones are kept). Relative links and images of markdown syntax
point at the repo's files through ``file_base``.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import nh3
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from openckpt.hub.services.cards import split_front_matter

__all__ = ["RenderedCard", "render_card", "render_markdown", "sanitize_html"]

_TAGS = nh3.ALLOWED_TAGS - {"map", "area"}
_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "a": {"href", "hreflang", "title"},
    "img": {"src", "alt", "title", "width", "height", "align"},
    "abbr": {"title"},
    "details": {"open"},
    "th": {"align", "colspan", "rowspan", "scope"},
    "td": {"align", "colspan", "rowspan"},
}
_URL_SCHEMES = {"http", "https", "mailto"}
_md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def sanitize_html(html: str) -> str:
    """Allowlisted HTML: no script, no event handlers, no ``javascript:``/``data:`` URLs, no inline styles."""
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style", "iframe", "object", "embed", "noscript", "template", "textarea"},
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def _is_relative(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and bool(parts.path) and not url.startswith(("/", "#"))


def _rebase(url: str, file_base: str, folder: str) -> str:
    """``img/x.png`` in the README of ``folder`` → ``<file_base>/<folder>/img/x.png`` (query and anchor kept)."""
    parts = urlsplit(url)
    path = posixpath.normpath(posixpath.join(folder, parts.path))
    if path.startswith("../") or path in ("..", "."):
        return url
    rebased = f"{file_base}/{quote(path)}"
    if parts.query:
        rebased += f"?{parts.query}"
    return rebased + (f"#{parts.fragment}" if parts.fragment else "")


def _rewrite(tokens: list[Token], file_base: str, folder: str) -> None:
    for token in tokens:
        if token.children:
            _rewrite(token.children, file_base, folder)
        key = "src" if token.type == "image" else "href" if token.type == "link_open" else None
        if key is not None:
            url = token.attrGet(key)
            if isinstance(url, str) and _is_relative(url):
                token.attrSet(key, _rebase(url, file_base, folder))


def render_markdown(text: str, *, file_base: str | None = None, folder: str = "") -> str:
    """Sanitised HTML of a markdown text. ``file_base`` is the URL relative links and images resolve against."""
    tokens = _md.parse(text)
    if file_base is not None:
        _rewrite(tokens, file_base.rstrip("/"), folder)
    return sanitize_html(_md.renderer.render(tokens, _md.options, {}))


@dataclass(frozen=True)
class RenderedCard:
    """A README split into its front matter (shown as a table) and its body (as sanitised HTML)."""

    html: str
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_error: str | None = None


def render_card(text: str, *, file_base: str | None = None) -> RenderedCard:
    """Render a README.md: YAML front matter parsed (never shown raw), the rest as sanitised markdown."""
    raw, body = split_front_matter(text)
    metadata: dict[str, Any] = {}
    error = None
    if raw is not None:
        try:
            loaded = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            error = f"invalid YAML metadata: {e}"
        else:
            if isinstance(loaded, dict):
                metadata = {str(k): v for k, v in loaded.items()}
            elif loaded is not None:
                error = "the metadata block is not a YAML mapping"
    return RenderedCard(render_markdown(body, file_base=file_base), metadata, error)
