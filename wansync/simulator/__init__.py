"""A local DashScope-compatible server: the task API, video and picture hosting.

Used by `wansync simulate`, the demo, the tests and the benchmarks, so that nothing
needs a real key or the internet. It speaks the task API as docs/development.md
describes it: Bearer key check, tasks going PENDING → RUNNING → SUCCEEDED (or FAILED /
CANCELED / UNKNOWN), cancel of a PENDING task, the create endpoint of every kind in the
kinds table (checked as the vendor checks it), uploads, the task list, and the files:
videos and real PNG/JPEG/WebP pictures served with `Range`, `If-Range`, `ETag` and URLs
that expire (403 with an XML body after). Faults are scripted per request (429, 5xx,
resets, stalls, truncated or HTML bodies) and every request is recorded, so tests can
assert what the daemon actually sent.

Modules, each depending only on those above it:
  model      SimTask, Fault: plain data       reply     the HTTP handler base (answers)
  imagefiles PNG, JPEG, WebP from the stdlib  video     bodies, ETags, signed URLs
  pictures   picture bodies, URLs, answers    faults    answers that go wrong
  state      tasks, faults, stalls, the log   tasks     poll and cancel endpoints
  submit     create (every kind), uploads     tasklist  the task list
  server     routing; `Simulator` (start/stop)
"""

from .model import Fault, SimTask, sample_video
from .server import Simulator
from .state import Stall

__all__ = ["Fault", "SimTask", "Simulator", "Stall", "sample_video"]
