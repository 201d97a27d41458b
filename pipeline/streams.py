"""Layout of topics in Redis: one stream per topic partition.

Shared by the Faust transport (:mod:`pipeline.transport`) and by code that reads or
writes topics without Faust (the web edge). Owned by the transport work; see its docs.
"""
