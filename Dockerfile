# Pressroom: one image for every step's worker, `submit`, `run` and the simulator.
#   docker build -t pressroom .
#   docker run --rm pressroom --help
# The project is installed into /opt/venv in a build stage (root-owned, read-only to the runtime user);
# the runtime stage adds only ffmpeg and runs as the unprivileged user `pressroom` (uid 1000).

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# YouTube's JS challenges: pyproject's yt-dlp[default] brings the solver scripts (yt-dlp-ejs), which need a
# JS runtime; workers/steps/download.py lets yt-dlp use deno or node. Debian's nodejs (18) is older than
# yt-dlp accepts (22), so the image adds deno from PyPI (yt-dlp finds it in the venv's bin/).
# --build-arg YTDLP_SPEC=yt-dlp leaves it out.
ARG YTDLP_SPEC="yt-dlp[deno]"

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first, in their own layer: editing the code does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt "$YTDLP_SPEC"
COPY workers ./workers
COPY schemas ./schemas
RUN pip install --no-deps . && pip check


FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# The data directory is created here so a named volume mounted on it starts owned by `pressroom`.
RUN useradd --create-home --uid 1000 --user-group pressroom \
    && install -d -o pressroom -g pressroom /home/pressroom/.local/share/pressroom /out

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER pressroom
WORKDIR /home/pressroom

ENTRYPOINT ["pressroom"]
CMD ["--help"]
