"""The `pressroom` command."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.runtime import Runtime


def _render_post(args: argparse.Namespace) -> int:
    """Render a Post JSON file; a bad file gets one line on stderr and exit 2, not a traceback."""
    from pydantic import ValidationError

    from schemas.post import Post
    from workers.steps.publish import render_post

    def fail(problem: str, fix: str) -> int:
        print(f"pressroom render-post: {args.file}: {' '.join(problem.split())} — {fix}", file=sys.stderr)
        return 2

    try:
        raw = Path(args.file).read_bytes()
    except FileNotFoundError:
        return fail("no such file", "pass the path of an existing Post JSON file")
    except OSError as exc:
        return fail(f"cannot read: {exc.strerror or exc}", "pass a readable Post JSON file")
    try:
        post = Post.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            detail = first["msg"].removeprefix("Invalid JSON: ")
            return fail(f"not valid JSON ({detail})", "fix the JSON syntax (it must be UTF-8)")
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return fail(
            f"{where}: {first['msg']}{more}",
            "make it match schemas/post.py: {front_matter: its 19 keys, sections: [{heading, paragraphs: "
            "[{source, translation}]}]}",
        )
    sys.stdout.buffer.write(render_post(post).encode())
    return 0


def _fail(message: str) -> int:
    print(f"pressroom: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _app(*, providers: bool = False) -> tuple[Any, Runtime]:
    from workers.app import app_from_env

    return app_from_env(providers=providers)


def _run(args: argparse.Namespace) -> int:
    """The main job: one source in, one post out, on the embedded default unless a broker is set."""
    from workers.embedded import embedded_worker
    from workers.follow import follow_run
    from workers.storage.local import write_atomic
    from workers.submit import resolve_source, submit

    app, rt = _app(providers=True)
    source, video_id = resolve_source(args.source, rt)
    mode = "embedded" if rt.settings.embedded else f"broker {rt.settings.broker_url}"
    with embedded_worker(app, rt.settings.embedded_concurrency) if rt.settings.embedded else nullcontext():
        spec = submit(app, rt, source, video_id, glossary=args.glossary)
        print(f"run {spec.run_id}: {args.source} ({mode}, store {rt.settings.store_url})", file=sys.stderr)
        run = follow_run(rt.state, spec.run_id)
    if run.get("status") != "succeeded":
        print(f"pressroom: run {spec.run_id} failed — {run.get('error', 'unknown error')}", file=sys.stderr)
        return 1
    post_key = rt.state.events(spec.run_id)[-1].artifacts["post"]
    out_dir = Path(args.out or rt.settings.out_dir or "out")
    path = out_dir / Path(post_key).name
    write_atomic(path, rt.store.get_bytes(post_key))
    print(path)
    return 0


def _submit(args: argparse.Namespace) -> int:
    from workers.submit import resolve_source, submit

    app, rt = _app()
    if rt.settings.embedded:
        return _fail("submit needs PRESSROOM_BROKER_URL (redis://…) and workers; use `pressroom run` alone")
    for arg in args.sources:
        source, video_id = resolve_source(arg, rt)
        print(submit(app, rt, source, video_id, glossary=args.glossary).run_id)
    return 0


def _status(args: argparse.Namespace) -> int:
    from schemas.events import Step
    from workers.follow import describe_step

    _, rt = _app()
    run = rt.state.run(args.run)
    if not run:
        return _fail(f"no run {args.run!r} in {rt.settings.state_url or 'this process'}: check the run id")
    if args.json:
        events = [e.model_dump(mode="json") for e in rt.state.events(args.run)]
        print(json.dumps({"run": run, "events": events}, indent=1, ensure_ascii=False))
        return 0
    print(f"run {args.run}: {run.get('status')}  video {run.get('video_id')}")
    for step in Step:
        print(f"  {describe_step(run, step)}")
    for event in rt.state.events(args.run):
        print(f"  {event.at:%H:%M:%S} {event.kind} {getattr(event, 'step', '')}")
    return 0


def _client(rt: Runtime) -> Any:
    """The dashboard API client when PRESSROOM_DASHBOARD_URL is set (actions then get its auth and audit)."""
    from workers.dashboard.client import DashboardClient

    s = rt.settings
    if not s.dashboard_url:
        return None
    return DashboardClient(s.dashboard_url, s.dashboard_token.get_secret_value() if s.dashboard_token else None)


def _print_run(run: dict[str, Any]) -> None:
    problem = run.get("error") or run.get("skipped") or ""
    print(f"{run.get('id')}  {run.get('status') or '?':<9}  {run.get('video_id') or ''}  {problem}"[:200])


def _runs(args: argparse.Namespace) -> int:
    from workers import keys

    _, rt = _app()
    if client := _client(rt):
        for run in client.runs(args.status, args.limit):
            _print_run(run)
        return 0
    if rt.settings.embedded:
        return _fail("runs are kept in Redis: set PRESSROOM_BROKER_URL (embedded runs live only in their process)")
    if args.restore:
        from workers.operations import restore_runs

        print(f"restored {restore_runs(rt)} runs from their manifests in {rt.settings.store_url}", file=sys.stderr)
    ids = list(reversed(rt.state.kv.zrange(keys.runs_index_key(), 0, -1)))
    shown = 0
    for run_id in ids:
        run = rt.state.run(run_id)
        if args.status and run.get("status") != args.status:
            continue
        _print_run({"id": run_id, **run})
        shown += 1
        if shown >= args.limit:
            break
    return 0


def _retry(args: argparse.Namespace) -> int:
    from schemas.events import Step
    from workers import keys
    from workers.operations import retry, retry_all_failed

    app, rt = _app()
    if client := _client(rt):
        if args.all_failed:
            print("\n".join(client.retry_failed()))
        elif args.run:
            result = client.retry(args.run, args.from_step)
            print(f"run {args.run}: re-running from {result['from_step']}")
        else:
            return _fail("name a run to retry, or pass --all-failed")
        return 0
    if rt.settings.embedded:
        return _fail("retry needs PRESSROOM_BROKER_URL (redis://…) and workers")
    if args.all_failed:
        ids = rt.state.kv.zrange(keys.runs_index_key(), 0, -1)
        for run_id in retry_all_failed(app, rt, list(ids)):
            print(run_id)
        return 0
    if not args.run:
        return _fail("name a run to retry, or pass --all-failed")
    step = retry(app, rt, args.run, Step(args.from_step) if args.from_step else None)
    print(f"run {args.run}: re-running from {step}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from workers.operations import cancel

    _, rt = _app()
    if client := _client(rt):
        client.cancel(args.run)
    else:
        cancel(rt, args.run)
    print(f"run {args.run}: cancelled")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard API; without a token it is read-only and stays on the loopback interface."""
    import ipaddress

    app, rt = _app()
    if rt.settings.embedded:
        return _fail("the dashboard reads run state from Redis: set PRESSROOM_BROKER_URL=redis://…")
    try:
        loopback = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and rt.settings.dashboard_token is None:
        return _fail(f"refusing to serve on {args.host} without PRESSROOM_DASHBOARD_TOKEN: set it, or use 127.0.0.1")
    import uvicorn

    from workers.dashboard.api import create_api

    uvicorn.run(create_api(app), host=args.host, port=args.port, log_level="info")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from schemas.events import Step
    from workers import keys

    app, rt = _app(providers=bool({"transcribe", "translate", "tag"} & set(args.queues.split(","))))
    if rt.settings.embedded:
        return _fail("a worker needs PRESSROOM_BROKER_URL=redis://…; `pressroom run` works without one")
    names = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in Step.__members__ and q != "watch"]
    if unknown:
        return _fail(f"unknown queue {unknown[0]!r}: choose from {', '.join(Step.__members__)}, watch")
    queues = ",".join(keys.WATCH_QUEUE if q == "watch" else keys.QUEUES[Step(q)] for q in names)
    argv = ["worker", "-Q", queues, "-n", args.name or f"{'+'.join(names)}@%h", "--loglevel", args.loglevel,
            "-c", str(args.concurrency or rt.settings.worker_concurrency), "-P", args.pool]
    app.worker_main(argv)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pressroom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="turn one YouTube URL or media file into a post (embedded by default)")
    p.add_argument("source", help="YouTube URL or local audio/video file")
    p.add_argument("--out", help="directory the post is written to (default: PRESSROOM_OUT_DIR or ./out)")
    p.add_argument("--glossary", type=Path, help="YAML glossary of the channel's names (PRESSROOM_GLOSSARY_FILE)")
    p.set_defaults(func=_run)

    p = sub.add_parser("render-post", help="render a post given as JSON to markdown on stdout")
    p.add_argument("file")
    p.set_defaults(func=_render_post)

    p = sub.add_parser("submit", help="submit sources to the distributed pipeline; prints run ids")
    p.add_argument("sources", nargs="+")
    p.add_argument("--glossary", type=Path, help="YAML glossary of the channel's names (PRESSROOM_GLOSSARY_FILE)")
    p.set_defaults(func=_submit)

    p = sub.add_parser("status", help="show a run's steps and events")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)

    p = sub.add_parser("runs", help="recent runs, newest first")
    p.add_argument("--status", choices=["queued", "running", "retrying", "succeeded", "failed", "skipped",
                                        "cancelled"])
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--restore", action="store_true", help="first rebuild lost run state from stored manifests")
    p.set_defaults(func=_runs)

    p = sub.add_parser("retry", help="re-run a run from its failed step (or --from STEP); or --all-failed")
    p.add_argument("run", nargs="?")
    p.add_argument("--from", dest="from_step", choices=["download", "transcribe", "translate", "tag", "publish"])
    p.add_argument("--all-failed", action="store_true")
    p.set_defaults(func=_retry)

    p = sub.add_parser("cancel", help="cancel a queued or running run")
    p.add_argument("run")
    p.set_defaults(func=_cancel)

    p = sub.add_parser("dashboard", help="serve the retry dashboard's JSON API (/api, OpenAPI at /api/openapi.json)")
    p.add_argument("--host", default="127.0.0.1", help="other than loopback only with PRESSROOM_DASHBOARD_TOKEN")
    p.add_argument("--port", type=int, default=8090)
    p.set_defaults(func=_dashboard)

    p = sub.add_parser("worker", help="work the given step queues")
    p.add_argument("--queues", default="download,transcribe,translate,tag,publish")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    p.add_argument("--name", help="node name, unique per worker process (default: <queues>@<host>)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=_worker)

    from workers.watch.commands import add_watch_commands

    add_watch_commands(sub)
    # `simulate` is handed to the simulator's own parser (see main); listed here for --help
    sub.add_parser("simulate", help="serve an OpenAI-compatible simulator on 127.0.0.1 (`simulate --help`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from workers.errors import PressroomError

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        from workers.providers.simulator import main as simulator_main

        simulator_main(argv[1:], prog="pressroom simulate")
        return 0
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PressroomError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
