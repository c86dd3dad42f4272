"""Everything between "a worker handed us some bytes" and "a finished file is safely on disk".

The three modules are independent of the engine and of each other's internals:
:mod:`~novelgen_desktop.output.imagecheck` decides whether bytes are an image worth keeping,
:mod:`~novelgen_desktop.output.naming` decides where it goes, and
:mod:`~novelgen_desktop.output.writer` puts it there without ever leaving a half-written file.
"""
