#!/usr/bin/env python3
"""The legacy_gifts dry run written the obvious way with pandas + pandera (pandas backend).

    python bench/baseline_pandas.py FILE OUT_DIR

Same input (the generated Excel UTF-8 gifts export), the same mappings and rules as
pipelines/legacy_gifts.yaml: amounts parsed strictly ("$1,234.50", "(25.00)", thousands in
groups of three, no "1e3"), dates %m/%d/%Y, pay methods mapped, currency trimmed/upper-cased
with USD as default, names whitespace-collapsed and title-cased, emails normalized and checked,
Y/N to booleans, two designations (the first gets the rest), duplicate ids rejected, amount
positive with at most 2 decimals and <= 1,000,000, currency USD/CAD, no future dates,
designations summing to the amount. Writes rejects.csv and payloads.jsonl like the tool and
prints one line of counts. A baseline for bench/bench_compare.py, not a second implementation:
it has none of the tool's line numbers, ragged-row checks or report.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

NULLS = ["", "N/A", "NULL"]
PAY = {"CC": "Credit", "CHK": "Check", "CASH": "Cash", "EFT": "EFT", "ACH": "EFT", "STK": "Stock"}
YES_NO = {"y": True, "yes": True, "true": True, "1": True, "n": False, "no": False,
          "false": False, "0": False}
NUMBER = r"(?:(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)"
CUR = r"(?:[$€£]|[A-Za-z]{3})"
AMOUNT = re.compile(rf"^(?:-?\s*{NUMBER}(?:\s*{CUR})?|-?\s*{CUR}\s*{NUMBER}|\(\s*{NUMBER}\s*\)"
                    rf"(?:\s*{CUR})?|\(\s*{CUR}\s*{NUMBER}\s*\))$")
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL = r"^[^@\s;,<>()\[\]\"']+@" + LABEL + r"(?:\." + LABEL + r")*\.[A-Za-z]{2,}$"


def parse_amount(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    text = s.str.strip()
    ok = text.str.match(AMOUNT) | text.isna()
    value = pd.to_numeric(text.str.replace(r"[^0-9.]", "", regex=True), errors="coerce")
    negative = text.str.match(r"^[^0-9.,]*[-(]").fillna(False).astype(bool)
    value = value.where(~negative, -value).where(ok)
    return value, text.notna() & ~ok


def clean_text(s: pd.Series) -> pd.Series:
    out = s.str.replace(r"\s+", " ", regex=True).str.strip()
    return out.where(out != "")


def main(argv: list[str]) -> int:
    src, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    raw = pd.read_csv(src, dtype=str, keep_default_na=False, na_values=NULLS,
                      encoding="utf-8-sig")
    df = pd.DataFrame(index=raw.index)
    errors: list[pd.DataFrame] = []

    def fail(mask: pd.Series, field: str, rule: str) -> None:
        if mask.any():
            errors.append(pd.DataFrame({"_row": raw.index[mask.fillna(False).astype(bool)],
                                        "_field": field, "_rule": rule}))

    df["transactionSource"] = "LegacyCRM"
    df["transactionId"] = raw["GiftID"].str.strip()
    df["amount"], bad = parse_amount(raw["Amount"])
    fail(bad, "amount", "parse_amount")
    dates = pd.to_datetime(raw["GiftDate"].str.strip(), format="%m/%d/%Y", errors="coerce")
    fail(raw["GiftDate"].notna() & dates.isna(), "giftDate", "parse_date")
    df["giftDate"] = dates.dt.date
    df["giftType"] = raw["PayMethod"].map(PAY)
    fail(raw["PayMethod"].notna() & df["giftType"].isna(), "giftType", "value_map")
    df["currencyCode"] = raw["Currency"].str.strip().str.upper().fillna("USD")
    df["segment"] = clean_text(raw["Segment"])
    df["checkNumber"] = clean_text(raw["CheckNo"])
    df["notes"] = clean_text(raw["Memo"])
    df["isPrivate"] = raw["Anonymous"].str.strip().str.lower().map(YES_NO)
    fail(raw["Anonymous"].notna() & df["isPrivate"].isna(), "isPrivate", "boolean")
    df["contact.referenceId"] = clean_text(raw["DonorID"])
    df["contact.firstname"] = clean_text(raw["DonorFirst"]).str.title()
    df["contact.lastname"] = clean_text(raw["DonorLast"]).str.title()
    email = raw["DonorEmail"].str.strip().str.lower().str.removeprefix("mailto:")
    df["contact.email"] = email.where(email != "")
    fund2_amount, bad = parse_amount(raw["Fund2Amount"])
    fail(bad, "designations.1.amountDesignated", "parse_amount")
    df["d0.code"], df["d1.code"] = clean_text(raw["Fund"]), clean_text(raw["Fund2"])
    df["d1.amount"] = fund2_amount.where(df["d1.code"].notna())
    df["d0.amount"] = (df["amount"] - df["d1.amount"].fillna(0)).round(2)

    schema = pa.DataFrameSchema({
        "transactionId": pa.Column(str, nullable=False),
        "amount": pa.Column(float, [pa.Check.gt(0), pa.Check.le(1_000_000)], nullable=False),
        "giftDate": pa.Column(object, pa.Check(lambda s: s <= dt.date.today(),
                                               element_wise=False), nullable=False),
        "giftType": pa.Column(object, nullable=False),
        "currencyCode": pa.Column(str, pa.Check.isin(["USD", "CAD"])),
        "contact.email": pa.Column(object, pa.Check.str_matches(EMAIL), nullable=True),
    })
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.dropna(subset=["index"])
        errors.append(pd.DataFrame({"_row": cases["index"].astype(int),
                                    "_field": cases["column"], "_rule": cases["check"]}))
    fail((df["amount"] * 100).round(6) % 1 != 0, "amount", "two_decimals")
    fail(df["d0.amount"] < 0, "designations", "designations_sum")
    fail(df["contact.referenceId"].isna(), "contact", "contact_required")
    for column in ("notes", "contact.firstname", "contact.lastname", "segment", "checkNumber"):
        fail(df[column].str.contains(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", na=False), column,
             "control_chars")
    dup = df["transactionId"].notna() & df["transactionId"].duplicated(keep=False)
    fail(dup, "transactionId", "duplicate")

    failures = pd.concat(errors) if errors else pd.DataFrame(columns=["_row", "_field", "_rule"])
    reasons = failures.groupby("_row").agg({"_field": " | ".join, "_rule": " | ".join})
    rejects = raw.loc[reasons.index].join(reasons)
    rejects.insert(len(raw.columns), "_record", rejects.index + 1)
    rejects.to_csv(out / "rejects.csv", index=False)

    valid = df.drop(index=reasons.index)
    with (out / "payloads.jsonl").open("w", encoding="utf-8") as fh:
        for row in valid.to_dict("records"):
            payload: dict[str, object] = {}
            for key in ("transactionSource", "transactionId", "amount", "giftDate", "giftType",
                        "currencyCode", "segment", "checkNumber", "notes", "isPrivate"):
                value = row[key]
                if value is not None and not (isinstance(value, float) and pd.isna(value)):
                    payload[key] = value.isoformat() if key == "giftDate" else value
            contact = {k.split(".", 1)[1]: row[k] for k in row
                       if k.startswith("contact.") and isinstance(row[k], str)}
            payload["contact"] = contact
            payload["designations"] = [
                {"code": row[f"d{i}.code"], "amountDesignated": round(row[f"d{i}.amount"], 2)}
                for i in (0, 1) if isinstance(row[f"d{i}.code"], str)]
            fh.write(json.dumps(payload, ensure_ascii=False) + "\n")
    print(f"BASELINE rows={len(raw)} valid={len(valid)} rejected={len(reasons)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
