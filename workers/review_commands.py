"""`pressroom review list|show|approve`: an editor's work from the terminal (through the dashboard's API
when PRESSROOM_DASHBOARD_URL is set, so its auth and audit log apply; else straight to the run state)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workers.errors import ConfigError

CLI_WHO = "operator (cli)"


def _app() -> tuple[Any, Any]:
    from workers.app import app_from_env

    app, rt = app_from_env()
    if rt.settings.embedded and not rt.settings.dashboard_url:
        raise ConfigError("review reads run state from Redis: set PRESSROOM_BROKER_URL (or PRESSROOM_DASHBOARD_URL)")
    return app, rt


def _client(rt: Any) -> Any:
    from workers.cli import dashboard_client

    return dashboard_client(rt)


def _list(args: argparse.Namespace) -> int:
    from workers.dashboard.reviews import review_list

    _, rt = _app()
    client = _client(rt)
    for post in client.reviews(args.limit) if client else review_list(rt, args.limit):
        print(f"{post['run_id']}  {post['review']:<8}  {post['video_id']}  {post.get('title') or ''}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from workers.dashboard.reviews import review_detail

    _, rt = _app()
    client = _client(rt)
    post = client.review(args.run) if client else review_detail(rt, args.run)
    front = post["front_matter"]
    state = f"approved by {post['approved_by']}" if post["approved"] else "draft"
    print(f"{front['title']}  [{state}]  run {post['run_id']}  video {post['video_id']}")
    print(f"summary: {front['summary']}\ntags: {', '.join(front['tags'])}")
    for section in post["sections"]:
        print(f"\n### {section['heading']}")
        for p in section["paragraphs"]:
            marks = "".join(m for m, on in ((" [edited]", p["edited_by"]), (" [English changed]", p["stale"]),
                                            (f" [{p['problem']}]", p["problem"])) if on)
            print(f"\n{p['id']}{marks}\n  {p['chinese']}\n  {p['english']}")
    return 0


def _approve(args: argparse.Namespace) -> int:
    from workers import review

    app, rt = _app()
    client = _client(rt)
    if client:
        client.approve(args.run)
    else:
        review.approve(app, rt, args.run, CLI_WHO)
    print(f"run {args.run}: approved; publishing with draft: false", file=sys.stderr)
    return 0


def add_review_commands(sub: Any) -> None:
    p = sub.add_parser("review", help="posts waiting for an editor: list, show, approve")
    rsub = p.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    r = rsub.add_parser("list", help="finished posts, newest first, with their review state")
    from workers.watch.commands import at_least

    r.add_argument("--limit", type=at_least(1), default=50)
    r.set_defaults(func=_list)
    r = rsub.add_parser("show", help="a post's Chinese beside its English, paragraph by paragraph")
    r.add_argument("run")
    r.set_defaults(func=_show)
    r = rsub.add_parser("approve", help="approve a post: draft: false, published to the site's targets")
    r.add_argument("run")
    r.set_defaults(func=_approve)
