"""Stand-ins for tests and benchmarks: the in-agent no-op trainer and the tiny local model builder.

Nothing in the agent's normal path uses them; a job runs the inline trainer only on an
agent started with ``--recipe-override inline:noop``.
"""
