"""Pure functions of the import (no stack): header guesses, encodings, row conversion, the
update policy's fill, the merge rule and CSV-injection guard."""
import codecs

import pytest

from crm_common.errors import BadRequest, ValidationFailed
from gateway.routes.imports import safe_cell
from services.contacts import imports
from services.contacts.import_jobs import fill
from services.contacts.merge import _connected, merged_fields


@pytest.mark.parametrize("header,target", [
    ("Email", "email"), ("E-mail", "email"), ("Почта", "email"), ("Correo electrónico", "email"),
    ("Email 2", "email"), ("Work email", "email:work"), ("Telefono", "phone"),
    ("Teléfono", "phone"), ("Telefon", "phone"), ("Cellulare", "phone:mobile"),
    ("Phone (work)", "phone:work"), ("Рабочий телефон", "phone:work"), ("Nome", "first_name"),
    ("Vorname", "first_name"), ("Имя", "first_name"), ("Cognome", "last_name"),
    ("Apellidos", "last_name"), ("Name", "full_name"), ("ФИО", "full_name"),
    ("Azienda", "company"), ("Società", "company"), ("Компания", "company"),
    ("Ruolo", "position"), ("Job title", "position"), ("Tags", "tags"),
    ("Owner", "owner_email"), ("Compleanno", "birthday"), ("Stato", "status"),
    ("Budget €", "custom.budget"), ("Codice cliente", "custom.codice_cliente"),
    ("id", "ignore"), ("", "ignore"), ("Hotel", "custom.hotel"),
])
def test_header_guesses(header, target):
    assert imports.guess_target(header) == target


def test_encodings_and_delimiters():
    ru = "Имя;Фамилия;Почта\nИван;Петров;ivan@example.ru\nМария;Сидорова;m@example.ru\n"
    assert imports.inspect("a.csv", ru.encode("cp1251")) == {
        "format": "csv", "encoding": "cp1251", "delimiter": ";"}
    fr = "Prénom,Nom,Société\nFrançois,Lefèvre,Société Générale\nJürgen,Größe,Müller\n"
    assert imports.inspect("a.csv", fr.encode("latin-1"))["encoding"] == "cp1252"
    assert imports.inspect("a.csv", codecs.BOM_UTF8 + fr.encode())["encoding"] == "utf-8-sig"
    assert imports.inspect("a.csv", "a\tb\n1\t2\n".encode())["delimiter"] == "\t"
    assert imports.inspect("a.xlsx", b"PK\x03\x04rest")["format"] == "xlsx"
    with pytest.raises(BadRequest):
        imports.inspect("a.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


def test_mapping_errors():
    with pytest.raises(ValidationFailed) as error:
        imports.resolve_mapping(["Email"], {"Email": "salary", "Nope": "email"})
    assert set(error.value.details["fields"]["mapping"]) == {"Email", "Nope"}
    with pytest.raises(ValidationFailed):
        imports.resolve_mapping(["Colour", "Size"])


def test_row_keeps_what_is_valid():
    plan = imports.resolve_mapping(["Name", "Email", "Phone", "Stato", "Birthday", "Extra"])
    fields, errors = imports.convert_row(
        ["Ada Lovelace", "ADA@x.org; bad@", "'+39 333 123 4567, 02 1234 5678", "cliente",
         "10.12.1815", 7.0], plan, "IT")
    assert (fields["first_name"], fields["last_name"]) == ("Ada", "Lovelace")
    assert [e["email"] for e in fields["emails"]] == ["ada@x.org"]
    assert [p["e164"] for p in fields["phones"]] == ["+393331234567", "+390212345678"]
    assert fields["status"] == "customer" and fields["birthday"] == "1815-12-10"
    assert fields["custom"] == {"extra": 7.0}
    assert errors == [{"column": "Email", "field": "email", "reason": "Not a valid email address.",
                       "value": "bad@"}]


def test_fill_never_overwrites():
    doc = {"first_name": "A", "position": None, "emails": [{"email": "a@x.org", "type": "work"}],
           "phones": [], "tags": ["x"], "custom": {"k": 1}}
    fields = {"first_name": "B", "position": "CTO", "emails": [{"email": "b@x.org", "type": "work"}],
              "phones": [], "tags": ["y"], "custom": {"k": 2, "j": 3}}
    changed = fill(doc, fields, {}, None)
    assert changed == {"position", "emails", "tags", "custom"}
    assert doc["first_name"] == "A" and doc["position"] == "CTO"
    assert [e["email"] for e in doc["emails"]] == ["a@x.org", "b@x.org"]
    assert doc["custom"] == {"k": 1, "j": 3} and doc["tags"] == ["x", "y"]
    assert fill(doc, fields, {}, None) == set()  # applying it again changes nothing


def test_merge_rule():
    survivor = {"_id": "s", "first_name": "S", "position": "", "emails": [{"email": "s@x"}],
                "phones": [{"e164": "+1"}], "tags": ["a"], "custom": {"t": "gold"},
                "company_id": None}
    one = {"_id": "1", "first_name": "One", "position": "CTO", "emails": [{"email": "o@x"}],
           "phones": [{"e164": "+1"}, {"e164": "+2"}], "tags": ["b"], "custom": {"t": "x", "u": 1},
           "company_id": "c1", "company_name": "C1", "do_not_contact": True}
    out = merged_fields(survivor, [one])
    assert out["first_name"] == "S" and out["position"] == "CTO"
    assert out["company_id"] == "c1" and out["company_name"] == "C1"
    assert [e["email"] for e in out["emails"]] == ["s@x", "o@x"]
    assert [p["e164"] for p in out["phones"]] == ["+1", "+2"]
    assert out["custom"] == {"t": "gold", "u": 1} and out["do_not_contact"] is True
    # the values a user picked survive as they are (an empty one too)
    picked = merged_fields(survivor, [one], {"first_name": "1", "position": "s"})
    assert picked["first_name"] == "One" and picked["position"] == ""


def test_groups_join_through_shared_members():
    groups = _connected([("email", "a", ["1", "2"]), ("phone", "p", ["2", "3"]),
                         ("name_company", "n", ["4", "5"])])
    assert sorted((sorted(ids), sorted(reasons)) for ids, reasons, _ in groups) == [
        (["1", "2", "3"], ["email", "phone"]), (["4", "5"], ["name_company"])]


def test_csv_injection_guard():
    assert [safe_cell(v) for v in ("=1+1", "+39", "-2", "@x", "\tx", "ok", None, 5)] == [
        "'=1+1", "'+39", "'-2", "'@x", "'\tx", "ok", "", "5"]
    assert imports._text("'=1+1") == "=1+1"  # read back by the import
