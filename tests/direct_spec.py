"""A contact pipeline on the direct path (`load.create: direct`) for the test_direct* files."""

from __future__ import annotations

from pathlib import Path


def write_spec(folder: Path, rows: list[tuple[str, str, str, str]], load: str = "",
               mappings: str = "", per_hour: int = 1_000_000) -> Path:
    """contacts.csv (DonorID, First, Last, Email) and contacts.yaml beside it; `load` adds
    `, key: value` pairs to the load section."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["DonorID,First,Last,Email"] + [",".join(r) for r in rows]
    (folder / "contacts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = folder / "contacts.yaml"
    spec.write_text(f"""name: contacts
target: contact_transaction
source: {{path: contacts.csv}}
keys: {{source: LegacyCRM, id: {{column: DonorID}}}}
mappings:
  firstName: First
  lastName: Last
  email: Email
  emailType: {{constant: Home Email}}
  contactType: {{constant: Household}}
{mappings}load: {{requests_per_hour: {per_hour}, create: direct, max_attempts: 3{load}}}
""", encoding="utf-8")
    return spec


def donors(n: int, *, email: dict[int, str] | None = None) -> list[tuple[str, str, str, str]]:
    """n rows D0.. with emails d<i>@example.org (or as `email` says; "" for none)."""
    return [(f"D{i}", "Ann", "Lee", (email or {}).get(i, f"d{i}@example.org")) for i in range(n)]
