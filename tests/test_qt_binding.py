"""The pinned Qt binding survives many signal emissions on this Python.

PySide6 6.12.0 aborts on Python 3.11 after a few hundred ``Signal.emit`` calls
(``Fatal Python error: bool_dealloc``). The pin to 6.11.3 exists because of that; this test
fails if the pin drifts to a broken build. A subprocess, because the failure is an abort.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QCoreApplication, QObject, Signal

class Emitter(QObject):
    fired = Signal(bool, object)

app = QCoreApplication([])
emitter = Emitter()
received = []
emitter.fired.connect(lambda flag, value: received.append(flag))
for i in range(5000):
    emitter.fired.emit(i % 2 == 0, None)
print(len(received))
"""


def test_pyside6_emits_thousands_of_signals_without_aborting() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "5000"


def test_pinned_pyside6_version() -> None:
    from importlib.metadata import version

    assert version("PySide6-Essentials") == "6.11.3"
