"""Load tests that drive the hub as a black box through its command line.

``novelgen serve`` (the hub and its job service) and ``novelgen sim-worker`` (simulated tabs)
run as separate processes, exactly as a user starts them; a small client written from
``docs/protocol.md`` alone (:mod:`benchmarks.loadtest.client`) submits a job and follows it.
Faults are injected through the simulated workers' options and by SIGKILLing the hub. At the
end the store is read directly (SQLite, image files, manifest) to count lost and duplicated
work. ``python -m benchmarks.loadtest --help`` lists the commands; ``tests/loadtest/`` runs a
fast subset in CI.
"""
