"""The CLI's fast exit keeps what a normal interpreter exit guarantees."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO


def test_exit_now_joins_threads_runs_atexit_and_keeps_the_status(tmp_path):
    script = textwrap.dedent(f"""
        import atexit, threading, time
        from concurrent.futures import ThreadPoolExecutor
        from pathlib import Path
        from kibs_mc.cli import exit_now

        out = Path({str(tmp_path)!r})
        pool = ThreadPoolExecutor(2)  # idle worker threads, not daemons: a plain join would hang
        pool.submit(time.sleep, 0.01).result()

        def late():
            time.sleep(0.5)
            (out / "thread").write_text("done")

        threading.Thread(target=late).start()  # e.g. the background shutdown of Ray
        atexit.register(lambda: (out / "atexit").write_text("done"))
        print("buffered", end="")  # stdout is flushed
        exit_now(3)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3
    assert proc.stdout == "buffered"
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "done"


def test_exit_now_reports_a_message_status_like_sys_exit():
    script = "from kibs_mc.cli import exit_now; exit_now('kibs-mc: something went wrong')"
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "something went wrong" in proc.stderr
