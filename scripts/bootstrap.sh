#!/usr/bin/env bash
# Set up what Pressroom needs on a Debian machine, once: Python venv + packages, ffmpeg, and (for the
# tests) a running Redis, Debian's chromium, docker-compose and Eleventy (npm). Re-running is cheap:
# packages are reinstalled only when pyproject.toml (or tests/site/package-lock.json) changes.
# Usage: scripts/bootstrap.sh run|test
set -euo pipefail
purpose="${1:-run}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

say() { echo "bootstrap: $*" >&2; }

apt_install() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if ! command -v apt-get >/dev/null; then
    say "please install: $* (no apt-get here)"; exit 1
  fi
  say "installing $* from Debian"
  $sudo apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

python=""
for candidate in python3 python3.13 python3.12 python3.11; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"; break
  fi
done
if [ -z "$python" ]; then apt_install python3 python3-venv; python=python3; fi

command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || apt_install ffmpeg

if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"; apt_install python3-venv; "$python" -m venv "$venv"
  fi
fi

extras="."
[ "$purpose" = "test" ] && extras=".[dev]"
stamp="$venv/.pressroom-installed"
hash="$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
installed="$(cat "$stamp" 2>/dev/null || true)"
if [ "$installed" != "$hash .[dev]" ] && [ "$installed" != "$hash $extras" ]; then
  say "installing Python packages ($extras)"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  (cd "$root" && "$venv/bin/python" -m pip install -q -e "$extras" >&2)
  echo "$hash $extras" > "$stamp"
fi

if [ "$purpose" = "test" ]; then
  if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    command -v redis-server >/dev/null || apt_install redis-server
    say "starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
  fi
  # the dashboard's browser test drives Debian's chromium (never `playwright install`: it downloads browsers)
  [ -x /usr/bin/chromium ] || apt_install chromium
  # compose itself validates docker-compose.yml (no Docker engine is needed for `docker-compose config`)
  command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || apt_install docker-compose
  # Prometheus' own promtool checks the alert rules and runs their unit tests (tests/test_observability_config.py)
  command -v promtool >/dev/null || apt_install prometheus
  # the real Eleventy builds a site from Pressroom's posts (tests/test_site.py), from npm as locked
  command -v npm >/dev/null || apt_install nodejs npm
  site="$root/tests/site"
  lock="$(sha256sum "$site/package-lock.json" | cut -c1-16)"
  if [ "$(cat "$site/node_modules/.pressroom-installed" 2>/dev/null)" != "$lock" ]; then
    say "installing Eleventy from npm (tests/site)"
    (cd "$site" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$lock" > "$site/node_modules/.pressroom-installed"
  fi
fi
