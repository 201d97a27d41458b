"""A Faust transport driver for Redis Streams, usable on its own.

This package imports nothing else of livecoach; an application only sets its broker
URL to ``redis://`` (or ``rediss://``) once the package is installed, because the
``faust.transports`` entry points in ``pyproject.toml`` name
:class:`pipeline.transport.driver.Transport`.

Modules, from the bottom up (each imports only those above it):

* :mod:`.keys`: every Redis key the transport writes.
* :mod:`.errors`: its exception tree and the errors it retries.
* :mod:`.tasks`, :mod:`.clients`: stopping tasks for sure; redis-py clients.
* :mod:`.topics`: topic metadata: stored partition counts, incarnations, the registry
  of consumer groups, deleting a topic.
* :mod:`.streams`: topics as streams, Faust-free (the web edge uses it directly).
* :mod:`.coordination`, :mod:`.compaction`: consumer groups; changelog compaction.
* :mod:`.producer`, :mod:`.consumer`, :mod:`.driver`: what Faust loads.

See ``docs/transport.md``.
"""
