"""Pre-match: what already exists in CRM+, predicted in the dry run and applied by `etl run`.

    spec `match:` -> cache (in the ledger file) -> polars joins -> prediction + policy

Two ways to learn which donors exist (docs/prematch.md says what each read proves):

- `method: bulk` pages full contact records (`POST /api/Contact/Query/FullContact?skip=&take=1000`,
  a documented `groups`/`conditions` body whose parameter names come from
  `GET /api/Contact/QueryOptions`) into a reference cache kept in the pipeline's SQLite ledger
  file: contact id, modified time, its `contactReferences` and the emails of its
  `contactIndividuals[].contactMethods[]`. Later refreshes ask for "Last Modified Date" on or
  after the day before the newest modified time cached (dates are day-grained). Without a
  documented query (QueryOptions 404/400 or lacking the names) or after a read that proved a
  signal nothing, Contact/Find fills in for the rows the cache does not know.
- `method: find` asks `GET /api/Contact/Find` once per distinct reference (then per distinct
  email of the rows still unknown); a 404 proves that value absent. The upper bound of requests
  is computed and shown first, and a lookup above `match.max_requests` is refused before it
  starts. What is found goes into the same cache.

Rows are then matched locally, with polars joins and no Python per row: by reference (the spec's
`keys.source` + the row's referenceId; for gifts `contact.referenceId`, and `contact.id` when the
row already names the contact), then by email (trimmed, lower-cased), in the order of `match.by`.
A row not in the cache whose reference or email appeared on an earlier row of the same run is
predicted "existing" too (`email_in_run`, `reference_in_run`): the nightly batch creates the
contact for the first row and merges the later ones into it. A row nothing found is "new"
only when a read proved each of its values absent (a complete read of that signal, or a Find
404); otherwise it is "unknown", and no policy skips it.

The dry run never opens the network unless asked (`refresh=True`, `etl validate --refresh-match`):
otherwise it predicts from the cache as it is, read-only, and says how old it is. `etl run`
refreshes the cache first (reads only; the organization is checked before), then applies the
policy to the rows it is about to send: `send` (send everything), `skip` (rows whose contact
exists become `skipped_existing` with the CRM+ contact id), `changed` (matched contacts whose
fields all equal the cached contact's are `skipped_existing` as unchanged; what the ledger already
accepted with the same payload hash is never sent anyway).

`etl run`'s side (`apply_policy`, rows kept back as `skipped_existing`) is etl/run/prematch.py.
May import: etl.load, etl.report, etl.prepare, etl.read, etl.spec, etl.transforms, etl.targets,
etl.base.

The package, in dependency order (each module imports only from those above it):

- `contacts`: a full CRM+ contact record parsed (id, modified, refs, emails, what it proves)
- `cache`: the cache's SQLite tables in the ledger file (and the proofs of absence)
- `signals`: each row's reference / email / contact.id, and the signal names
- `reader`: paced, retried reads (the budget) and the organization check
- `bulk`: Query/FullContact paging with bodies built from QueryOptions
- `fetch`: per-value Contact/Find, and `refresh` (organization, method, fallback)
- `matching`: the polars joins (`match_rows`, `changed_rows`) and the rows a policy keeps back
- `dry_run`: the dry run's `prematch` report block (`predict`, `prediction`, `MatchOptions`)
"""

from etl.match.bulk import refresh_bulk
from etl.match.cache import TABLES, Cache, CacheState, open_cache
from etl.match.contacts import Contact, norm_email, parse_contact
from etl.match.dry_run import MatchOptions, cache_info, predict, prediction
from etl.match.fetch import lookup_plan, refresh, refresh_find
from etl.match.matching import changed_rows, match_rows, matched_rows, skip_expr
from etl.match.reader import PAGE, MatchRefused, Reader
from etl.match.signals import SIGNALS, row_signals

__all__ = [
    "PAGE",
    "SIGNALS",
    "TABLES",
    "Cache",
    "CacheState",
    "Contact",
    "MatchOptions",
    "MatchRefused",
    "Reader",
    "cache_info",
    "changed_rows",
    "lookup_plan",
    "match_rows",
    "matched_rows",
    "norm_email",
    "open_cache",
    "parse_contact",
    "predict",
    "prediction",
    "refresh",
    "refresh_bulk",
    "refresh_find",
    "row_signals",
    "skip_expr",
]
