"""Reading a customer base from a spreadsheet: format and encoding detection, header
mapping in several languages, and one row turned into contact fields with per-field
errors. Pure functions (no database): the job in import_jobs.py drives them."""
import json
import re
from datetime import date, datetime

from marshmallow import ValidationError, validate

from crm_common.errors import ValidationFailed
from crm_common.fields import CustomFields
from crm_common.phones import normalize_phone
from crm_common.spreadsheets import (  # noqa: F401 (the import job reads files through here)
    IMPORT_LIMITS, MAX_CELL_CHARS, csv_rows, inspect, outside_limits, xlsx_rows)
from crm_common.text import fold


STATUSES = {"lead": "lead", "prospect": "prospect", "customer": "customer", "client": "customer",
            "cliente": "customer", "kunde": "customer", "клиент": "customer",
            "churned": "churned", "inactive": "inactive", "inattivo": "inactive",
            "лид": "lead", "potenziale": "prospect", "prospecto": "prospect"}
TRUE_WORDS = {"1", "true", "yes", "y", "si", "sí", "ja", "oui", "да", "x", "vero"}
FALSE_WORDS = {"0", "false", "no", "n", "nein", "non", "нет", "falso", ""}

# header words (folded, only letters/digits) -> target field; several languages
SYNONYMS = {
    "first_name": "firstname first givenname forename nome nombre vorname prenom prénom имя "
                  "primeiro nomeproprio",
    "last_name": "lastname last surname familyname cognome apellido apellidos nachname "
                 "familienname nom nomdefamille фамилия sobrenome",
    "full_name": "name fullname contact contactname contatto nominativo nomecompleto "
                 "nombrecompleto vollstandigername nomcomplet фио имяфамилия полноеимя контакт",
    "email": "email mail emailaddress emails correo correoelectronico posta postaelettronica "
             "почта электроннаяпочта емейл емэйл имейл emailadresse courriel adresseemail "
             "adressemail eposta",
    "phone": "phone phones phonenumber tel telephone telefono telefon телефон телефоны "
             "mobile mobilephone cell cellphone cellulare movil handy portable мобильный "
             "мобильныйтелефон numerotelefono telefone celular",
    "company": "company companyname organization organisation organizzazione azienda "
               "societa società empresa firma unternehmen entreprise societe компания "
               "организация фирма company_name companyname",
    "position": "position title jobtitle role ruolo posizione qualifica cargo puesto titel "
                "beruf poste fonction должность",
    "tags": "tags tag labels label etichette etichetta etiquetas etiqueta schlagworte "
            "étiquettes etiquettes теги метки",
    "owner_email": "owner owneremail responsabile propietario verantwortlich proprietaire "
                   "ответственный менеджер manager assignedto",
    "owner_id": "ownerid",
    "source": "source leadsource fonte origine origen quelle источник",
    "status": "status stato estado statut статус",
    "birthday": "birthday birthdate dateofbirth dob compleanno datadinascita cumpleanos "
                "fechadenacimiento geburtstag geburtsdatum anniversaire datedenaissance "
                "датарождения деньрождения",
    "do_not_contact": "donotcontact dnc nocontact noncontattare",
    "custom": "custom",
    "ignore": "id createdat updatedat lastcontactedat companyid possibleduplicates deletedat "
              "createdby",
}
PHONE_TYPES = {"mobile": "mobile cell cellulare movil handy portable мобильный celular",
               "work": "work office ufficio lavoro trabajo arbeit bureau рабочий business",
               "home": "home casa privat domicile домашний"}
EMAIL_TYPES = {"work": "work office ufficio lavoro trabajo arbeit bureau рабочая business",
               "home": "home personal personale privat perso личная домашняя"}

TARGETS = ("first_name", "last_name", "full_name", "email", "phone", "company", "position",
           "tags", "owner_email", "owner_id", "source", "status", "birthday", "do_not_contact",
           "custom", "ignore")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_TRAILING_DIGITS = re.compile(r"\d+$")
_SPLIT_MULTI = re.compile(r"[;,\n|]+")
_SPLIT_PHONES = re.compile(r"[;\n|]+|,(?=\s*[+0(])")
_CUSTOM_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_email_ok = validate.Email()


def _key(text):
    return _NON_WORD.sub("", fold(str(text or "")))


def _table(spec):
    return {_key(word): target for target, words in spec.items() for word in words.split()}


_HEADER = _table(SYNONYMS)
_PHONE_TYPE = _table(PHONE_TYPES)
_EMAIL_TYPE = _table(EMAIL_TYPES)
_PHONE_WORDS = sorted((k for k, t in _HEADER.items() if t == "phone" and len(k) >= 5), key=len,
                      reverse=True)
_EMAIL_WORDS = sorted((k for k, t in _HEADER.items() if t == "email" and len(k) >= 5), key=len,
                      reverse=True)


def custom_key(header):
    """A header as a custom field key: ASCII identifier, or None when it cannot be one."""
    key = re.sub(r"[^A-Za-z0-9_]+", "_", fold(str(header))).strip("_").lower()
    if key and key[0].isdigit():
        key = "f_" + key
    return key[:64] if key and _CUSTOM_KEY.match(key[:64]) else None


def guess_target(header):
    """The field a column header names, e.g. "E-mail" -> email, "Telefono ufficio" ->
    phone:work, "Почта 2" -> email; unknown headers become custom.<key>."""
    key = _key(header)
    if not key:
        return "ignore"
    bare = _TRAILING_DIGITS.sub("", key) or key
    for candidate in (key, bare):
        if candidate in _HEADER:
            target = _HEADER[candidate]
            if target == "phone" and candidate in _PHONE_TYPE:
                return f"phone:{_PHONE_TYPE[candidate]}"
            return target
    for word in _PHONE_WORDS:  # "Work phone", "Telefono ufficio", "Рабочий телефон"
        if word in bare:
            rest = bare.replace(word, "")
            kind = next((t for w, t in _PHONE_TYPE.items() if w and w in rest), None)
            return f"phone:{kind}" if kind else "phone"
    for word in _EMAIL_WORDS:
        if word in bare:
            rest = bare.replace(word, "")
            kind = next((t for w, t in _EMAIL_TYPE.items() if w and w in rest), None)
            return f"email:{kind}" if kind else "email"
    ckey = custom_key(header)
    return f"custom.{ckey}" if ckey else "ignore"


def valid_target(target):
    if not isinstance(target, str):
        return False
    base, _, kind = target.partition(":")
    if base in ("phone", "email") and kind:
        return kind in ("work", "home", "mobile", "other")
    if target.startswith("custom."):
        return bool(_CUSTOM_KEY.match(target[7:]))
    return target in TARGETS


def resolve_mapping(header, explicit=None):
    """[(column index, header, target)] for every column; `explicit` {header: target}
    overrides the guess. Unknown explicit targets or headers are a 422."""
    explicit = explicit or {}
    if len(header) > IMPORT_LIMITS["max_columns"]:
        raise outside_limits(f"More than {IMPORT_LIMITS['max_columns']} columns.")
    errors = {}
    known = {str(h).strip() for h in header}
    for name, target in explicit.items():
        if not valid_target(target):
            errors[name] = [f"Unknown target {target!r}; use one of {', '.join(TARGETS)}, "
                            "phone:<type>, email:<type> or custom.<key>."]
        elif name not in known:
            errors[name] = ["No such column in the file."]
    if errors:
        raise ValidationFailed("Invalid mapping", {"fields": {"mapping": errors}})
    plan = []
    for index, name in enumerate(header):
        name = str(name if name is not None else "").strip()
        target = explicit.get(name) or guess_target(name)
        plan.append((index, name, target))
    if not any(t.split(":")[0] in ("first_name", "last_name", "full_name", "email", "phone")
               for _, _, t in plan):
        raise ValidationFailed("No column maps to a name, an email or a phone",
                               {"fields": {"mapping": {"_schema": [
                                   "Map at least one column to first_name, last_name, "
                                   "full_name, email or phone."]}},
                                "columns": [name for _, name, _ in plan]})
    return plan


# one row
def _text(value):
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a phone typed in a spreadsheet comes back as 3331234567.0
    if isinstance(value, (datetime, date)):
        return value.date().isoformat() if isinstance(value, datetime) else value.isoformat()
    text = str(value).strip()
    if len(text) > 1 and text[0] == "'" and text[1:].lstrip()[:1] in ("=", "+", "-", "@"):
        text = text[1:].lstrip()  # our own export's CSV-injection guard, read back
    return text


_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d", "%d/%m/%y",
                 "%d.%m.%y")


def parse_date(value):
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text(value)
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _bool(text):
    low = text.lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    return None


def convert_row(cells, plan, region):
    """(fields, errors) for one row. `fields` holds only what the row gives, normalized
    (emails lower-case, phones E.164); a bad value is left out and reported in `errors`
    as {"column", "field", "reason", "value"}, the rest of the row is kept."""
    out = {"emails": [], "phones": [], "tags": [], "custom": {}}
    errors = []

    def error(column, field, reason, value):
        errors.append({"column": column, "field": field, "reason": reason,
                       "value": _text(value)[:200]})

    for index, column, target in plan:
        if index >= len(cells) or target == "ignore":
            continue
        raw = cells[index]
        if isinstance(raw, str) and len(raw) > MAX_CELL_CHARS:
            error(column, target.split(":")[0], f"Longer than {MAX_CELL_CHARS} characters.",
                  raw[:200])
            continue
        text = _text(raw)
        if not text:
            continue
        base, _, kind = target.partition(":")
        if base == "email":
            for item in _SPLIT_MULTI.split(text):
                item = item.strip().lower()
                if not item:
                    continue
                try:
                    _email_ok(item)
                    if len(item) > 254:
                        raise ValidationError("too long")
                    out["emails"].append({"email": item, "type": kind or "work"})
                except ValidationError:
                    error(column, "email", "Not a valid email address.", item)
        elif base == "phone":
            for item in _SPLIT_PHONES.split(text):
                item = item.strip()
                if not item:
                    continue
                parsed = normalize_phone(item, region)
                if not parsed["e164"] or len(item) > 40:
                    error(column, "phone", "Not a phone number.", item)
                    continue
                out["phones"].append({"raw": parsed["raw"], "e164": parsed["e164"],
                                      "national": parsed["national"], "valid": parsed["valid"],
                                      "type": kind or "mobile"})
        elif target in ("first_name", "last_name", "position", "source"):
            limit = 50 if target == "source" else 100
            if len(text) > limit:
                error(column, target, f"Longer than {limit} characters.", text)
            else:
                out[target] = text
        elif target == "full_name":
            first, _, last = text.partition(" ")
            out.setdefault("_first_from_full", first.strip()[:100])
            out.setdefault("_last_from_full", last.strip()[:100])
        elif target == "company":
            out["company"] = text[:200]
        elif target == "tags":
            out["tags"] += [t.strip()[:50] for t in _SPLIT_MULTI.split(text) if t.strip()]
        elif target == "owner_email":
            out["owner_email"] = text.lower()
        elif target == "owner_id":
            out["owner_id"] = text[:40]
        elif target == "status":
            status = STATUSES.get(fold(text))
            if status:
                out["status"] = status
            else:
                error(column, "status", "Unknown status; use lead, prospect, customer, "
                                        "churned or inactive.", text)
        elif target == "birthday":
            parsed = parse_date(raw)
            if parsed:
                out["birthday"] = parsed.isoformat()
            else:
                error(column, "birthday", "Not a date (use YYYY-MM-DD or DD/MM/YYYY).", text)
        elif target == "do_not_contact":
            flag = _bool(text)
            if flag is None:
                error(column, "do_not_contact", "Not a yes/no value.", text)
            else:
                out["do_not_contact"] = flag
        elif target == "custom":
            try:
                value = json.loads(text)
                out["custom"].update(CustomFields().deserialize(value))
            except (ValueError, ValidationError):
                error(column, "custom", "Not a JSON object of custom fields.", text)
        elif target.startswith("custom."):
            # numbers stay numbers (XLSX cells); everything else is text
            value = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else text
            if isinstance(value, str) and len(value) > 2000:
                error(column, target, "Longer than 2000 characters.", value)
            else:
                out["custom"][target[7:]] = value
    first, last = out.pop("_first_from_full", None), out.pop("_last_from_full", None)
    if first and not out.get("first_name") and not out.get("last_name"):
        out["first_name"], out["last_name"] = first, last or ""
    out["emails"] = _unique(out["emails"], "email")[:20]
    out["phones"] = _unique(out["phones"], "e164")[:20]
    out["tags"] = sorted(set(out["tags"]))[:50]
    return out, errors


def _unique(items, key):
    seen, result = set(), []
    for item in items:
        if item[key] not in seen:
            seen.add(item[key])
            result.append(item)
    return result


def reachable(fields):
    """A contact needs a name, an email or a phone (as ContactIn requires)."""
    return bool(fields.get("first_name") or fields.get("last_name") or fields["emails"]
                or fields["phones"])


def row_keys(fields):
    """The duplicate keys of a row: normalized emails and E.164 phones."""
    return ([("email_keys", e["email"]) for e in fields["emails"]]
            + [("phone_keys", p["e164"]) for p in fields["phones"]])
