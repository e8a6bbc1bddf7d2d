"""Text is always text on the site: posts Pressroom renders from hostile talk and model text, built by the
real Eleventy (installed from npm by ./run-tests) with its markdown pre-processed by Liquid (Eleventy's
default) and by Nunjucks (Hexo's way), show every string literally, with no element the text did not ask for."""

from __future__ import annotations

import html
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from schemas.post import FrontMatter, Post, PostParagraph, PostSection
from workers.steps.publish import render_post

SITE = Path(__file__).parent / "site"
ELEVENTY = SITE / "node_modules" / ".bin" / "eleventy"
FIXTURE = Path(__file__).parent / "fixtures" / "post-format.md"

# what a talk about web frameworks, templates or security says, and what a model may write back
HOSTILE = [
    "{{ user.name }} is how Liquid prints a variable",
    "{% for x in items %}{{ x }}{% endfor %}",
    "{# a Nunjucks comment #} and {%- raw -%}",
    '{{< youtube id="abc" >}} is a Hugo shortcode, {{% note %}} another',
    "{: .class onclick=\"alert(1)\"} is a kramdown attribute list",
    "<script>alert('xss')</script> runs unless escaped",
    '<img src=x onerror="alert(1)"> fires on error',
    "[click me](javascript:alert(1)) and ![pic](javascript:alert(2))",
    "A closing </details> tag, then </p> and <!-- a comment -->",
    "`code`, a \\ backslash, C# and &amp; &lt;b&gt; as entities",
]
LINE_STARTS = ["# not a heading", "- not a list", "1. not a list either", "> not a quote", "--- not a rule",
               "+ nor this", "* nor this"]


def hostile_post() -> Post:
    paragraphs = [PostParagraph(source=text, translation=f"中文：{text}") for text in HOSTILE]
    paragraphs += [PostParagraph(source=f"Starts: {t}", translation=t) for t in LINE_STARTS]
    front = FrontMatter(
        area="tech-insights", category="technology", companies_orgs=["<b>Org</b>"], date="2026-03-14", draft=True,
        guest="", insight="", layout="post.njk", media_books=[], people=["{{ person }}"], products_models=[],
        project=[], series="", source="https://www.youtube.com/watch?v=Qm3vT8xKp2A", speaker="Systems Week",
        status="evergreen", summary="摘要 <script>alert(3)</script> {{ summary }}", tags=["templates"],
        title="模板 {% if x %} <i>标题</i>",
    )
    return Post(front_matter=front, sections=[
        PostSection(heading="{{ heading }} <em>标题</em> # 一", paragraphs=paragraphs[:6]),
        PostSection(heading="- 第二节", paragraphs=paragraphs[6:]),
    ])


LAYOUT = """<!doctype html>
<html><head><title>{{ title }}</title></head>
<body><h1 id="title">{{ title }}</h1><p id="summary">{{ summary }}</p>
<ul id="people">{% for p in people %}<li>{{ p }}</li>{% endfor %}</ul>
<main>{{ content | safe }}</main></body></html>
"""


class Page(HTMLParser):
    """The elements and attributes the page has, and the text of <main>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.in_main = 0
        self.main_text: list[str] = []
        self.by_id: dict[str, list[str]] = {}
        self._id_stack: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.in_main += tag == "main"
        self._id_stack.append(dict(attrs).get("id"))

    def handle_endtag(self, tag: str) -> None:
        self.in_main -= tag == "main"
        if self._id_stack:
            self._id_stack.pop()

    def handle_data(self, data: str) -> None:
        if self.in_main:
            self.main_text.append(data)
        for element_id in filter(None, self._id_stack):
            self.by_id.setdefault(element_id, []).append(data)


def build(tmp_path: Path, posts: dict[str, str], engine: str) -> Page:
    site, out = tmp_path / "site", tmp_path / "out"
    (site / "_includes").mkdir(parents=True)
    (site / "_includes" / "post.njk").write_text(LAYOUT)
    for name, text in posts.items():
        (site / name).write_text(text, encoding="utf-8")
    config = tmp_path / "eleventy.config.mjs"
    config.write_text(f'export default function () {{ return {{ markdownTemplateEngine: "{engine}" }}; }}\n')
    result = subprocess.run([str(ELEVENTY), f"--input={site}", f"--output={out}", f"--config={config}"],
                            cwd=SITE, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"Eleventy failed:\n{result.stdout}\n{result.stderr}"
    [built] = [p for p in out.rglob("index.html") if "hostile" in str(p) or len(posts) == 1]
    page = Page()
    page.feed(built.read_text(encoding="utf-8"))
    return page


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("engine", ["liquid", "njk"])
def test_hostile_text_shows_literally_on_an_eleventy_site(tmp_path: Path, engine: str) -> None:
    assert ELEVENTY.exists(), "./run-tests installs Eleventy into tests/site (npm ci)"
    post = hostile_post()
    page = build(tmp_path, {"hostile.md": render_post(post)}, engine)

    main_tags = [tag for tag, _ in page.tags[[t for t, _ in page.tags].index("main") + 1:]]
    assert set(main_tags) <= {"h3", "p", "details", "summary", "strong", "em"}, set(main_tags)
    for tag, attrs in page.tags:
        assert tag not in {"script", "img", "a", "iframe", "b", "i"}, (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not any("javascript:" in (value or "") for value in attrs.values()), (tag, attrs)
    assert main_tags.count("h3") == 2 and main_tags.count("details") == len(HOSTILE) + len(LINE_STARTS)

    text = _flat(" ".join(page.main_text))
    for section in post.sections:  # every string as written: headings, Chinese and English
        assert _flat(section.heading) in text
        for paragraph in section.paragraphs:
            assert _flat(paragraph.translation) in text, paragraph.translation
            assert _flat(paragraph.source) in text, paragraph.source
    # the front matter reaches the layout as data, which Nunjucks escapes
    assert _flat(" ".join(page.by_id["title"])) == post.front_matter.title
    assert _flat(" ".join(page.by_id["summary"])) == post.front_matter.summary
    assert _flat(" ".join(page.by_id["people"])) == "{{ person }}"


def test_the_site_format_fixture_builds_unchanged(tmp_path: Path) -> None:
    """A post with nothing to escape: the site shows its headings, paragraphs and English as written."""
    text = FIXTURE.read_text(encoding="utf-8")
    page = build(tmp_path, {"post.md": text}, "liquid")
    body = text.split("\n---\n", 1)[1]
    shown = _flat(" ".join(page.main_text))
    for heading in re.findall(r"^### (.+)$", body, re.M):
        assert heading in shown
    for english in re.findall(r'<p class="english-text">(.*?)</p>', body):
        assert _flat(html.unescape(english)) in shown
