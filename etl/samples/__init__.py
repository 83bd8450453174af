"""The sample pipelines and data the README and `etl demo` use, from a checkout or a wheel.

In a checkout they are `pipelines/` and `sample_data/` at the top; a wheel carries copies as
`etl/samples/pipelines` and `etl/samples/sample_data` (setup.py). The pipelines name their data
as `../sample_data/...`, so both folders sit side by side under `sample_root()`.
Imports nothing of etl but etl.base: any layer may use it.
"""

from __future__ import annotations

from pathlib import Path

from etl.base.errors import EtlError

SAMPLE_PIPELINES = ("legacy_contacts", "legacy_gifts", "nightly_gifts_drop")


class SamplesMissing(EtlError):
    """Neither the installed copies nor a checkout's folders are there (exit 2)."""


def sample_root() -> Path:
    """The folder holding `pipelines/` and `sample_data/`: the installed copies, else the
    checkout's. The folder may be read-only (site-packages): write reports and ledgers
    elsewhere (`etl demo --out`, `out=`, `ledger=`)."""
    here = Path(__file__).resolve().parent
    for root in (here, here.parents[1]):
        if (root / "pipelines").is_dir() and (root / "sample_data").is_dir():
            return root
    raise SamplesMissing(f"the sample pipelines are missing: neither {here}/pipelines nor "
                         f"{here.parents[1]}/pipelines exists (reinstall virtuous-etl)")


def sample_spec(name: str) -> Path:
    """The path of one bundled pipeline, e.g. sample_spec("legacy_contacts")."""
    if name not in SAMPLE_PIPELINES:
        raise ValueError(f"no sample pipeline {name!r}; known: {', '.join(SAMPLE_PIPELINES)}")
    return sample_root() / "pipelines" / f"{name}.yaml"
