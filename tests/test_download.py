"""The download step: real ffmpeg/ffprobe for local files, real yt-dlp against a local HTTP server.

YouTube itself is never contacted: URL parsing, availability checks and error classification run over
realistic info dicts and yt-dlp exceptions built the way yt-dlp builds them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from yt_dlp.networking.common import Response
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError

from schemas.artifacts import Chapter, VideoMetadata
from workers.errors import PermanentError, TransientError
from workers.steps import download as dl
from workers.steps import media
from workers.steps.download import (
    DownloadOutput,
    check_available,
    classify_download_error,
    download_with_ytdlp,
    download_youtube,
    file_video_id,
    metadata_from_info,
    prepare_local,
    ydl_options,
    youtube_video_id,
)
from workers.steps.media import InputLimits

VID = "dQw4w9WgXcQ"


# --- media helpers --------------------------------------------------------------------------------
def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_video(path: Path, seconds: float = 5, *, audio: bool = True, extra: tuple[str, ...] = ()) -> Path:
    """A small real video (test pattern), with a 440 Hz tone unless audio=False."""
    inputs = ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=160x120:rate=10"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    codecs = ["-c:v", "libx264", "-pix_fmt", "yuv420p", *(["-c:a", "aac"] if audio else [])]
    ffmpeg(*inputs, *extra, *codecs, "-shortest", str(path))
    return path


def audio_facts(path: Path) -> dict[str, Any]:
    """ffprobe's view of the first audio stream plus the container duration."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    data = json.loads(out)
    streams = data["streams"]
    (audio,) = [s for s in streams if s["codec_type"] == "audio"]
    return {
        "codec": audio["codec_name"],
        "channels": audio["channels"],
        "sample_rate": int(audio["sample_rate"]),
        "duration": float(data["format"]["duration"]),
        "format": data["format"]["format_name"],
        "video_streams": sum(s["codec_type"] == "video" for s in streams),
    }


def assert_speech_m4a(path: Path, seconds: float) -> None:
    assert path.is_file() and path.suffix == ".m4a"
    facts = audio_facts(path)
    assert facts["codec"] == "aac"
    assert facts["channels"] == 1
    assert facts["sample_rate"] == 16000
    assert facts["video_streams"] == 0
    assert "mp4" in facts["format"] or "m4a" in facts["format"]
    assert abs(facts["duration"] - seconds) <= 0.2, facts


# --- prepare_local --------------------------------------------------------------------------------
def test_prepare_local_video_with_sound(tmp_path: Path) -> None:
    src = make_video(tmp_path / "My Talk.mp4", 5)
    out = prepare_local(src, tmp_path / "work", video_id="file-abc")
    assert_speech_m4a(out.audio_path, 5)
    assert out.audio_path.parent == tmp_path / "work"
    assert out.audio_format == "m4a"
    assert out.captions == {}
    meta = out.metadata
    assert (meta.video_id, meta.title, meta.upload_date) == ("file-abc", "My Talk", None)
    assert abs(meta.duration - 5) <= 0.2
    assert src.is_file()  # the input is left alone
    assert not list((tmp_path / "work").glob("*.part"))


def test_prepare_local_wav_and_explicit_title(tmp_path: Path) -> None:
    wav = tmp_path / "talk.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=3", "-ac", "2", "-ar", "44100", str(wav))
    out = prepare_local(wav, tmp_path / "work", video_id="file-wav", title="Given Title")
    assert_speech_m4a(out.audio_path, 3)
    assert out.metadata.title == "Given Title"


def test_prepare_local_container_title_and_chapters(tmp_path: Path) -> None:
    meta = tmp_path / "meta.txt"
    meta.write_text(
        ";FFMETADATA1\ntitle=Container Title\n"
        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=2000\ntitle=Intro\n"
        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=2000\nEND=4000\ntitle=Main part\n"
    )
    src = tmp_path / "rec.mkv"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=500:duration=4", "-i", str(meta),
           "-map", "0:a", "-map_metadata", "1", "-map_chapters", "1", "-c:a", "flac", str(src))
    out = prepare_local(src, tmp_path / "work", video_id="file-mkv")
    assert out.metadata.title == "Container Title"
    assert out.metadata.chapters == [
        Chapter(title="Intro", start=0.0, end=2.0), Chapter(title="Main part", start=2.0, end=4.0),
    ]
    assert_speech_m4a(out.audio_path, 4)


def test_prepare_local_rejects_video_without_audio(tmp_path: Path) -> None:
    src = make_video(tmp_path / "silent.mp4", 2, audio=False)
    with pytest.raises(PermanentError) as err:
        prepare_local(src, tmp_path / "work", video_id="file-x")
    msg = str(err.value)
    assert "silent.mp4" in msg and "no audio stream" in msg and "mp4" in msg
    assert "\n" not in msg
    assert not (tmp_path / "work" / "audio.m4a").exists()


def test_prepare_local_rejects_garbage(tmp_path: Path) -> None:
    src = tmp_path / "notes.mp4"
    src.write_bytes(b"this is not a media file\n" * 100)
    with pytest.raises(PermanentError) as err:
        prepare_local(src, tmp_path / "work", video_id="file-x")
    msg = str(err.value)
    assert "notes.mp4" in msg and "not a readable audio or video file" in msg and "wav" in msg
    assert "\n" not in msg


def test_prepare_local_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match=r"gone\.mp4: file not found"):
        prepare_local(tmp_path / "gone.mp4", tmp_path / "work", video_id="file-x")


def test_prepare_local_ffmpeg_failure_gives_last_stderr_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_video(tmp_path / "ok.mp4", 2)
    monkeypatch.setattr(media, "SPEECH_SAMPLE_RATE", 12345)  # a rate the AAC encoder refuses
    with pytest.raises(PermanentError) as err:
        prepare_local(src, tmp_path / "work", video_id="file-x")
    msg = str(err.value)
    assert msg.startswith("ffmpeg could not convert ok.mp4 to m4a: ") and "\n" not in msg
    assert "incorrect parameters" in msg or "not supported" in msg  # ffmpeg's own last line
    assert not list((tmp_path / "work").iterdir())  # no half-written output left behind


def test_file_video_id_is_a_content_hash(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10_000  # > 1 chunk
    a, b = tmp_path / "a.bin", tmp_path / "b.mp4"
    a.write_bytes(data)
    b.write_bytes(data)
    expected = "file-" + hashlib.sha256(data).hexdigest()[:12]
    assert file_video_id(a) == file_video_id(b) == expected
    b.write_bytes(data + b"x")
    assert file_video_id(b) != expected


# --- URLs -----------------------------------------------------------------------------------------
YOUTUBE_URLS = [
    f"https://www.youtube.com/watch?v={VID}",
    f"http://youtube.com/watch?v={VID}#t=30",
    f"https://www.youtube.com/watch?v={VID}&t=42s",
    f"https://www.youtube.com/watch?feature=share&v={VID}",
    f"https://www.youtube.com/watch?v={VID}&list=PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf&index=3",
    f"https://youtu.be/{VID}",
    f"https://youtu.be/{VID}?si=Abc123xyz&t=10",
    f"https://www.youtube.com/shorts/{VID}",
    f"https://youtube.com/shorts/{VID}?feature=share",
    f"https://www.youtube.com/live/{VID}?si=abc",
    f"https://www.youtube.com/embed/{VID}?start=10",
    f"https://www.youtube-nocookie.com/embed/{VID}",
    f"https://www.youtube.com/v/{VID}",
    f"https://m.youtube.com/watch?v={VID}",
    f"https://music.youtube.com/watch?v={VID}&feature=share",
    f"www.youtube.com/watch?v={VID}",
    f"youtu.be/{VID}",
    f"  https://www.youtube.com/watch?v={VID}  ",
]
NOT_VIDEOS = [
    "",
    VID,  # a bare id is not a URL
    "https://www.youtube.com/",
    "https://www.youtube.com/playlist?list=PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf",
    "https://www.youtube.com/@GoogleDevelopers",
    "https://www.youtube.com/channel/UC_x5XG1OV2P6uZZ5FSM9Ttw",
    "https://www.youtube.com/feeds/videos.xml?channel_id=UC_x5XG1OV2P6uZZ5FSM9Ttw",
    "https://www.youtube.com/watch?v=tooShort",
    f"https://www.youtube.com/watch?v={VID}xyz",
    f"https://vimeo.com/{VID}",
    f"https://www.youtube.com.evil.example/watch?v={VID}",
    f"https://evil.example/?next=https://www.youtube.com/watch?v={VID}",
    f"ftp://www.youtube.com/watch?v={VID}",
    f"https://invidious.example.org/watch?v={VID}",
    "not a url at all",
]


@pytest.mark.parametrize("url", YOUTUBE_URLS)
def test_youtube_video_id(url: str) -> None:
    assert youtube_video_id(url) == VID


@pytest.mark.parametrize("url", NOT_VIDEOS)
def test_youtube_video_id_rejects(url: str) -> None:
    assert youtube_video_id(url) is None


def test_youtube_video_id_fallback_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """If yt-dlp's private pattern disappears, the fallback gives the same answers."""
    monkeypatch.setattr(dl, "_ytdlp_match", lambda url: None)
    assert [youtube_video_id(u) for u in YOUTUBE_URLS] == [VID] * len(YOUTUBE_URLS)
    assert [youtube_video_id(u) for u in NOT_VIDEOS] == [None] * len(NOT_VIDEOS)


# --- availability ---------------------------------------------------------------------------------
def info(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": VID, "title": "A talk", "live_status": "not_live", "availability": "public",
                            "media_type": "video", "webpage_url": f"https://www.youtube.com/watch?v={VID}"}
    return {**base, **fields}


@pytest.mark.parametrize("fields", [
    {},
    {"availability": "unlisted"},
    {"availability": None, "live_status": None, "media_type": None},
    {"live_status": "was_live", "media_type": "livestream"},  # a recorded stream is a normal video
    {"media_type": "short"},
])
def test_check_available_accepts(fields: dict[str, Any]) -> None:
    check_available(info(**fields))


@pytest.mark.parametrize(("fields", "expected"), [
    ({"live_status": "is_live", "media_type": "livestream"}, "live stream in progress"),
    ({"live_status": "is_upcoming"}, "has not started"),
    ({"live_status": "post_live", "media_type": "livestream"}, "still processing the recording"),
    ({"live_status": None, "is_live": True}, "live stream in progress"),
    ({"live_status": None, "media_type": "livestream"}, "live stream in progress"),
    ({"availability": "private"}, "is private"),
    ({"availability": "premium_only"}, "Premium"),
    ({"availability": "subscriber_only"},
     "members-only video: Pressroom cannot download it; skip it or provide cookies"),
    ({"availability": "needs_auth"}, "signed-in account"),
    ({"_type": "playlist", "id": "PLxyz", "webpage_url": "https://www.youtube.com/playlist?list=PLxyz"},
     "playlist PLxyz is not a single video"),
])
def test_check_available_refuses(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(PermanentError) as err:
        check_available(info(**fields))
    msg = str(err.value)
    assert expected in msg
    assert fields.get("id", VID) in msg
    assert "\n" not in msg


# --- metadata -------------------------------------------------------------------------------------
def test_metadata_from_info() -> None:
    raw = info(
        title="Building Reliable Agents", channel="AI Engineer", channel_id="UCLKPca3kwwd-B59HNr-_lvA",
        uploader="AI Engineer", upload_date="20250612", duration=1834, language="en",
        description="Talk abstract.\nSlides: https://example.com", view_count=12345,
        thumbnails=[{"url": "https://i.ytimg.com/vi/x/hq.jpg"}], formats=[{"format_id": "140"}],
        chapters=[
            {"start_time": 0.0, "end_time": 95.0, "title": "Intro"},
            {"start_time": 95.0, "end_time": 1200.5, "title": "Evals"},
            {"start_time": 1200.5, "end_time": None, "title": "Q&A"},
        ],
    )
    meta = metadata_from_info(raw)
    assert meta.video_id == VID
    assert meta.title == "Building Reliable Agents"
    assert (meta.channel, meta.channel_id) == ("AI Engineer", "UCLKPca3kwwd-B59HNr-_lvA")
    assert meta.upload_date is not None and meta.upload_date.isoformat() == "2025-06-12"
    assert meta.duration == 1834.0
    assert meta.language == "en"
    assert meta.webpage_url == f"https://www.youtube.com/watch?v={VID}"
    assert meta.description.startswith("Talk abstract.")
    assert meta.chapters == [
        Chapter(title="Intro", start=0.0, end=95.0),
        Chapter(title="Evals", start=95.0, end=1200.5),
        Chapter(title="Q&A", start=1200.5, end=1834.0),  # open end -> video duration
    ]


def test_metadata_from_sparse_info() -> None:
    meta = metadata_from_info({"id": "talk", "uploader": "Someone", "upload_date": "garbage"})
    assert (meta.title, meta.channel, meta.upload_date, meta.duration, meta.chapters) == (
        "talk", "Someone", None, 0.0, [])
    assert meta.language is None


# --- error classification -------------------------------------------------------------------------
def extractor_failure(
    msg: str, *, cause: BaseException | None = None, expected: bool = True
) -> DownloadError:
    """A DownloadError as YoutubeDL.trouble() raises it around an ExtractorError."""
    def build() -> DownloadError:
        try:
            raise ExtractorError(msg, expected=expected, video_id=VID, ie="youtube", cause=cause)
        except ExtractorError as e:
            return DownloadError(f"ERROR: {e}", getattr(e, "exc_info", None) or sys.exc_info())

    if cause is None:
        return build()
    try:
        raise cause
    except type(cause):
        return build()


def network_failure(err: BaseException, prefix: str = "unable to download video data") -> DownloadError:
    """A DownloadError as process_info raises it when the media download fails."""
    try:
        raise err
    except type(err):
        return DownloadError(f"ERROR: {prefix}: {err}", sys.exc_info())


def http_error(status: int, reason: str, headers: dict[str, str] | None = None) -> HTTPError:
    resp = Response(io.BytesIO(b""), f"https://rr3---sn.googlevideo.com/videoplayback?id={VID}",
                    headers or {}, status=status, reason=reason)
    return HTTPError(resp)


COOKIES_HINT = (" Use --cookies-from-browser or --cookies for the authentication. See  "
                "https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp  "
                "for how to manually pass cookies")
PERMANENT = [
    ("Private video. Sign in if you've been granted access to this video." + COOKIES_HINT, "is private"),
    ("Join this channel to get access to members-only content like this video, and other exclusive perks.",
     "members-only"),
    ("This video is available to this channel's members on level: Supporter (or any higher level). "
     "Join this channel to get access to members-only content and other exclusive perks.", "members-only"),
    ("Video unavailable. This video has been removed by the uploader", "unavailable"),
    ("Video unavailable. This video is no longer available because the YouTube account associated with this "
     "video has been terminated.", "unavailable"),
    ("Video unavailable", "unavailable"),
    ("This live event will begin in 3 hours.", "has not started"),
    ("Premieres in 2 days", "has not started"),
    ("Video unavailable. This video contains content from SME, who has blocked it on copyright grounds.",
     "copyright"),
    ("Sign in to confirm your age. This video may be inappropriate for some users." + COOKIES_HINT,
     "age-restricted"),
    ("Sign in to confirm you're not a bot. This helps protect our community." + COOKIES_HINT, "bot check"),
    ("This video is DRM protected", "DRM"),
    ("Requested format is not available. Use --list-formats for a list of available formats",
     "no downloadable"),
]


@pytest.mark.parametrize(("message", "expected"), PERMANENT)
def test_classify_permanent(message: str, expected: str) -> None:
    err = classify_download_error(extractor_failure(message))
    assert isinstance(err, PermanentError), err
    assert expected in str(err)
    assert VID in str(err)
    assert "\n" not in str(err) and "--cookies" not in str(err)


def test_classify_geo_restricted() -> None:
    try:
        raise GeoRestrictedError(
            "The uploader has not made this video available in your country", countries=["US"]
        )
    except GeoRestrictedError:
        exc = DownloadError("ERROR: [youtube] dQw4w9WgXcQ: The uploader has not made this video available in "
                            "your country\nThis video is available in United States.", sys.exc_info())
    err = classify_download_error(exc)
    assert isinstance(err, PermanentError) and "country" in str(err) and "\n" not in str(err)


def test_classify_rate_limit_with_retry_after() -> None:
    cause = http_error(429, "Too Many Requests", {"Retry-After": "120"})
    exc = extractor_failure("Unable to download API page: HTTP Error 429: Too Many Requests", cause=cause)
    assert isinstance(exc.exc_info[1], HTTPError)  # unwrapped from DownloadError.exc_info
    err = classify_download_error(exc)
    assert isinstance(err, TransientError) and "429" in str(err)
    assert err.retry_after == 120.0


def test_classify_youtube_session_rate_limit() -> None:
    err = classify_download_error(extractor_failure(
        "This content isn't available, try again later. The current session has been rate-limited by YouTube "
        "for up to an hour."))
    assert isinstance(err, TransientError) and err.retry_after == 900.0


@pytest.mark.parametrize(("status", "reason"), [(500, "Internal Server Error"), (503, "Service Unavailable"),
                                                (403, "Forbidden")])
def test_classify_http_transient(status: int, reason: str) -> None:
    err = classify_download_error(network_failure(http_error(status, reason)))
    assert isinstance(err, TransientError), err
    assert f"HTTP {status}" in str(err) and "\n" not in str(err)


def test_classify_http_404_is_permanent() -> None:
    exc = extractor_failure("Unable to download webpage: HTTP Error 404: Not Found",
                            cause=http_error(404, "Not Found"))
    assert isinstance(classify_download_error(exc), PermanentError)


@pytest.mark.parametrize("exc", [
    network_failure(TransportError("Read timed out.", cause=TimeoutError("The read operation timed out"))),
    network_failure(TransportError("[Errno 104] Connection reset by peer")),
    network_failure(TimeoutError("timed out"), prefix="unable to download video data"),
    DownloadError("ERROR: unable to download video data: HTTP Error 502: Bad Gateway"),  # no exc_info at all
    extractor_failure("Unable to download API page: <urlopen error [Errno -3] Temporary failure in name "
                      "resolution>"),
    DownloadError("ERROR: Did not get any data blocks"),
])
def test_classify_network_transient(exc: DownloadError) -> None:
    err = classify_download_error(exc)
    assert isinstance(err, TransientError), err
    assert "\n" not in str(err)


def test_classify_unknown_is_transient_and_suggests_update() -> None:
    err = classify_download_error(extractor_failure("Unable to extract nsig function code", expected=False))
    assert isinstance(err, TransientError)
    assert "update yt-dlp" in str(err) and "please report" not in str(err).lower()


def test_classify_uses_given_video_id() -> None:
    err = classify_download_error(DownloadError("ERROR: Video unavailable"), video_id="abcdefghijk")
    assert isinstance(err, PermanentError) and "video abcdefghijk" in str(err)


# --- download_youtube -----------------------------------------------------------------------------
def test_download_youtube_rejects_other_urls(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="not a YouTube video URL"):
        download_youtube("https://vimeo.com/123", tmp_path)
    assert not any(tmp_path.iterdir())


def test_download_youtube_gives_ytdlp_the_canonical_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    done = DownloadOutput(metadata=VideoMetadata(video_id=VID, title="t"), audio_path=tmp_path / "audio.m4a")

    def fake(url: str, workdir: Path, options: dict[str, Any], limits: InputLimits) -> DownloadOutput:
        seen.update(url=url, workdir=workdir, options=options, limits=limits)
        return done

    monkeypatch.setattr(dl, "download_with_ytdlp", fake)
    limits = InputLimits(max_bytes=10**9, max_duration=3600)
    result = download_youtube(f"https://youtu.be/{VID}?list=PLx&t=9", tmp_path, captions_langs=("en",),
                              limits=limits)
    assert seen["limits"] is limits
    assert result is done
    assert seen["url"] == f"https://www.youtube.com/watch?v={VID}"
    opts = seen["options"]
    assert opts["postprocessors"] == [{"key": "FFmpegExtractAudio", "preferredcodec": "m4a"}]
    assert opts["noplaylist"] is True and opts["writeinfojson"] is True
    assert opts["subtitleslangs"] == ["en"] and opts["subtitlesformat"] == "vtt"
    assert opts["writesubtitles"] is True and opts["writeautomaticsub"] is True
    assert opts["quiet"] is True and opts["noprogress"] is True


def test_ydl_options_without_auto_captions(tmp_path: Path) -> None:
    opts = ydl_options(tmp_path, auto_captions=False, cookiefile=tmp_path / "cookies.txt")
    assert opts["writesubtitles"] is True and opts["writeautomaticsub"] is False
    assert opts["cookiefile"] == str(tmp_path / "cookies.txt")
    assert Path(opts["paths"]["home"]).parent == tmp_path


# --- the real yt-dlp download path, offline -------------------------------------------------------
class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def media_server(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server: a talk video, a page embedding it with captions, one with broken captions."""
    root = tmp_path / "site"
    root.mkdir()
    make_video(root / "talk.mp4", 5)
    (root / "talk.en.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nHello and welcome.\n")
    page = ('<html><head><title>{title}</title></head><body><video controls src="talk.mp4">'
            '<track kind="captions" src="{vtt}" srclang="en" label="English"></video></body></html>')
    (root / "page.html").write_text(page.format(title="A talk", vtt="talk.en.vtt"))
    (root / "broken.html").write_text(page.format(title="Broken captions", vtt="missing.en.vtt"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def local_options(workdir: Path) -> dict[str, Any]:
    """download_youtube's options; the proxy is bypassed so an HTTP_PROXY setting cannot catch 127.0.0.1."""
    return {**ydl_options(workdir), "proxy": ""}


def test_ytdlp_downloads_and_converts_a_direct_file(media_server: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    out = download_with_ytdlp(f"{media_server}/talk.mp4", work, local_options(work))
    assert out.audio_path == work / "audio.m4a"
    assert_speech_m4a(out.audio_path, 5)
    assert out.metadata.video_id == "talk"
    assert abs(out.metadata.duration - 5) <= 0.2
    assert out.metadata.webpage_url == f"{media_server}/talk.mp4"
    assert out.captions == {}
    ytdlp_files = sorted(p.name for p in (work / dl.YTDLP_DIR).iterdir())
    assert ytdlp_files == ["talk.info.json"]  # yt-dlp's own m4a was replaced by audio.m4a


def test_ytdlp_downloads_page_with_captions(media_server: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    out = download_with_ytdlp(f"{media_server}/page.html", work, local_options(work))
    assert_speech_m4a(out.audio_path, 5)
    assert list(out.captions) == ["en.vtt"]
    assert "Hello and welcome." in out.captions["en.vtt"].read_text()
    assert out.metadata.title.startswith("A talk")


def test_ytdlp_broken_captions_still_give_audio(media_server: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    out = download_with_ytdlp(f"{media_server}/broken.html", work, local_options(work))
    assert_speech_m4a(out.audio_path, 5)
    assert out.captions == {}


def test_ytdlp_missing_file_is_permanent(media_server: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    with pytest.raises(PermanentError, match="HTTP 404"):
        download_with_ytdlp(f"{media_server}/nothere.mp4", work, local_options(work))


def test_ytdlp_connection_refused_is_transient(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with pytest.raises(TransientError, match="network error"):
        download_with_ytdlp("http://127.0.0.1:9/talk.mp4", work, local_options(work))


def test_ytdlp_path_runs_check_available(
    media_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The availability check sees yt-dlp's info before anything is downloaded."""
    seen: list[dict[str, Any]] = []

    def refuse(info: dict[str, Any]) -> None:
        seen.append(info)
        raise PermanentError(f"video {info['id']} is private")

    monkeypatch.setattr(dl, "check_available", refuse)
    work = tmp_path / "work"
    with pytest.raises(PermanentError, match="video talk is private"):
        download_with_ytdlp(f"{media_server}/talk.mp4", work, local_options(work))
    assert seen and seen[0]["id"] == "talk"
    assert not (work / "audio.m4a").exists()
    assert not list((work / dl.YTDLP_DIR).iterdir())


def test_prepare_local_copies_audio_that_is_already_speech_aac(tmp_path: Path) -> None:
    """A file already in the speech format (AAC mono 16 kHz, low bitrate) is copied, not re-encoded."""
    from workers.steps.media import is_speech_aac, probe

    src = tmp_path / "speech.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=300:sample_rate=16000:duration=30", "-ac", "1", "-c:a", "aac", "-b:a", "24k",
                    str(src)], check=True)
    assert is_speech_aac(probe(src))
    out = dl.prepare_local(src, tmp_path / "work", video_id="file-x")
    copied = probe(out.audio_path)
    assert copied.bit_rate == probe(src).bit_rate  # a re-encode would have made it 48 kbps
    assert abs(copied.duration - 30) < 0.1 and copied.channels == 1 and copied.sample_rate == 16000
    wav = tmp_path / "stereo.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=duration=2",
                    "-ac", "2", str(wav)], check=True)
    assert not is_speech_aac(probe(wav))
