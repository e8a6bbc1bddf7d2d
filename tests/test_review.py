"""Editorial review: an editor's paragraph and field edits are applied to the post by paragraph id, kept
across a re-run and flagged when the English under them changed; approving publishes with draft: false."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.artifacts import Paragraph, Section, Translation
from schemas.pipeline import Step
from schemas.post import FrontMatter
from schemas.review import Review
from tests.conftest import make_audio
from tests.pipeline_checks import chinese_paragraphs
from workers import review
from workers.app import create_app
from workers.dashboard.reviews import post_of, review_detail, review_list
from workers.embedded import embedded_worker
from workers.errors import PermanentError
from workers.follow import follow_run
from workers.settings import load_settings
from workers.submit import resolve_source, submit


def _translation(*paragraphs: tuple[str, str, str]) -> Translation:
    return Translation(video_id="v", model="m", sections=[Section(heading="一", paragraphs=[
        Paragraph(id=pid, start=0, end=1, source=en, translation=zh) for pid, en, zh in paragraphs])])


FRONT = FrontMatter(area="a", category="c", companies_orgs=[], date="2026-01-01", draft=True, guest="", insight="",
                    layout="post.njk", media_books=[], people=[], products_models=[], project=[], series="",
                    source="s", speaker="x", status="evergreen", summary="机器摘要", tags=["llm"], title="机器标题")


def test_edits_apply_by_paragraph_id_and_go_stale_when_the_english_changes() -> None:
    doc = Review(video_id="v")
    doc.paragraphs["p0002"] = review.ParagraphEdit(translation="编辑的译文", source="Two.", by="ed", at=1.0)
    doc.fields["title"] = review.FieldEdit(value="编辑的标题", by="ed", at=1.0)
    first = review.apply(doc, _translation(("p0001", "One.", "一"), ("p0002", "Two.", "二")), FRONT)
    assert [p.translation for p in first.translation.paragraphs()] == ["一", "编辑的译文"]
    assert first.front_matter.title == "编辑的标题" and first.front_matter.draft and first.stale == []
    # a re-run transcribed the talk again: the second paragraph's English is different now
    again = review.apply(doc, _translation(("p0001", "One.", "一"), ("p0002", "Two, said again.", "二二")), FRONT)
    assert [p.translation for p in again.translation.paragraphs()] == ["一", "编辑的译文"] and again.stale == ["p0002"]
    doc.approved = True
    assert review.apply(doc, _translation(("p0001", "One.", "一")), FRONT).front_matter.draft is False


def test_review_edit_and_approve_through_a_real_run(tmp_path: Path, simulator: str) -> None:
    app = create_app(load_settings(data_dir=tmp_path / "data", transcription_base_url=simulator,
                                   llm_base_url=simulator))
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "talk.wav", 30)), rt)
    glossary = tmp_path / "names.yaml"
    glossary.write_text("terms: [{term: Quora, zh: 知乎问答}]\n")
    with embedded_worker(app, 2):
        run_id = submit(app, rt, source, video_id, glossary=glossary).run_id
        assert follow_run(rt.state, run_id, timeout=120, out=io.StringIO()).status == "succeeded"
        detail = review_detail(rt, run_id)
        paragraphs = [p for s in detail["sections"] for p in s["paragraphs"]]
        assert {tuple(p["terms"]) for p in paragraphs if "Quora" in p["english"]} == {("Quora → 知乎问答",)}
        assert all(p["terms"] == [] for p in paragraphs if "Quora" not in p["english"])
        assert detail["front_matter"]["draft"] is True and not detail["approved"]
        first = detail["sections"][0]["paragraphs"][0]
        assert first["english"] and first["chinese"].startswith("【模拟】") and first["edited_by"] is None
        assert [p["review"] for p in review_list(rt)] == ["draft"]

        _, translation, _, _ = post_of(rt, run_id)
        review.edit_paragraph(rt, translation, first["id"], "编辑改好的第一段。", "editor")
        review.edit_field(rt, video_id, "title", "编辑改好的标题", "editor")
        review.edit_field(rt, video_id, "tags", "AI Safety, llm,  llm", "editor")
        with pytest.raises(PermanentError, match="no paragraph 'p9999'"):
            review.edit_paragraph(rt, translation, "p9999", "x", "editor")
        with pytest.raises(PermanentError, match="cannot be edited here"):
            review.edit_field(rt, video_id, "draft", "false", "editor")
        assert review.approve(app, rt, run_id, "editor") is Step.publish
        done = follow_run(rt.state, run_id, timeout=60, out=io.StringIO())
    assert done.status == "succeeded" and done.generation == 1
    post = rt.store.get_bytes(rt.state.events(run_id)[-1].artifacts["post"]).decode()
    front: dict[str, Any] = yaml.safe_load(post.split("---\n")[1])
    assert front["draft"] is False and front["title"] == "编辑改好的标题" and front["tags"] == ["ai-safety", "llm"]
    assert chinese_paragraphs(post)[0] == "编辑改好的第一段。"
    trail = [(e.kind, getattr(e, "step", None), getattr(e, "by", None)) for e in rt.state.events(run_id)]
    assert trail[-2:] == [("run.retried", "publish", "editor"), ("step.succeeded", "publish", None)]
    assert [p["review"] for p in review_list(rt)] == ["approved"]
    assert review_detail(rt, run_id)["sections"][0]["paragraphs"][0]["edited_by"] == "editor"


def test_the_review_api_edits_and_approves_with_the_token_and_audits_it(tmp_path: Path, simulator: str,
                                                                        clean_redis: Any, redis_url: str) -> None:
    import httpx

    from tests.harness import serve_asgi
    from workers.dashboard.api import create_api

    token = "editor-token-0123456789"
    app = create_app(load_settings(broker_url=redis_url, storage_url=str(tmp_path / "store"),
                                   transcription_base_url=simulator, llm_base_url=simulator,
                                   dashboard_token=token))
    rt = app.pressroom
    source, video_id = resolve_source(str(make_audio(tmp_path / "talk.wav", 20)), rt)
    auth = {"Authorization": f"Bearer {token}"}
    with embedded_worker(app, 2), serve_asgi(create_api(app)) as base, httpx.Client(base_url=base, timeout=30) as api:
        run_id = submit(app, rt, source, video_id).run_id
        assert follow_run(rt.state, run_id, timeout=120, out=io.StringIO()).status == "succeeded"
        shown = api.get(f"/api/runs/{run_id}/review")
        assert shown.status_code == 200, shown.text
        pid = shown.json()["sections"][0]["paragraphs"][0]["id"]
        path = f"/api/runs/{run_id}/review/paragraphs/{pid}"
        assert api.post(path, json={"translation": "匿名的修改"}).status_code == 401  # no token: nothing changes
        edited = api.post(path, json={"translation": "编辑的修改。"}, headers=auth)
        assert edited.status_code == 200, edited.text
        first = edited.json()["sections"][0]["paragraphs"][0]
        assert (first["chinese"], first["edited_by"]) == ("编辑的修改。", "operator")
        assert api.post(f"/api/runs/{run_id}/review/fields/draft", json={"value": "x"}, headers=auth).status_code == 422
        assert api.post(f"/api/runs/{run_id}/approve", headers=auth).json()["approved"] is True
        assert follow_run(rt.state, run_id, timeout=60, out=io.StringIO()).generation == 1
        audit = api.get("/api/audit", headers=auth).json()["entries"]
        assert [(e["who"], e["what"]) for e in audit][:2] == [("operator", "approve"),
                                                              ("operator", f"edit paragraph {pid}")]
        assert api.get("/api/reviews").json()["posts"][0]["review"] == "approved"
    post = rt.store.get_bytes(rt.state.events(run_id)[-1].artifacts["post"]).decode()
    assert "draft: false" in post and "编辑的修改。" in post
