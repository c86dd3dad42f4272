"""Feature flags: kill switches, A/B experiments, remote configuration, instant rollback.

``registry`` defines every flag; ``document`` checks flag files; ``flagset`` resolves the
layers and assigns experiment variants; ``history`` versions every change; ``remote`` fetches
the remote configuration; ``service`` is a process's live set; ``report`` compares variants.
See docs/flags.md.
"""
