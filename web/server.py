"""``livecoach web``: run one edge in the foreground until SIGINT/SIGTERM.

With no Redis/PostgreSQL configured, the embedded servers are started (and migrated)
first, as for ``livecoach up``; with URLs configured, several edges can run side by
side against the same servers.
"""

from __future__ import annotations

import logging

from aiohttp import web

from pipeline.settings import Settings

log = logging.getLogger(__name__)


def run_edge(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    from pipeline.migrations import migrate
    from pipeline.runtime import resolved_services
    from web.app import create_app

    host = host or settings.web_host
    port = settings.web_port if port is None else port
    with resolved_services(settings) as urls:
        if settings.database_url is None:
            migrate(urls.database_url)  # embedded: nobody else will migrate it
        app = create_app(settings, redis_url=urls.redis_url, database_url=urls.database_url)
        print(f"livecoach edge on http://{host}:{port}/api/v1/live", flush=True)
        web.run_app(app, host=host, port=port, print=None, handle_signals=True)
    return 0
