"""The `pressroom` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _render_post(args: argparse.Namespace) -> int:
    from schemas.post import Post
    from workers.steps.publish import render_post

    post = Post.model_validate_json(Path(args.file).read_bytes())
    sys.stdout.buffer.write(render_post(post).encode())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pressroom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render-post", help="render a post given as JSON to markdown on stdout")
    p.add_argument("file")
    p.set_defaults(func=_render_post)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
