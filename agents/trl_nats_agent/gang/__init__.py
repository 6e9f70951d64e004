"""Multi-node jobs: gang scheduling through the gangs KV bucket, for one agent.

A job with ``nodes = N > 1`` waits in the gang queue of its node shape. The agent that
fetches it (with the GPUs for one node free) becomes the gang's leader: it writes a
``forming`` gang record naming itself node rank 0 and a rendezvous endpoint on its own
address. Every agent watches the bucket; one with the GPUs free joins the oldest forming
gang it can host by compare-and-set, taking the next node rank. When N nodes have joined,
the leader claims the job in the jobs bucket (the usual CAS claim, with an allocation per
node) and marks the gang ``running``; every member then starts ``torchrun --nnodes=N
--node-rank=k`` against the leader's rendezvous.

Nothing partial survives: if the gang is not complete within ``gang_timeout_s`` the leader
aborts it and puts the job back in the queue (a wait, not a failed attempt), and each
member also gives up on its own clock after the timeout, so no GPU stays reserved by a
job that cannot start, even if the leader dies. Two gangs competing for the same agents
cannot deadlock: a leader that sees an older forming gang (by submission time, then job
id) aborts its own and joins that one, so at most one gang in a contended fleet is ever
collecting members. Once running, any node whose training ends with an error (or whose
agent disappears) moves the gang to ``stopping``, every node stops, and the leader writes
one outcome for the whole job: retried as one, up to its max_attempts.

See docs/scheduling.md for the full protocol and its failure cases.

Modules: ``protocol.py`` (the pure record changes), ``board.py`` (the KV watch and CAS),
``leader.py`` and ``member.py`` (the two roles), ``gangs.py`` (one agent's gang side).
"""
