"""`runtime.local up` notices Ctrl-C even when the kernel hands the signal to another thread,
and even when it was started with SIGINT ignored (a background job of a non-interactive shell)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# A helper thread takes SIGINT itself (as one of the moto server's threads may) once the main
# thread is waiting for Ctrl-C; the main thread must still raise KeyboardInterrupt. (With an
# untimed `threading.Event().wait()` this program never ends.)
PROGRAM = """
import signal, threading, time
from runtime.local.main import interrupt_on_signals, wait_for_interrupt

signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job's parent leaves it
interrupt_on_signals()  # what `main` does first

def interrupt_from_this_thread():
    time.sleep(0.5)  # let the main thread block in the wait first
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

try:
    threading.Thread(target=interrupt_from_this_thread).start()
    wait_for_interrupt()
except KeyboardInterrupt:
    print("interrupted")
"""


def test_ctrl_c_taken_by_another_thread_still_interrupts_the_wait() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.strip() == "interrupted", done.stderr
