"""Keeping the machine out of swap while ten browser tabs generate images.

Ten ChatGPT tabs can take several GB; when the machine runs short, the browser slows down or
the kernel kills something. This package watches the machine's, the browser's and this
app's memory and holds back dispatch (or frees memory) before that happens. The readings
that touch the operating system live in :mod:`novelgen_desktop.memory.probe`, so everything
that decides can be tested with synthetic readings.
"""
