"""A local DashScope-compatible server: the task API and video hosting with signed URLs.

Used by `wansync simulate`, the demo, the tests and the benchmarks, so that nothing
needs a real key or the internet. It speaks docs/development.md's API: Bearer key check, tasks going
PENDING → RUNNING → SUCCEEDED (or FAILED / CANCELED / UNKNOWN), cancel of a PENDING task,
task creation with uploads and the task list, and videos served with `Range`, `If-Range`,
`ETag` and URLs that expire (403 with an XML body after). Faults are scripted per request
(429, 5xx, resets, stalls, truncated or HTML bodies) and every request is recorded, so
tests can assert what the daemon actually sent.

Modules, each depending only on those above it:
  model   SimTask, Fault: plain data        reply   the HTTP handler base (answers)
  video   bodies, ETags, signed URLs        faults  answers that go wrong
  state   tasks, faults, stalls, the log    tasks   poll and cancel endpoints
  submit  create, uploads, the task list    server  routing; `Simulator` (start/stop)
"""

from .model import Fault, SimTask, sample_video
from .server import Simulator
from .state import Stall

__all__ = ["Fault", "SimTask", "Simulator", "Stall", "sample_video"]
