"""An edge in a process of its own with ``tracemalloc`` on, for the tests that bound
what each socket costs it (``tests/web/test_ws_memory.py``).

``python -m tests.web.traced_edge web ...`` is ``livecoach web ...`` with tracing on
from before the edge is imported, and a thread that answers the test: when
``<data dir>/traced.req`` appears it writes the bytes Python holds now (allocated and
not freed, as ``tracemalloc`` counts them) to ``<data dir>/traced.out``. A count of
Python's own allocations, unlike the RSS, does not depend on when the allocator hands
memory back to the system, so a few hundred bytes per socket show.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tests.web.edge_process import EdgeProcess

REQUEST, ANSWER = "traced.req", "traced.out"


def _answer(folder: Path) -> None:
    request, answer = folder / REQUEST, folder / ANSWER
    while True:
        if request.exists():
            request.unlink()
            current, _ = tracemalloc.get_traced_memory()
            partial = answer.with_suffix(".tmp")
            partial.write_text(str(current))
            partial.rename(answer)
        time.sleep(0.05)


@dataclass
class TracedEdge(EdgeProcess):
    """An :class:`EdgeProcess` run through this module; :meth:`traced_bytes` asks it."""

    module: ClassVar[str] = __name__

    def traced_bytes(self, timeout_s: float = 10.0) -> int:
        """What the edge's Python holds now (bytes allocated and not freed)."""
        answer = self.data_dir / ANSWER
        answer.unlink(missing_ok=True)
        (self.data_dir / REQUEST).touch()
        deadline = time.monotonic() + timeout_s
        while not answer.exists():
            if time.monotonic() > deadline:
                raise AssertionError("the traced edge did not answer")
            time.sleep(0.02)
        return int(answer.read_text())


def main() -> int:
    tracemalloc.start(1)
    folder = Path(os.environ["LIVECOACH_DATA_DIR"])
    threading.Thread(target=_answer, args=(folder,), daemon=True, name="traced").start()
    from pipeline.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
