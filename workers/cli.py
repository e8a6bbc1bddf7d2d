"""The `pressroom` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from schemas.pipeline import PIPELINE, RunStatus
from workers.errors import redact

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
    if problem := _providers_unreachable(rt):
        return _fail(problem)
    source, video_id = resolve_source(args.source, rt)
    mode = "embedded" if rt.settings.embedded else f"broker {redact(rt.settings.broker_url or '')}"
    with embedded_worker(app, rt.settings.embedded_concurrency) if rt.settings.embedded else nullcontext():
        spec = submit(app, rt, source, video_id, glossary=args.glossary)
        print(f"run {spec.run_id}: {args.source} ({mode}, store {rt.settings.store_url})", file=sys.stderr)
        run = follow_run(rt.state, spec.run_id)
    if run.status is not RunStatus.succeeded:
        print(f"pressroom: run {spec.run_id} {run.status} — {run.problem or 'no reason recorded'}", file=sys.stderr)
        return 1
    post_key = _post_key(rt, spec.run_id)
    assert post_key is not None, "a succeeded run has published its post"
    out_dir = Path(args.out or rt.settings.out_dir or "out")
    path = out_dir / Path(post_key).name
    try:
        write_atomic(path, rt.store.get_bytes(post_key))
    except OSError as exc:
        return _fail(f"cannot write the post to {path} ({exc.strerror or exc}); it is in the store at "
                     f"{rt.store.where(post_key)}: choose a writable --out")
    print(path)
    return 0


def _providers_unreachable(rt: Runtime) -> str | None:
    """A provider that is not running is one line before the run, not retries for minutes during it."""
    from workers.faults import unreachable

    s = rt.settings
    for name, (url, _) in (("TRANSCRIPTION", s.transcription_endpoint()), ("LLM", s.llm_endpoint())):
        if why := unreachable(url):
            return (f"cannot reach the {name.lower().replace('llm', 'LLM')} server at {url} ({why}): start it "
                    f"(or `pressroom simulate` to rehearse) or fix PRESSROOM_{name}_BASE_URL")
    return None


def _post_key(rt: Runtime, run_id: str) -> str | None:
    """The post's key in the store, from the run's publish event."""
    for event in reversed(rt.state.events(run_id)):
        if post := event.artifacts.get("post"):
            return post
    return None


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
    from workers.follow import describe_step

    _, rt = _app()
    if rt.settings.embedded:
        return _fail("status reads run state from Redis: set PRESSROOM_BROKER_URL (a `pressroom run` without one "
                     "prints its own progress and the post's path)")
    run = rt.state.view(args.run)
    if run is None:
        return _fail(f"no run {args.run!r} in {redact(rt.settings.state_url or '')}: check the run id")
    events = rt.state.events(args.run)
    post_key = _post_key(rt, args.run)
    post = rt.store.where(post_key) if post_key else None
    if args.json:
        dumped = [e.model_dump(mode="json") for e in events]
        print(json.dumps({"run": run.model_dump(mode="json"), "post": post, "events": dumped}, indent=1,
                         ensure_ascii=False))
        return 0
    print(f"run {args.run}: {run.status}  video {run.video_id}" + (f"  stalled: {run.stalled}" if run.stalled else ""))
    for step in run.steps:
        print(f"  {describe_step(step)}")
    for event in events:
        print(f"  {event.at:%H:%M:%S} {event.kind} {getattr(event, 'step', '')}")
    if post:
        print(f"post: {post}")
    return 0


def dashboard_client(rt: Runtime) -> Any:
    """The dashboard API client when PRESSROOM_DASHBOARD_URL is set (actions then get its auth and audit)."""
    from workers.dashboard.client import DashboardClient

    s = rt.settings
    if not s.dashboard_url:
        return None
    return DashboardClient(s.dashboard_url, s.dashboard_token.get_secret_value() if s.dashboard_token else None)


def _print_run(run_id: str, status: str, video_id: str | None, problem: str | None) -> None:
    print(f"{run_id}  {status:<9}  {video_id or ''}  {problem or ''}"[:200])


def _runs(args: argparse.Namespace) -> int:
    from workers import keys

    _, rt = _app()
    if client := dashboard_client(rt):
        for run in client.runs(args.status, args.limit):
            _print_run(run["id"], run["status"], run.get("video_id"), run.get("error") or run.get("stalled"))
        return 0
    if rt.settings.embedded:
        return _fail("runs are kept in Redis: set PRESSROOM_BROKER_URL (embedded runs live only in their process)")
    if args.restore:
        from workers.operations import restore_runs

        print(f"restored {restore_runs(rt)} runs from their manifests in {rt.settings.store_url}", file=sys.stderr)
    ids = list(reversed(rt.state.kv.zrange(keys.runs_index_key(), 0, -1)))
    shown = 0
    for run_id in ids:
        run = rt.state.view(run_id)
        if run is None or (args.status and run.status != args.status):
            continue
        _print_run(run_id, run.status, run.video_id, run.problem)
        shown += 1
        if shown >= args.limit:
            break
    return 0


def _retry(args: argparse.Namespace) -> int:
    from schemas.events import Step
    from workers import keys
    from workers.operations import retry, retry_all_failed

    app, rt = _app()
    if client := dashboard_client(rt):
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
    if client := dashboard_client(rt):
        client.cancel(args.run)
    else:
        cancel(rt, args.run)
    print(f"run {args.run}: cancelled")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    """Find the runs nothing carries on any more and (unless --dry-run) send their current step again."""
    from workers.reconcile import reconcile

    app, rt = _app()
    if rt.settings.embedded:
        return _fail("reconcile inspects the broker: set PRESSROOM_BROKER_URL=redis://… (embedded runs end with "
                     "their process)")
    found = reconcile(app, rt, dry_run=args.dry_run)
    for stall, sent in found:
        action = "re-driven" if sent else ("would re-drive" if args.dry_run else "no input event to re-send")
        print(f"{stall.run_id}  {stall.step}  {action}: {stall.reason}")
    print(f"{len(found)} stalled run(s)" + (" (dry run: nothing sent)" if args.dry_run else ""), file=sys.stderr)
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
    check_services(rt)
    import uvicorn

    from workers.dashboard.api import create_api

    # SIGTERM ends it: the queue gatherer stops with the lifespan, and requests still open after 3 s (a client
    # stalled mid-upload, say) are cut rather than waited for
    uvicorn.run(create_api(app), host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=3)
    return 0


def check_services(rt: Runtime) -> None:
    """Touch Redis and the object store once, so a server that cannot work says so now, not per request."""
    from workers import keys

    rt.state.kv.zrange(keys.runs_index_key(), 0, 0)
    next(iter(rt.store.list("runs/")), None)


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


class _Parser(argparse.ArgumentParser):
    """A usage mistake is one line naming it, and where to read the options (not the whole usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from workers.watch.commands import at_least

    parser = _Parser(
        prog="pressroom", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="pressroom COMMAND [options]    (pressroom COMMAND --help for its options)",
        description="Turns English talks on YouTube into bilingual Chinese blog posts.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands", prog="pressroom",
                                help=argparse.SUPPRESS)
    p = sub.add_parser("run", help="turn one YouTube URL or media file into a post (the main job)")
    p.add_argument("source", help="YouTube URL or local audio/video file")
    p.add_argument("--out", help="directory the post is written to (default: PRESSROOM_OUT_DIR or ./out)")
    p.add_argument("--glossary", type=Path, help="YAML glossary of the channel's names (PRESSROOM_GLOSSARY_FILE)")
    p.set_defaults(func=_run)

    # `simulate` is handed to the simulator's own parser (see main); listed here for the help
    sub.add_parser("simulate", help="serve an OpenAI-compatible simulator, to rehearse offline")

    p = sub.add_parser("render-post", help="render a post given as JSON to the site's markdown")
    p.add_argument("file")
    p.set_defaults(func=_render_post)

    p = sub.add_parser("submit", help="submit sources to the workers (distributed mode); prints run ids")
    p.add_argument("sources", nargs="+")
    p.add_argument("--glossary", type=Path, help="YAML glossary of the channel's names (PRESSROOM_GLOSSARY_FILE)")
    p.set_defaults(func=_submit)

    p = sub.add_parser("worker", help="work one or more step queues (distributed mode)")
    p.add_argument("--queues", default=",".join(PIPELINE), help="steps (and watch: polls, renewals, reconciler)")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    p.add_argument("--name", help="node name, unique per worker process (default: <queues>@<host>)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=_worker)

    p = sub.add_parser("status", help="a run's steps, events and where its post is")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)

    p = sub.add_parser("runs", help="recent runs, newest first, with their errors")
    p.add_argument("--status", choices=[s.value for s in RunStatus])
    p.add_argument("--limit", type=at_least(1), default=50)
    p.add_argument("--restore", action="store_true", help="first rebuild lost run state from stored manifests")
    p.set_defaults(func=_runs)

    p = sub.add_parser("retry", help="re-run a run from its failed step (or --from STEP), or --all-failed")
    p.add_argument("run", nargs="?")
    p.add_argument("--from", dest="from_step", choices=[s.value for s in PIPELINE])
    p.add_argument("--all-failed", action="store_true")
    p.set_defaults(func=_retry)

    p = sub.add_parser("cancel", help="cancel a queued or running run")
    p.add_argument("run")
    p.set_defaults(func=_cancel)

    p = sub.add_parser("reconcile", help="re-drive runs that nothing carries on any more")
    p.add_argument("--dry-run", action="store_true", help="only list them")
    p.set_defaults(func=_reconcile)

    p = sub.add_parser("dashboard", help="serve the retry dashboard and its JSON API")
    p.add_argument("--host", default="127.0.0.1", help="other than loopback only with PRESSROOM_DASHBOARD_TOKEN")
    p.add_argument("--port", type=int, default=8090)
    p.set_defaults(func=_dashboard)

    from workers.metrics.exporter import add_metrics_command
    from workers.review_commands import add_review_commands
    from workers.watch.commands import add_watch_commands

    add_metrics_command(sub)
    add_review_commands(sub)
    add_watch_commands(sub)
    width = max(len(name) for name in sub.choices) + 2
    parser.epilog = "commands:\n" + "\n".join(
        f"  {action.dest:<{width}}{action.help}" for action in sub._choices_actions)
    return parser


def _quiet_stdout() -> None:
    """The reader of our output went away (`| head`): stop writing, and do not complain at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Run a command; what goes wrong outside Pressroom's control ends as one line on stderr, not a traceback."""
    from workers.errors import PressroomError

    try:
        return _dispatch(sys.argv[1:] if argv is None else argv)
    except PressroomError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # as if killed by SIGPIPE, like any other command cut short by `head`
    except Exception as exc:
        from workers.faults import explain
        from workers.settings import load_settings

        message = explain(exc, load_settings())
        if message is None:
            raise
        print(f"pressroom: {message}", file=sys.stderr)
        return 1


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["simulate"]:
        from workers.providers.simulator import main as simulator_main

        simulator_main(argv[1:], prog="pressroom simulate")
        return 0
    parser = build_parser()
    if not argv:
        parser.print_help()
        sys.stdout.flush()
        return 0
    args = parser.parse_args(argv)
    code = int(args.func(args))
    sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
    return code


if __name__ == "__main__":
    sys.exit(main())
