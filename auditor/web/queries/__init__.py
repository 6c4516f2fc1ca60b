"""Read-only queries behind the dashboard and the JSON API: results database -> view records.

Every function is blocking (call it from a worker thread) and reads only; none loads raw
payloads except `sample`. Each must stay fast on a database of a million samples: they read
findings (one row per provider per round) and use the summary indexes of `samples`.

Lists are keyset-paginated: a page ends with an opaque `next_cursor` (None on the last page)
naming the last row shown, so a page costs the same however deep it is and rows written
meanwhile neither repeat nor vanish. A cursor that does not decode raises `ValueError`.

The package's names are its API; each query lives in a module named for what it reads
(`_overview`, `_rounds`, `_providers`, `_findings`, `_samples`), cursors and limits in
`paging`, and what several share in `common`.
"""

from auditor.web.queries._findings import finding, findings
from auditor.web.queries._overview import incidents, overview
from auditor.web.queries._providers import provider_history, providers, public_url
from auditor.web.queries._rounds import round_detail, rounds
from auditor.web.queries._samples import evidence_samples, sample, samples
from auditor.web.queries.common import INCIDENTS_SHOWN
from auditor.web.queries.paging import MAX_ID, MAX_LIMIT, BadCursor

__all__ = [
    "INCIDENTS_SHOWN",
    "MAX_ID",
    "MAX_LIMIT",
    "BadCursor",
    "evidence_samples",
    "finding",
    "findings",
    "incidents",
    "overview",
    "provider_history",
    "providers",
    "public_url",
    "round_detail",
    "rounds",
    "sample",
    "samples",
]
