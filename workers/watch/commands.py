"""`pressroom channels add|list|remove`, `pressroom watch [--once]`, `pressroom backfill` and `pressroom beat`."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from workers.errors import ConfigError


def _channels_path(rt: Any) -> Path:
    path: Path | None = rt.settings.channels_file
    if path is None:
        raise ConfigError("no channels file: set PRESSROOM_CHANNELS_FILE to a YAML file (it is created on first add)")
    return path


def _app() -> tuple[Any, Any]:
    from workers.app import app_from_env

    return app_from_env()


def _add(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from schemas.channels import ChannelConfig
    from schemas.post import FrontMatterDefaults
    from workers.glossary import load_glossary
    from workers.watch.channels_file import add_channel

    _, rt = _app()
    defaults = {k: v for k, v in {"speaker": args.speaker, "area": args.area, "category": args.category,
                                  "series": args.series}.items() if v is not None}
    glossary = None
    if args.glossary:  # checked now, and kept as an absolute path: workers may run elsewhere
        glossary = Path(args.glossary).expanduser().resolve()
        load_glossary(glossary, rt.settings)
    try:
        config = ChannelConfig(id=args.channel_id, name=args.name or args.channel_id, backfill=args.backfill,
                               glossary=str(glossary) if glossary else None, captions=args.captions,
                               defaults=FrontMatterDefaults(**{**rt.settings.front_matter.model_dump(), **defaults}))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"channels add: {field}: {str(first['msg']).removeprefix('Value error, ')}") from None
    add_channel(_channels_path(rt), config, replace=args.replace)
    print(f"added {config.id} ({config.name}) to {_channels_path(rt)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from workers import keys
    from workers.watch.channels_file import load_channels

    _, rt = _app()
    for c in load_channels(_channels_path(rt)).channels:
        state = rt.state.kv.hgetall(keys.channel_state_key(c.id))
        error = state.get("last_error") or ""
        status = f"failing ×{state.get('failures')}: {error}" if error else ("ok" if state else "not polled yet")
        print(f"{c.id}  {'enabled ' if c.enabled else 'disabled'}  {c.name}  [{status}]")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from workers.watch.channels_file import remove_channel

    _, rt = _app()
    remove_channel(_channels_path(rt), args.channel_id)
    print(f"removed {args.channel_id}")
    return 0


def _watch(args: argparse.Namespace) -> int:
    """Poll every channel (once, or forever at PRESSROOM_POLL_INTERVAL, each channel when it is due)."""
    from workers.embedded import embedded_worker
    from workers.follow import follow_run
    from workers.watch.channels_file import load_channels
    from workers.watch.poller import Watcher

    app, rt = _app()
    watcher = Watcher(app, rt)
    path = _channels_path(rt)
    with embedded_worker(app, rt.settings.embedded_concurrency) if rt.settings.embedded else nullcontext():
        while True:
            results = watcher.poll(load_channels(path).channels, only_due=not args.once)
            for result in results:
                for video_id in result.submitted:
                    print(video_id, flush=True)
                if result.error:
                    print(f"pressroom: channel {result.channel_id}: {result.error}", file=sys.stderr)
            if args.once:
                if rt.settings.embedded:  # in-process runs end with this process: see them through
                    for run_id in _run_ids(rt, results):
                        follow_run(rt.state, run_id)
                return 1 if results and all(r.error for r in results) else 0
            time.sleep(min(60, rt.settings.poll_interval))


def _run_ids(rt: Any, results: list[Any]) -> list[str]:
    from workers import keys

    ids = {v for r in results for v in r.submitted}
    return [run_id for run_id in rt.state.kv.zrange(keys.runs_index_key(), 0, -1)
            if (run := rt.state.view(run_id)) is not None and run.video_id in ids]


def _backfill(args: argparse.Namespace) -> int:
    from workers.watch.backfill import list_uploads
    from workers.watch.channels_file import load_channels
    from workers.watch.feed import classify, is_wait
    from workers.watch.poller import Watcher

    app, rt = _app()
    if rt.settings.embedded:
        raise ConfigError("backfill needs PRESSROOM_BROKER_URL (redis://…) and workers to process the runs")
    channels = {c.id: c for c in load_channels(_channels_path(rt)).channels}
    channel = channels.get(args.channel) or next((c for c in channels.values() if c.name == args.channel), None)
    if channel is None:
        raise ConfigError(f"no channel {args.channel!r} in {_channels_path(rt)}: add it with `pressroom channels add`")
    watcher = Watcher(app, rt)
    for entry in list_uploads(channel, args.count):
        reason = classify(entry, channel.filters)
        if reason and not is_wait(reason) and not args.force:
            print(f"skipped {entry.video_id}: {reason}", file=sys.stderr)
        elif watcher.submit_entry(channel, entry, force=args.force):
            print(entry.video_id, flush=True)
    return 0


def _websub(args: argparse.Namespace) -> int:
    """Serve the WebSub callback; new uploads are submitted the moment the hub says so."""
    import uvicorn

    from workers.watch.service import websub_app

    app, rt = _app()
    if rt.settings.embedded:
        raise ConfigError("the WebSub endpoint needs PRESSROOM_BROKER_URL (redis://…) and workers")
    from workers.cli import check_services

    check_services(rt)
    uvicorn.run(websub_app(app, rt), host=args.host, port=args.port, log_level="info")
    return 0


def _subscribe(args: argparse.Namespace) -> int:
    """Subscribe every enabled channel (or renew the leases that are due) at the WebSub hub."""
    from workers.http import client as http_client
    from workers.watch.channels_file import load_channels
    from workers.watch.service import subscriber
    from workers.watch.websub_client import HUB_DEADLINE

    _, rt = _app()
    with http_client(HUB_DEADLINE) as http:
        hub = subscriber(rt, http)
        if args.renew:
            report = hub.renew_due(time.time())
            print(f"renewed {len(report.renewed)}, failed {len(report.failed)}")
            return 1 if report.failed else 0
        failed = 0
        for channel in load_channels(_channels_path(rt)).channels:
            if channel.enabled:
                try:
                    hub.subscribe(channel.id)
                    print(f"subscribed {channel.id} ({channel.name})")
                except Exception as exc:  # one channel's refusal must not stop the others
                    failed += 1
                    print(f"pressroom: {channel.id}: {exc}", file=sys.stderr)
        return 1 if failed else 0


def _beat(args: argparse.Namespace) -> int:
    app, rt = _app()
    if rt.settings.embedded:
        raise ConfigError("beat needs PRESSROOM_BROKER_URL; `pressroom watch` polls without a broker")
    schedule = rt.settings.data_dir / "celerybeat-schedule"  # when each periodic task last ran
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.Beat(loglevel=args.loglevel, schedule=str(schedule)).run()
    return 0


def at_least(minimum: int) -> Any:
    """argparse type: a whole number of at least `minimum` (one line naming the value otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


_count, _positive = at_least(0), at_least(1)


def add_watch_commands(sub: Any) -> None:
    p = sub.add_parser("channels", help="the watched channels: add, list, remove, subscribe")
    csub = p.add_subparsers(dest="channels_command", required=True)
    a = csub.add_parser("add", help="watch a channel (UC… id)")
    a.add_argument("channel_id")
    a.add_argument("--name")
    a.add_argument("--backfill", type=_count, default=0, help="how many of its latest uploads to process now")
    a.add_argument("--glossary", help="YAML glossary for this channel")
    a.add_argument("--captions", choices=["off", "human", "auto"], default="human")
    for key in ("speaker", "area", "category", "series"):
        a.add_argument(f"--{key}", help=f"front matter `{key}` for this channel's posts")
    a.add_argument("--replace", action="store_true", help="overwrite the channel if it is already listed")
    a.set_defaults(func=_add)
    csub.add_parser("list", help="every channel and its polling state").set_defaults(func=_list)
    r = csub.add_parser("remove", help="stop watching a channel")
    r.add_argument("channel_id")
    r.set_defaults(func=_remove)
    r = csub.add_parser("subscribe", help="subscribe the channels at the WebSub hub (push; polling stays on)")
    r.add_argument("--renew", action="store_true", help="only renew the leases that are about to expire")
    r.set_defaults(func=_subscribe)

    p = sub.add_parser("websub", help="serve the WebSub callback: the hub's notifications become runs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=_websub)

    p = sub.add_parser("watch", help="poll the channels' feeds and submit their new uploads")
    p.add_argument("--once", action="store_true", help="poll every channel once, print submitted video ids, exit")
    p.set_defaults(func=_watch)

    p = sub.add_parser("backfill", help="submit a channel's past uploads (beyond the feed's 15)")
    p.add_argument("channel", help="channel id or name")
    p.add_argument("--count", type=_positive, required=True)
    p.add_argument("--force", action="store_true", help="submit even videos already processed")
    p.set_defaults(func=_backfill)

    p = sub.add_parser("beat", help="schedule the channel polls on the workers (distributed mode)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=_beat)
