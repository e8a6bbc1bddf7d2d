"""Benchmark (not a test): wall time of `pressroom run` on an input whose artifacts are all stored already.

A user who runs the same talk again (a changed --out, a re-render) should wait for nothing but the publish
step. This makes a 60-second talk, runs it once through the simulator to store every artifact, then times
`pressroom run` on it again, several times, side by side with `pressroom --help` (the interpreter and the
CLI's imports: the floor any command pays). Both through `./pressroom` (the self-installing script a user
types) and `.venv/bin/pressroom`. Goal: a reused run under 3 s on this machine.

    .venv/bin/python bench/reused_run.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from workers.providers.simulator import SimulatorConfig, running_simulator  # noqa: E402


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float | None]:
    """Wall seconds of the command, and when its first line of stderr came (None: it printed none)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    first_at = time.perf_counter() - start if first else None
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {(first + err).decode()[-2000:]}")
    return wall, first_at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, running_simulator(SimulatorConfig()) as simulator:
        talk = Path(tmp) / "talk.wav"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                        "sine=frequency=440:duration=60", "-ac", "1", "-ar", "16000", str(talk)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PRESSROOM_", "OPENAI_"))}
        env.update(PRESSROOM_DATA_DIR=f"{tmp}/data", PRESSROOM_TRANSCRIPTION_BASE_URL=simulator,
                   PRESSROOM_LLM_BASE_URL=simulator)
        commands = {
            "./pressroom run (reused)": [str(ROOT / "pressroom"), "run", str(talk), "--out", f"{tmp}/out"],
            ".venv/bin/pressroom run (reused)": [str(ROOT / ".venv/bin/pressroom"), "run", str(talk),
                                                 "--out", f"{tmp}/out"],
            ".venv/bin/pressroom --help": [str(ROOT / ".venv/bin/pressroom"), "--help"],
        }
        first, _ = timed(commands[".venv/bin/pressroom run (reused)"], env)
        print(f"first run (stores every artifact): {first:.2f} s")
        walls: dict[str, list[float]] = {name: [] for name in commands}
        firsts: list[float] = []
        for _ in range(args.repeats):  # interleaved, so the machine's noise falls on all of them alike
            for name, cmd in commands.items():
                wall, first_line = timed(cmd, env)
                walls[name].append(wall)
                if name.startswith(".venv/bin/pressroom run") and first_line is not None:
                    firsts.append(first_line)
        for name, values in walls.items():
            print(f"{name:<36} median {statistics.median(values):.2f} s  min {min(values):.2f}  "
                  f"max {max(values):.2f}  (n={len(values)})")
        floor = statistics.median(walls[".venv/bin/pressroom --help"])
        reused = statistics.median(walls[".venv/bin/pressroom run (reused)"])
        print(f"first line on stderr after: median {statistics.median(firsts):.2f} s")
        print(f"reused run / bare start: {reused / floor:.2f}  (reused run {reused:.2f} s; goal < 3 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
