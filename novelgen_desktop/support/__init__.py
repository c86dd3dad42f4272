"""Support tools: the bug-report archive (``novelgen diagnose``)."""
