r"""Publish step: turn a translation and its front matter into the site's markdown post.

Plain functions, no I/O. The byte-exact contract is the real post
the team's `../shared/reference/openai-800m-weekly-users.md` (and tests/fixtures/post-format.md);
`tests/test_render.py` holds us to it:

    ---
    <yaml.safe_dump(front_matter, allow_unicode=True, sort_keys=True)>---

    ### <Chinese heading>

    <Chinese paragraph>

    <details>
    <summary>View/Hide Original English</summary>
    <p class="english-text"><escaped English></p>
    </details>

    ... (one blank line between every block, a single newline at the very end)

Decisions the reference cannot show (it has no such case):
- A blank line inside a paragraph would end the markdown paragraph or the HTML block early, so every
  whitespace run that contains a line break is collapsed to one space, and outer whitespace is stripped.
  Runs without a line break (e.g. double spaces) are kept, as the reference's bytes may need them.
- An empty (or whitespace-only) translation is rendered as `UNTRANSLATED_MARKER`, never as an empty
  paragraph, so a missing translation stays visible to the reader and the editor, and the block structure
  (Chinese, then English) stays intact.
- Text is always text, on the site whatever generator builds it (Eleventy pre-processes markdown with
  Liquid, Hexo with Nunjucks, Jekyll with Liquid and kramdown, Hugo has shortcodes):
  - everywhere in the body `{` and `}` are written `&#123;` and `&#125;`, so no `{{ }}`, `{% %}`, `{# #}`,
    `{{< >}}` or kramdown `{: }` can form, while every markdown renderer and browser shows the braces;
  - in the English block (raw HTML) `&` and `<` are escaped; `>` is not (the reference has raw `>>`);
  - the Chinese paragraph and the heading are markdown: `&` and `<` are escaped too (no HTML, no
    entity, no autolink), `\`, `` ` ``, `[`, `]` and `#` are backslash-escaped (no code span, link,
    image or heading), and a line that would open a block (`- `, `+ `, `* `, `1. `, `1) `, `>`, `=`,
    `|`, `~~~`, `: `) has its marker escaped. Emphasis (`**RL**`, in the reference) is left to the model.
  Text with none of these characters is written byte for byte as it came.
- A section whose heading is blank after collapsing gets no `###` line (an empty heading renders as an
  empty `<h3>`); its paragraphs are still written.
"""

from __future__ import annotations

import re
import unicodedata

import yaml

from schemas.artifacts import Translation
from schemas.post import FrontMatter, Post, PostParagraph, PostSection
from workers.errors import PermanentError

UNTRANSLATED_MARKER = "（此段未翻译）"
"""Shown in place of an empty translation; grep-able so an editor can find what to fix."""

SLUG_MAX_LEN = 60
"""Longest slug; it is cut at the last word boundary at or before this length."""

_DETAILS_OPEN = '<details>\n<summary>View/Hide Original English</summary>\n<p class="english-text">'
_DETAILS_CLOSE = "</p>\n</details>"
_WHITESPACE_RUN = re.compile(r"\s+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_APOSTROPHES = re.compile(r"['’‘`]")
_NON_SLUG = re.compile(r"[^a-z0-9]+")
_NON_ID = re.compile(r"[^A-Za-z0-9_-]+")


def _collapse_if_breaking(run: re.Match[str]) -> str:
    """One space for a run with a line break; other runs (e.g. double spaces) are kept byte for byte."""
    whitespace = run.group()
    return " " if "\n" in whitespace or "\r" in whitespace else whitespace


def _one_line(text: str) -> str:
    """Collapse whitespace runs holding a line break into one space: a blank line would split the block."""
    return _WHITESPACE_RUN.sub(_collapse_if_breaking, text).strip()


_MARKDOWN_INLINE = re.compile(r"([\\`\[\]#])")
# what opens a block at the start of a line: a list item, a thematic break (---, ***, ___), a quote, a
# kramdown table row, a fence
_BLOCK_START = re.compile(r"^(?:[-+*](?=\s|$)|\d{1,9}(?=[.)](?:\s|$))|(?:-\s*){3,}$|(?:\*\s*){3,}$|(?:_\s*){3,}$"
                          r"|[>|]|~~~)")


def _escape_templates(text: str) -> str:
    """No template engine or shortcode sees a delimiter, opening or closing (Nunjucks refuses a stray `#}`):
    braces as character references, which every markdown renderer and browser shows as braces."""
    return text.replace("{", "&#123;").replace("}", "&#125;")


def _escape_html(text: str) -> str:
    """Escape what would start an entity or a tag in the HTML block; `>` stays, as in the reference."""
    return _escape_templates(text.replace("&", "&amp;").replace("<", "&lt;"))


def _escape_markdown(text: str) -> str:
    """A line of markdown that shows as exactly this text: no HTML, no template, no link, code or heading,
    and no block opened by its first characters."""
    text = _MARKDOWN_INLINE.sub(r"\\\1", text)
    marker = _BLOCK_START.match(text)
    if marker is not None and marker.group()[0].isdigit():  # "1. " → "1\. ": the digits must touch the dot
        text = f"{text[:marker.end()]}\\{text[marker.end():]}"
    elif marker is not None:
        text = "\\" + text
    return _escape_html(text)


def _render_front_matter(front_matter: FrontMatter) -> str:
    """The YAML between the fences, with safe_dump's defaults so line wrapping matches the reference."""
    dumped = yaml.safe_dump(front_matter.model_dump(mode="json"), allow_unicode=True, sort_keys=True)
    return f"---\n{dumped}---\n"


def _render_paragraph(paragraph: PostParagraph) -> list[str]:
    """The Chinese paragraph then its English original; two blocks, never an empty one."""
    chinese = _escape_markdown(_one_line(paragraph.translation)) or UNTRANSLATED_MARKER
    english = _escape_html(_one_line(paragraph.source))
    return [chinese, f"{_DETAILS_OPEN}{english}{_DETAILS_CLOSE}"]


def render_post(post: Post) -> str:
    """Render a post byte-for-byte in the site's format (see the module docstring); deterministic."""
    blocks: list[str] = []
    for section in post.sections:
        heading = _escape_markdown(_one_line(section.heading))
        if heading:
            blocks.append(f"### {heading}")
        for paragraph in section.paragraphs:
            blocks.extend(_render_paragraph(paragraph))
    front = _render_front_matter(post.front_matter)
    if not blocks:
        return front
    return front + "\n" + "\n\n".join(blocks) + "\n"


def build_post(front_matter: FrontMatter, translation: Translation) -> Post:
    """Map the translation to a post: source is the English, translation the Chinese.

    Paragraphs with neither English nor Chinese carry nothing and are dropped; sections left without
    paragraphs are dropped too, so the post never shows a heading with nothing under it.
    """
    sections: list[PostSection] = []
    for section in translation.sections:
        paragraphs = [
            PostParagraph(source=p.source, translation=p.translation)
            for p in section.paragraphs
            if p.source.strip() or p.translation.strip()
        ]
        if paragraphs:
            sections.append(PostSection(heading=section.heading, paragraphs=paragraphs))
    return Post(front_matter=front_matter, sections=sections)


def _slugify(title: str) -> str:
    """ASCII lowercase hyphenated slug: accents folded (Café → cafe), apostrophes dropped (don't → dont)."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    slug = _NON_SLUG.sub("-", _APOSTROPHES.sub("", ascii_title).lower()).strip("-")
    if len(slug) <= SLUG_MAX_LEN:
        return slug
    cut = slug[: SLUG_MAX_LEN + 1]
    boundary = cut.rfind("-")
    return cut[:boundary] if boundary > 0 else slug[:SLUG_MAX_LEN]


def post_filename(front_matter: FrontMatter, video_id: str, english_title: str) -> str:
    """`<date>-<slug>.md`; the slug comes from the English title so names stay readable ASCII URLs.

    A title with no ASCII letter or digit (e.g. all CJK) falls back to the video id, which is unique.
    """
    date = front_matter.date
    if not _DATE.fullmatch(date):
        raise PermanentError(
            f"post date {date!r} is not YYYY-MM-DD — set front_matter.date to the upload date, "
            "e.g. 2025-11-28"
        )
    slug = _slugify(english_title) or _NON_ID.sub("-", video_id).strip("-")
    if not slug:
        raise PermanentError(
            f"cannot name the post: title {english_title!r} and video id {video_id!r} give no usable "
            "characters — pass the video's English title or its id"
        )
    return f"{date}-{slug}.md"


def post_name_choices(name: str, video_id: str) -> list[str]:
    """The name a post wants, then one no other video can want (the video id added): when two videos
    (say two files both called talk.wav) give the same name, the second takes the next choice."""
    own = _NON_ID.sub("-", video_id).strip("-")
    return [name] if name.endswith(f"-{own}.md") else [name, f"{name.removesuffix('.md')}-{own}.md"]
