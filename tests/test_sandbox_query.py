"""Sandbox contract: the Query language (groups/conditions), operators, sorting, QueryOptions."""

from __future__ import annotations

import pytest
from sandbox_fixtures import gift, sandbox_fixture, sandbox_server_fixture  # noqa: F401

from etl.sandbox.config import SWITCHES
from etl.sandbox.query_ops import BY_TYPE, OPERATORS
from etl.sandbox.server import running_sandbox

GIFTS = [  # (transactionId, amount, giftDate, giftType, batch, currencyCode, isPrivate)
    ("A-1", 10, "2024-01-15", "Check", "run1", "USD", False),
    ("A-2", 20, "2024-02-15", "Cash", "run1", "USD", True),
    ("B-3", 30, "2024-03-15", "Credit", "run2", "CAD", False),
    ("B-4", 40, "2024-04-15", "EFT", None, "USD", False),
]


@pytest.fixture(name="loaded_server", scope="module")
def loaded_server_fixture():
    """One sandbox with GIFTS imported, for the whole module (the tests only read)."""
    with running_sandbox(rate_limit="none") as sandbox:
        _load(sandbox)
        yield sandbox


@pytest.fixture(name="loaded")
def loaded_fixture(loaded_server):
    yield loaded_server
    for name in SWITCHES:  # a test may flip a switch; put it back
        setattr(loaded_server.config, name, getattr(loaded_server.runtime.initial, name))


def _load(sandbox):
    items = []
    for tid, amount, day, kind, batch, currency, private in GIFTS:
        item = gift(tid, amount, giftDate=day, giftType=kind, currencyCode=currency,
                    isPrivate=private, receiptDate=day if tid != "B-4" else None,
                    contact={"referenceId": f"D-{tid}", "firstname": "Ada", "lastname": tid,
                             "email": f"{tid.lower()}@example.org"})
        if batch:
            item["batch"] = batch
        items.append(item)
    with sandbox.client() as c:
        r = c.post("/api/v2/Gift/Transactions", json={"transactionSource": "Legacy",
                                                      "transactions": items})
        assert r.status_code == 200, r.text
        c.post("/api/v2/Gift/Transaction", json=gift("W-5", 50, transactionSource="Web",
                                                     giftDate="2024-05-15"))
    sandbox.run_batch()


def _ids(sb, *conditions, path="/api/Gift/Query/FullGift", **options):
    body = {"groups": [{"conditions": list(conditions)}], **options}
    with sb.client() as c:
        r = c.post(path, json=body)
    assert r.status_code == 200, r.text
    return [g.get("transactionId", g["id"]) for g in r.json()["list"]]


def cond(parameter, operator, value=None, **more):
    return {"parameter": parameter, "operator": operator, "value": value, **more}


@pytest.mark.parametrize("condition, expected", [
    (cond("Transaction Source", "Is", "legacy"), ["A-1", "A-2", "B-3", "B-4"]),  # any case
    (cond("Transaction Source", "IsNot", "Legacy"), ["W-5"]),
    (cond("Transaction Id", "StartsWith", "B-"), ["B-3", "B-4"]),
    (cond("Transaction Id", "EndsWith", "-2"), ["A-2"]),
    (cond("Transaction Id", "Contains", "-"), ["A-1", "A-2", "B-3", "B-4", "W-5"]),
    (cond("Transaction Id", "In", values=["A-1", "W-5"]), ["A-1", "W-5"]),
    (cond("Transaction Id", "In", "A-1,B-3"), ["A-1", "B-3"]),
    (cond("Transaction Id", "NotIn", values=["A-1", "W-5"]), ["A-2", "B-3", "B-4"]),
    (cond("Transaction Id", "IsAnyOf", values=["a-2"]), ["A-2"]),
    (cond("Transaction Id", "IsNoneOf", values=["A-1", "A-2", "B-3"]), ["B-4", "W-5"]),
    (cond("Batch", "IsKnown"), ["A-1", "A-2", "B-3"]),
    (cond("Batch", "IsNotKnown"), ["B-4", "W-5"]),
    (cond("Batch", "IsNot", "run1"), ["B-3"]),  # as SQL: an unknown batch is not "not run1"
    (cond("Amount", "LessThan", "20"), ["A-1"]),
    (cond("Amount", "LessThanOrEqual", 20), ["A-1", "A-2"]),
    (cond("Amount", "GreaterThan", "40.00"), ["W-5"]),
    (cond("Amount", "GreaterThanOrEqual", "40"), ["B-4", "W-5"]),
    (cond("Amount", "Between", "15", secondaryValue="30"), ["A-2", "B-3"]),
    (cond("Amount", "Is", "30"), ["B-3"]),
    (cond("Gift Date", "Before", "02/15/2024"), ["A-1"]),
    (cond("Gift Date", "OnOrBefore", "2024-02-15"), ["A-1", "A-2"]),
    (cond("Gift Date", "After", "04/15/2024"), ["W-5"]),
    (cond("Gift Date", "OnOrAfter", "04/15/2024"), ["B-4", "W-5"]),
    (cond("Gift Date", "Is", "03/15/2024"), ["B-3"]),
    (cond("Gift Date", "Between", "2024-02-01", secondaryValue="03/31/2024"), ["A-2", "B-3"]),
    (cond("Receipt Date", "IsNotKnown"), ["B-4", "W-5"]),
    (cond("Gift Type", "IsAnyOf", values=["Cash", "Credit"]), ["A-2", "B-3"]),
    (cond("Currency Code", "Is", "CAD"), ["B-3"]),
    (cond("Is Private", "IsTrue"), ["A-2"]),
    (cond("Is Private", "IsFalse"), ["A-1", "B-3", "B-4", "W-5"]),
])
def test_gift_operators(loaded, condition, expected):
    assert _ids(loaded, condition) == expected


def test_conditions_are_and_groups_are_or(loaded):
    body = {"groups": [
        {"conditions": [cond("Transaction Source", "Is", "Legacy"), cond("Batch", "Is", "run1")]},
        {"conditions": [cond("Transaction Id", "Is", "W-5")]},
    ]}
    with loaded.client() as c:
        page = c.post("/api/Gift/Query/FullGift", json=body).json()
    assert [g["transactionId"] for g in page["list"]] == ["A-1", "A-2", "W-5"]
    assert page["total"] == 3


def test_contact_id_parameter(loaded):
    contact_id = loaded.state.gifts_for("Legacy", "B-3")[0]["contactId"]
    assert _ids(loaded, cond("Contact Id", "Is", str(contact_id))) == ["B-3"]


@pytest.mark.parametrize("options, expected", [
    ({}, ["A-1", "A-2", "B-3", "B-4", "W-5"]),
    ({"SortBy": "Amount", "Descending": True}, ["W-5", "B-4", "B-3", "A-2", "A-1"]),
    ({"sortby": "Gift Type"}, ["A-2", "A-1", "W-5", "B-3", "B-4"]),  # Cash, Check x2 (id order)
    ({"sortBy": "Batch"}, ["A-1", "A-2", "B-3", "B-4", "W-5"]),  # unknown batches last
    ({"SORTBY": "Id", "descending": "true"}, ["W-5", "B-4", "B-3", "A-2", "A-1"]),
])
def test_sorting(loaded, options, expected):
    assert _ids(loaded, cond("Amount", "IsKnown"), **options) == expected


def test_paging_totals_count_every_match(loaded):
    with loaded.client() as c:
        page = c.post("/api/Gift/Query?skip=1&take=2",
                      json={"groups": [{"conditions": [cond("Amount", "IsKnown")]}]}).json()
    assert page["total"] == 5 and [g["amount"] for g in page["list"]] == ["$20.00", "$30.00"]


@pytest.mark.parametrize("condition, path", [
    (cond("Project Code", "Is", "GEN"), "parameter"),  # seen in the docs, not offered here
    ({"parameter": "Amount", "operator": "Matches", "value": "1"}, "operator"),
    (cond("Amount", "Contains", "1"), "operator"),  # an operator of another type
    (cond("Amount", "Is", "ten"), "value"),
    (cond("Gift Date", "Is", "15.01.2024"), "value"),
    (cond("Gift Date", "Is"), "value"),
    (cond("Transaction Id", "IsAnyOf"), "value"),
])
def test_bad_conditions_are_model_state_400(loaded, condition, path):
    with loaded.client() as c:
        r = c.post("/api/Gift/Query", json={"groups": [{"conditions": [condition]}]})
    assert r.status_code == 400
    body = r.json()
    assert body["message"] == "The request is invalid."
    assert list(body["modelState"]) == [f"query.groups[0].conditions[0].{path}"]
    assert all(isinstance(m, str) for m in body["modelState"][f"query.groups[0].conditions[0]."
                                                              f"{path}"])


@pytest.mark.parametrize("body", [
    {"transactionSource": "Legacy"},
    {"transactionSource": "Legacy", "modifiedSince": "2024-01-01T00:00:00Z"},
    {},
    None,
])
@pytest.mark.parametrize("path", ["/api/Gift/Query", "/api/Gift/Query/FullGift",
                                  "/api/Contact/Query", "/api/Contact/Query/FullContact"])
def test_a_body_without_groups_is_refused(loaded, body, path):
    with loaded.client() as c:
        r = c.post(path, json=body) if body is not None else c.post(path)
    assert r.status_code == 400
    assert r.json()["message"] == "The request is invalid."
    assert set(r.json()["modelState"]) <= {"query", "query.groups"}


def test_ignore_mode_answers_the_whole_organization(loaded):
    loaded.config.query_without_groups = "ignore"
    with loaded.client() as c:
        page = c.post("/api/Gift/Query/FullGift", json={"transactionSource": "Web"}).json()
        contacts = c.post("/api/Contact/Query", json={"referenceSource": "nope"}).json()
    assert page["total"] == 5  # the flat filter did nothing
    assert {g["transactionSource"] for g in page["list"]} == {"Legacy", "Web"}
    assert contacts["total"] == len(loaded.state.contacts())


def test_contact_parameters(loaded):
    (first, *_rest) = sorted(loaded.state.contacts(), key=lambda c: c["id"])
    email = first["contactMethods"][0]["value"]
    path = "/api/Contact/Query/FullContact"
    assert _ids(loaded, cond("Email", "Is", email.upper()), path=path) == [first["id"]]
    assert len(_ids(loaded, cond("Reference Source", "Is", "Legacy"), path=path)) == 4
    assert _ids(loaded, cond("Reference Id", "Is", "D-A-1"), path=path) == [first["id"]]
    assert len(_ids(loaded, cond("Contact Type", "Is", "Household"), path=path)) == 5
    assert _ids(loaded, cond("Contact Id", "Is", first["id"]), path=path) == [first["id"]]


def test_query_options_list_exactly_what_runs(loaded):
    with loaded.client() as c:
        gifts = c.get("/api/Gift/QueryOptions").json()
        contacts = c.get("/api/Contact/QueryOptions").json()
    assert [o["operator"] for o in gifts["operatorOptions"]] == list(OPERATORS)
    names = [o["parameter"] for o in gifts["options"]]
    assert names[:11] == ["Gift Date", "Receipt Date", "Amount", "Gift Type", "Batch",
                          "Transaction Id", "Transaction Source", "Contact Id", "Currency Code",
                          "Last Modified Date", "Create Date"]
    assert {"Last Modified Date", "Create Date", "Contact Id", "Email", "Reference Source",
            "Reference Id"} <= {o["parameter"] for o in contacts["options"]}
    by_name = {o["parameter"]: o for o in gifts["options"]}
    assert by_name["Gift Type"]["valueOptions"] == [
        "Cash", "Check", "Credit", "EFT", "Stock", "NonCash", "Other"]
    between = next(o for o in by_name["Amount"]["operatorOptions"] if o["operator"] == "Between")
    assert between == {"operator": "Between", "multipleValuesAllowed": False,
                       "valueRequired": True}
    # every offered (parameter, operator) pair is accepted by the query itself
    with loaded.client() as c:
        for option in gifts["options"]:
            assert [o["operator"] for o in option["operatorOptions"]] == list(
                BY_TYPE[option["type"]])
            for op in option["operatorOptions"]:
                value = {"Date": "01/01/2024", "Decimal": "1", "Int": "1"}.get(
                    option["type"], "x")
                body = {"groups": [{"conditions": [{
                    "parameter": option["parameter"], "operator": op["operator"],
                    "value": value if op["valueRequired"] else None, "secondaryValue": value,
                    "values": [value] if op["multipleValuesAllowed"] else None}]}]}
                r = c.post("/api/Gift/Query", json=body)
                assert r.status_code == 200, (option["parameter"], op, r.text)


def test_a_hidden_parameter_is_neither_offered_nor_accepted(loaded):
    loaded.config.query_options_hide = ("Batch",)
    with loaded.client() as c:
        names = [o["parameter"] for o in c.get("/api/Gift/QueryOptions").json()["options"]]
        r = c.post("/api/Gift/Query",
                   json={"groups": [{"conditions": [cond("Batch", "Is", "run1")]}]})
    assert "Batch" not in names and "Transaction Source" in names
    assert r.status_code == 400
    assert list(r.json()["modelState"]) == ["query.groups[0].conditions[0].parameter"]


def test_gift_type_value_options_follow_the_configured_gift_types(sandbox):
    sandbox.config.gift_types = ("Cash", "Electronic Funds Transfer")
    with sandbox.client() as c:
        options = c.get("/api/Gift/QueryOptions").json()["options"]
    (gift_type,) = [o for o in options if o["parameter"] == "Gift Type"]
    assert gift_type["valueOptions"] == ["Cash", "Electronic Funds Transfer"]
