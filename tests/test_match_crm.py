"""A CRM+ organization for the pre-match tests, answering ONLY in the documented shapes
(/work/shared/virtuous-api.md "Documented shapes"; docs.virtuous.org find-a-contact and
query-contacts-by-filters; virtuous-ts `Contact`, `query-options.ts`), served through
`httpx.MockTransport`: no socket, and no reliance on the local sandbox's behaviour.

- `GET /api/Contact/QueryOptions`: `{"options": [{"parameter", "type", "operatorOptions":
  [{"operator", ...}]}]}` (or the status the test sets)
- `POST /api/Contact/Query/FullContact?skip=&take=`: a body WITHOUT `groups`, an unlisted
  parameter or take > 1000 is answered 400 in ASP.NET's `{"message", "modelState"}`; otherwise
  `{"list": [full contacts], "total": n}` sorted by id
- `GET /api/Contact/Find?referenceSource=&referenceId=` / `?email=`: the full nested contact or
  an empty 404
- writes (`Contact/Batch`, `Contact/Transaction`, `v2/Gift/Transactions`) are held until
  `run_batch()`, which matches like the docs say (reference, then email) and stamps
  `modifiedDateTimeUtc` with the fake's clock
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

Hook = Callable[[httpx.Request], httpx.Response | None]


def options(*offered: tuple[str, list[str]]) -> dict[str, Any]:
    """A QueryOptions answer offering these (parameter, operators)."""
    return {"options": [{"parameter": p, "type": "Text",
                         "operatorOptions": [{"operator": o, "multipleValuesAllowed": False,
                                              "valueRequired": o != "IsKnown"} for o in ops],
                         "valueOptions": []} for p, ops in offered],
            "operatorOptions": []}


DEFAULT_OPTIONS = options(("Contact Id", ["Is", "IsKnown"]),
                          ("Last Modified Date", ["OnOrAfter", "OnOrBefore", "Between"]),
                          ("Contact Name", ["Is", "Contains"]))


def invalid(path: str, message: str) -> httpx.Response:
    return httpx.Response(400, json={"message": "The request is invalid.",
                                     "modelState": {path: [message]}})


class FakeCrm:
    """One organization's contacts (full records) and held transactions."""

    def __init__(self, *, organization: str = "Sandbox Organization",
                 query_options: dict[str, Any] | int = DEFAULT_OPTIONS) -> None:
        self.organization = organization
        self.query_options = query_options
        self.contacts: dict[int, dict[str, Any]] = {}
        self.held: list[tuple[str, dict[str, Any]]] = []  # (referenceSource, flat contact)
        self.held_gifts: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[httpx.Request] = []
        self.hooks: list[Hook] = []  # first answer that is not None wins
        self.clock = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
        self.next_id = 1001
        self.without_references = False  # answer lists as the lighter ContactLookup

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # --- what the tests look at -------------------------------------------------------------
    def sent(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def bodies(self, path: str = "/api/Contact/Query/FullContact") -> list[Any]:
        return [json.loads(r.content) for r in self.sent(path)]

    def by_reference(self, source: str, ref: str) -> dict[str, Any] | None:
        return next((c for c in self.contacts.values()
                     if {"source": source, "id": ref} in c["contactReferences"]), None)

    def by_email(self, email: str) -> dict[str, Any] | None:
        wanted = email.strip().lower()
        return next((c for c in self.contacts.values() for p in c["contactIndividuals"]
                     for m in p["contactMethods"] if m["value"].lower() == wanted), None)

    # --- the organization's data ------------------------------------------------------------
    def add(self, source: str, ref: str, first: str, last: str, email: str) -> dict[str, Any]:
        """A contact that exists (as the nightly batch would have created it)."""
        ident, self.next_id = self.next_id, self.next_id + 1
        stamp = self.clock.isoformat().replace("+00:00", "Z")
        record = {"id": ident, "contactType": "Household", "name": f"{first} {last}",
                  "createDateTimeUtc": stamp, "modifiedDateTimeUtc": stamp,
                  "address": {"address1": "1 Main St", "city": "Gotham", "state": "NJ",
                              "postal": "07001", "country": "US", "isPrimary": True},
                  "contactReferences": [{"source": source, "id": ref}] if ref else [],
                  "contactIndividuals": [{"id": ident * 10, "firstName": first,
                                          "lastName": last, "isPrimary": True,
                                          "contactMethods": [{"type": "Home Email",
                                                              "value": email,
                                                              "isPrimary": True}]}]}
        self.contacts[ident] = record
        return record

    def _merge(self, record: dict[str, Any], source: str, flat: dict[str, Any]) -> None:
        person = record["contactIndividuals"][0]
        for key, field in (("firstName", "firstName"), ("lastName", "lastName"),
                           ("firstname", "firstName"), ("lastname", "lastName")):
            if flat.get(key):
                person[field] = flat[key]
        email = flat.get("email")
        if email and not any(m["value"].lower() == email.strip().lower()
                             for m in person["contactMethods"]):
            person["contactMethods"].append({"type": flat.get("emailType") or "Home Email",
                                             "value": email.strip(), "isPrimary": False})
        ref = {"source": source, "id": str(flat.get("referenceId"))}
        if flat.get("referenceId") and ref not in record["contactReferences"]:
            record["contactReferences"].append(ref)
        record["modifiedDateTimeUtc"] = self.clock.isoformat().replace("+00:00", "Z")

    def _resolve(self, source: str, flat: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The contact a held transaction lands on, and whether it was created."""
        if flat.get("id") and int(flat["id"]) in self.contacts:
            return self.contacts[int(flat["id"])], False
        found = (self.by_reference(source, str(flat.get("referenceId")))
                 if flat.get("referenceId") else None)
        found = found or (self.by_email(flat["email"]) if flat.get("email") else None)
        if found is not None:
            return found, False
        first = flat.get("firstName") or flat.get("firstname") or ""
        last = flat.get("lastName") or flat.get("lastname") or ""
        return self.add(source, str(flat.get("referenceId") or ""), first, last,
                        (flat.get("email") or "").strip()), True

    def run_batch(self) -> dict[str, int]:
        """The nightly batch: each held transaction in order merges or creates."""
        self.clock += timedelta(days=1)
        out = {"contactsCreated": 0, "contactsUpdated": 0, "giftsCreated": 0}
        for source, flat in self.held:
            record, created = self._resolve(source, flat)
            self._merge(record, source, flat)
            out["contactsCreated" if created else "contactsUpdated"] += 1
        for source, gift in self.held_gifts:
            record, created = self._resolve(source, gift.get("contact") or {})
            if created:
                self._merge(record, source, gift["contact"])
                out["contactsCreated"] += 1
            out["giftsCreated"] += 1
        self.held, self.held_gifts = [], []
        return out

    # --- the API ----------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for hook in self.hooks:
            if (answer := hook(request)) is not None:
                return answer
        path, method = request.url.path, request.method
        if (method, path) == ("GET", "/api/Organization/Current"):
            return httpx.Response(200, json={"organizationName": self.organization,
                                             "organizationTimeZone": "Eastern Standard Time"})
        if (method, path) == ("GET", "/api/Contact/QueryOptions"):
            if isinstance(self.query_options, int):
                return (invalid("request", "No query options for this key.")
                        if self.query_options == 400 else httpx.Response(self.query_options))
            return httpx.Response(200, json=self.query_options)
        if (method, path) == ("POST", "/api/Contact/Query/FullContact"):
            return self.query(request)
        if (method, path) == ("GET", "/api/Contact/Find"):
            q = request.url.params
            found = (self.by_reference(q["referenceSource"], q["referenceId"])
                     if "referenceId" in q else self.by_email(q.get("email", "")))
            return httpx.Response(200, json=found) if found else httpx.Response(404)
        if (method, path) == ("POST", "/api/Contact/Batch"):
            body = json.loads(request.content)
            self.held += [(body["referenceSource"], c) for c in body["contacts"]]
            return httpx.Response(200)
        if (method, path) == ("POST", "/api/Contact/Transaction"):
            body = json.loads(request.content)
            self.held.append((body["referenceSource"], body))
            return httpx.Response(200)
        if (method, path) == ("GET", "/api/Gift/QueryOptions"):  # the loader's first-send check
            return httpx.Response(200, json=options(("Transaction Source", ["Is"])))
        if (method, path) == ("POST", "/api/Gift/Query/FullGift"):  # no gift imported here yet
            return httpx.Response(200, json={"list": [], "total": 0})
        if (method, path) == ("POST", "/api/v2/Gift/Transactions"):
            body = json.loads(request.content)
            self.held_gifts += [(body["transactionSource"], g) for g in body["transactions"]]
            return httpx.Response(200)
        return httpx.Response(404)

    def _offered(self) -> dict[str, set[str]]:
        if isinstance(self.query_options, int):
            return {}
        return {o["parameter"]: {x["operator"] for x in o["operatorOptions"]}
                for o in self.query_options["options"]}

    def query(self, request: httpx.Request) -> httpx.Response:
        """Query/FullContact as documented (see the module docstring)."""
        body = json.loads(request.content or b"{}")
        groups = body.get("groups") if isinstance(body, dict) else None
        if not isinstance(groups, list) or not groups or not all(
                isinstance(g, dict) and g.get("conditions") for g in groups):
            return invalid("request.Groups", "The Groups field is required.")
        take = int(request.url.params.get("take", "100"))
        if take > 1000:
            return invalid("take", "take must be 1000 or less.")
        offered = self._offered()
        tests = []
        for g, group in enumerate(groups):
            for c, cond in enumerate(group["conditions"]):
                if cond.get("operator") not in offered.get(cond.get("parameter"), set()):
                    return invalid(f"request.Groups[{g}].Conditions[{c}]",
                                   f"Unknown parameter or operator {cond.get('parameter')!r}.")
                tests.append(cond)
        picked = [c for c in sorted(self.contacts.values(), key=lambda c: c["id"])
                  if all(self._meets(c, t) for t in tests)]
        skip = int(request.url.params.get("skip", "0"))
        page = [dict(c) for c in picked[skip:skip + take]]
        if self.without_references:
            for c in page:
                c.pop("contactReferences")
        return httpx.Response(200, json={"list": page, "total": len(picked)})

    @staticmethod
    def _meets(contact: dict[str, Any], cond: dict[str, Any]) -> bool:
        if cond["operator"] == "IsKnown":
            return True
        # date values are day-grained: the contact's modified DAY against MM/DD/YYYY
        day = datetime.fromisoformat(contact["modifiedDateTimeUtc"].replace("Z", "+00:00"))
        value = datetime.strptime(cond["value"], "%m/%d/%Y").date()
        return day.date() >= value
