"""The post format: byte-exact against the real reference post, plus the cases the reference cannot show."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from schemas.artifacts import Paragraph, Section, Translation
from schemas.post import FrontMatter, Post, PostParagraph, PostSection
from workers.errors import PermanentError
from workers.steps.publish import (
    SLUG_MAX_LEN,
    UNTRANSLATED_MARKER,
    build_post,
    post_filename,
    render_post,
)

ROOT = Path(__file__).resolve().parents[1]
# The project's own post in the site's exact format: always checked, so a clone alone catches a format break.
FIXTURE = ROOT / "tests" / "fixtures" / "post-format.md"
# The real post the site took (the team's ../shared folder, beside a checkout): checked when it is there.
REFERENCE = ROOT.parent / "shared" / "reference" / "openai-800m-weekly-users.md"
DETAILS_HEAD = '<details>\n<summary>View/Hide Original English</summary>\n<p class="english-text">'
DETAILS_TAIL = "</p>\n</details>"
CLOSE = b"</details>\n"


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&amp;", "&")


def parse_reference(text: str) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """Parse the reference independently of the renderer: front matter, sections, and a trailing
    Chinese paragraph that has no English (the cut-off one), if any."""
    assert text.startswith("---\n")
    front_text, body = text[4:].split("\n---\n", 1)
    front = yaml.safe_load(front_text)
    assert body.startswith("\n### "), "the body starts with one blank line, then a heading"
    sections: list[dict[str, Any]] = []
    pending: str | None = None
    for block in body[1:].split("\n\n"):
        if block.startswith("### "):
            assert pending is None, f"Chinese paragraph without English before {block!r}"
            sections.append({"heading": block[4:], "paragraphs": []})
        elif block.startswith("<details>"):
            assert pending is not None, "English block without a Chinese paragraph"
            assert block.startswith(DETAILS_HEAD), block
            assert block.rstrip("\n").endswith(DETAILS_TAIL), block
            english = block.rstrip("\n")[len(DETAILS_HEAD) : -len(DETAILS_TAIL)]
            assert "\n" not in english
            sections[-1]["paragraphs"].append({"source": _unescape(english), "translation": pending})
            pending = None
        else:
            assert pending is None, f"two Chinese paragraphs in a row: {block!r}"
            assert "\n" not in block
            pending = block
    return front, sections, pending


def _run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], cwd=ROOT, capture_output=True, timeout=60, check=False
    )


def _front_matter(**overrides: Any) -> FrontMatter:
    values: dict[str, Any] = {
        "area": "tech-insights",
        "category": "technology",
        "companies_orgs": ["OpenAI"],
        "date": "2025-11-28",
        "draft": True,
        "guest": "",
        "insight": "",
        "layout": "post.njk",
        "media_books": [],
        "people": ["Sam Altman"],
        "products_models": [],
        "project": [],
        "series": "",
        "source": "https://www.youtube.com/watch?v=3x0jhpEj_6o",
        "speaker": "a16z",
        "status": "evergreen",
        "summary": "摘要。",
        "tags": ["llm"],
        "title": "标题",
    }
    values.update(overrides)
    return FrontMatter(**values)


def _post(*paragraphs: tuple[str, str], heading: str = "小节") -> Post:
    return Post(
        front_matter=_front_matter(),
        sections=[
            PostSection(
                heading=heading, paragraphs=[PostParagraph(source=s, translation=t) for s, t in paragraphs]
            )
        ],
    )


def _body(post: Post) -> str:
    return render_post(post).split("\n---\n", 1)[1]


# --- the contract ---------------------------------------------------------------------------------


def _format_sample(name: str) -> bytes:
    if name == "fixture":
        return FIXTURE.read_bytes()
    if not REFERENCE.exists():
        pytest.skip(f"{REFERENCE} is absent (it sits beside the team's checkouts); the fixture holds the format")
    return REFERENCE.read_bytes()


SAMPLES = pytest.mark.parametrize("sample", ["fixture", "reference"])


def test_the_samples_show_the_format() -> None:
    """The parser saw everything in our own fixture: as many sections as headings, paragraphs as English."""
    text = FIXTURE.read_bytes()
    front, sections, cut_off = parse_reference(text.decode("utf-8"))
    assert len(sections) == text.count(b"\n### ") == 3
    assert sum(len(s["paragraphs"]) for s in sections) == text.count(b"<details>") == 5
    assert cut_off is None and text.endswith(CLOSE)
    assert "\n" in yaml.safe_dump(front["summary"]).strip(), "the summary is long enough to fold"
    assert any("<" in p["source"] and "&" in p["source"] for s in sections for p in s["paragraphs"])


def test_reference_post_is_the_real_one() -> None:
    reference = _format_sample("reference")
    _, sections, cut_off = parse_reference(reference.decode("utf-8"))
    assert len(sections) == reference.count(b"\n### ") == 7
    assert sum(len(s["paragraphs"]) for s in sections) == reference.count(b"<details>") > 100
    assert cut_off is not None and not reference.endswith(b"\n"), "the reference's cut-off tail moved"
    expected = reference[: reference.rindex(CLOSE) + len(CLOSE)]
    assert reference[len(expected) :] == b"\n" + cut_off.encode("utf-8"), "only the cut-off paragraph dropped"


@SAMPLES
def test_cli_renders_the_post_byte_for_byte(tmp_path: Path, sample: str) -> None:
    text = _format_sample(sample)
    front, sections, _ = parse_reference(text.decode("utf-8"))
    expected = text[: text.rindex(CLOSE) + len(CLOSE)]  # the reference's cut-off tail is a defect, not format

    post_json = tmp_path / "post.json"
    post_json.write_text(json.dumps({"front_matter": front, "sections": sections}, ensure_ascii=False))
    result = _run_cli("render-post", str(post_json))

    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    assert result.stdout == expected  # bytes: any single changed byte fails


@SAMPLES
def test_render_post_in_process_matches_the_post(sample: str) -> None:
    """Same contract without a subprocess, so a failure shows a readable diff."""
    text = _format_sample(sample).decode("utf-8")
    front, sections, _ = parse_reference(text)
    post = Post.model_validate({"front_matter": front, "sections": sections})
    expected = text[: text.rindex("</details>\n") + len("</details>\n")]
    assert render_post(post) == expected


# --- cases the reference cannot show --------------------------------------------------------------


def test_english_is_escaped_inside_the_html_block() -> None:
    body = _body(_post(("Use <b>bold</b> at AT&T >> yes", "中文")))
    assert '<p class="english-text">Use &lt;b>bold&lt;/b> at AT&amp;T >> yes</p>' in body
    assert "<b>" not in body


def test_already_escaped_text_is_escaped_again() -> None:
    """The source is plain text, so a literal `&lt;` must survive as text, not become `<`."""
    assert '<p class="english-text">a &amp;lt; b</p>' in _body(_post(("a &lt; b", "中文")))


def test_render_is_deterministic() -> None:
    post = _post(("One.", "一。"), ("Two.", "二。"))
    first = render_post(post)
    assert render_post(post) == first
    assert render_post(Post.model_validate_json(post.model_dump_json())) == first


def test_body_layout() -> None:
    body = _body(_post(("One.", "一。")))
    assert body == (
        "\n### 小节\n\n一。\n\n"
        '<details>\n<summary>View/Hide Original English</summary>\n<p class="english-text">One.</p>\n'
        "</details>\n"
    )


def test_empty_translation_gets_a_visible_marker() -> None:
    body = _body(_post(("Said something.", ""), ("Again.", " \n ")))
    assert body.count(f"\n\n{UNTRANSLATED_MARKER}\n\n<details>") == 2
    assert "\n\n\n" not in body


def test_newlines_inside_a_paragraph_are_collapsed() -> None:
    body = _body(_post(("first line\n\nsecond  line\r\nthird", "第一行\n\n 第二行\n"), heading="标题\n续"))
    assert "### 标题 续\n" in body
    assert "\n\n第一行 第二行\n\n<details>" in body
    assert '<p class="english-text">first line second  line third</p>' in body  # double space kept
    assert "\n\n\n" not in body


def test_post_without_sections_is_front_matter_only() -> None:
    text = render_post(Post(front_matter=_front_matter(), sections=[]))
    assert text.startswith("---\n") and text.endswith("\ntitle: 标题\n---\n")


def test_build_post_maps_source_to_english_and_drops_empty_sections() -> None:
    def para(i: int, source: str, translation: str) -> Paragraph:
        return Paragraph(id=f"p{i:04d}", start=i, end=i + 1, source=source, translation=translation)

    translation = Translation(
        video_id="abc",
        model="m",
        sections=[
            Section(heading="空", paragraphs=[]),
            Section(heading="一", paragraphs=[para(0, "Hello.", "你好。"), para(1, " ", "")]),
            Section(heading="全空", paragraphs=[para(2, "", " ")]),
        ],
    )
    post = build_post(_front_matter(), translation)
    assert post.sections == [
        PostSection(heading="一", paragraphs=[PostParagraph(source="Hello.", translation="你好。")])
    ]
    assert post.front_matter == _front_matter()


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("How OpenAI Serves 800M Weekly Users", "2025-11-28-how-openai-serves-800m-weekly-users.md"),
        ("OpenAI's GPT-5: What's New?! (Full Talk)", "2025-11-28-openais-gpt-5-whats-new-full-talk.md"),
        ("Café — Déjà vu über 深度学习", "2025-11-28-cafe-deja-vu-uber.md"),
        ("深度学习的未来", "2025-11-28-3x0jhpEj_6o.md"),
        ("！？——", "2025-11-28-3x0jhpEj_6o.md"),
    ],
)
def test_post_filename(title: str, expected: str) -> None:
    assert post_filename(_front_matter(), "3x0jhpEj_6o", title) == expected


def test_post_filename_caps_long_titles_at_a_word_boundary() -> None:
    title = "The Quick Brown Fox Jumps Over The Lazy Dog While Reinforcement Learning Scales Everything"
    name = post_filename(_front_matter(), "id", title)
    slug = name.removeprefix("2025-11-28-").removesuffix(".md")
    assert len(slug) <= SLUG_MAX_LEN
    assert slug == "the-quick-brown-fox-jumps-over-the-lazy-dog-while"
    assert not slug.endswith("-")


def test_post_filename_cuts_a_single_overlong_word() -> None:
    slug = post_filename(_front_matter(), "id", "x" * 100).removeprefix("2025-11-28-").removesuffix(".md")
    assert slug == "x" * SLUG_MAX_LEN


def test_post_filename_rejects_a_date_that_is_not_iso() -> None:
    with pytest.raises(PermanentError, match="YYYY-MM-DD"):
        post_filename(_front_matter(date="2025/11/28"), "id", "Title")


# --- bad input ------------------------------------------------------------------------------------


def test_front_matter_rejects_an_unknown_key() -> None:
    values = _front_matter().model_dump()
    with pytest.raises(ValidationError, match=r"Extra inputs are not permitted"):
        FrontMatter(**values, author="someone")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[]", "(top level)"),
        (b'{"front_matter": {}, "sections": []}', "front_matter."),
    ],
)
def test_render_post_cli_reports_a_bad_file_in_one_line(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "post.json"
    if content is not None:
        path.write_bytes(content)
    result = _run_cli("render-post", str(path))
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode()
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"pressroom render-post: {path}: "), err
    assert problem in err and " — " in err, err


def test_render_post_cli_reports_an_unknown_front_matter_key(tmp_path: Path) -> None:
    front = _front_matter().model_dump()
    front["author"] = "someone"
    path = tmp_path / "post.json"
    path.write_text(json.dumps({"front_matter": front, "sections": []}))
    result = _run_cli("render-post", str(path))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "front_matter.author" in err, err


# --- text is always text (the site build is tests/test_site.py) ------------------------------------------
@pytest.mark.parametrize(("translation", "written"), [
    ("# 不是标题", "\\# 不是标题"),
    ("- 不是列表", "\\- 不是列表"),
    ("1. 也不是列表", "1\\. 也不是列表"),
    ("> 不是引用", "\\> 不是引用"),
    ("---", "\\---"),
    ("{{ user.name }} 与 {% raw %}", "&#123;&#123; user.name &#125;&#125; 与 &#123;% raw %&#125;"),
    ("<script>x</script> & [链接](javascript:x)", "&lt;script>x&lt;/script> &amp; \\[链接\\](javascript:x)"),
    ("通过 **RL**，2026 年 3.5 版本 -1 度", "通过 **RL**，2026 年 3.5 版本 -1 度"),  # nothing to escape
])
def test_a_translation_is_written_so_it_shows_as_itself(translation: str, written: str) -> None:
    body = _body(_post(("English.", translation)))
    assert f"\n\n{written}\n\n<details>" in body


def test_template_delimiters_in_the_english_and_the_heading_are_inert() -> None:
    body = _body(_post(("{{ a }} {% b %} {# c #} </details>", "中文"), heading="{{ h }} # 标题"))
    assert "### &#123;&#123; h &#125;&#125; \\# 标题\n" in body
    english = "&#123;&#123; a &#125;&#125; &#123;% b %&#125; &#123;# c #&#125; &lt;/details>"
    assert f'<p class="english-text">{english}</p>' in body
    assert "{" not in body and "}" not in body
