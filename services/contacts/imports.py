"""Reading a customer base from a spreadsheet: format and encoding detection, header
mapping in several languages, and one row turned into contact fields with per-field
errors. Pure functions (no database): the job in import_jobs.py drives them."""
import codecs
import csv
import io
import json
import re
import zipfile
import zlib
from array import array
from datetime import date, datetime
from xml.parsers import expat

from marshmallow import ValidationError, validate

from crm_common.config import get_settings
from crm_common.errors import BadRequest, ValidationFailed
from crm_common.fields import CustomFields
from crm_common.phones import normalize_phone
from crm_common.text import fold

# Encodings tried on a CSV that is not UTF-8 (charset-normalizer picks among them). A short
# list on purpose: with every code page allowed, Western text comes back as cp1250 and
# Russian as cp1255.
CSV_ENCODINGS = ("utf_8", "cp1251", "cp1252")
DELIMITERS = ",;\t|"
ZIP_MAGIC = b"PK\x03\x04"
# what a spreadsheet may hold (CRM_IMPORT_*, crm_common.config; docs/import.md)
IMPORT_LIMITS = get_settings().contacts.import_limits
# a cell longer than this is a row error (it is never a name, email, phone or custom value)
MAX_CELL_CHARS = 128 * 1024
# the compression ratio is checked on parts larger than this (small parts compress well)
RATIO_FROM_BYTES = 1024 * 1024
PROLOG_BYTES = 1024 * 1024
PARSE_CHUNK = 64 * 1024
# csv's own field limit (128 KiB) would stop the whole import at one long field: the field
# is read (the file is already bounded) and reported as that row's error instead
csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))

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
        raise _refuse(f"More than {IMPORT_LIMITS['max_columns']} columns.")
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


# reading files
def detect_format(filename, head):
    """"xlsx" or "csv" from the first bytes (the name only breaks a tie); anything else
    (PDF, images, old .xls) is refused."""
    name = (filename or "").lower()
    if head.startswith(ZIP_MAGIC):
        return "xlsx"
    if name.endswith((".xls",)) and head.startswith(b"\xd0\xcf\x11\xe0"):
        raise BadRequest("Old .xls files are not supported; save as .xlsx or CSV", {})
    if b"\x00" in head[:4096] and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BadRequest("Not a CSV or XLSX file", {"filename": filename})
    return "csv"


def detect_encoding(sample):
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        # a sample may end inside a multi-byte character: ignore an incomplete tail
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes
    best = from_bytes(sample, cp_isolation=list(CSV_ENCODINGS)).best()
    return best.encoding if best else "cp1252"


def detect_delimiter(text):
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in DELIMITERS}
        return max(counts, key=counts.get) if max(counts.values()) else ","


class ChunkReader(io.RawIOBase):
    """A file read chunk by chunk from an iterator of bytes (stored chunks), so a large
    CSV is parsed with flat memory."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self):
        return True

    def readinto(self, target):
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def csv_rows(chunks, encoding, delimiter):
    """(row number, [cells]) for every line; the header is row 1."""
    text = io.TextIOWrapper(io.BufferedReader(ChunkReader(chunks), 1 << 16),
                            encoding=encoding, errors="replace", newline="")
    for number, cells in enumerate(csv.reader(text, delimiter=delimiter), start=1):
        yield number, cells


def xlsx_rows(data, limits=None):
    """(row number, [cells]) of the first sheet, streamed; formulas are read as the values
    the spreadsheet saved with them. The archive is checked before anything is decompressed
    (check_xlsx) and the sheet is read within the row / column / cell bounds, with flat
    memory whatever the file says its dimensions are. A refused or broken file raises
    ValidationFailed / BadRequest (a 4xx at start, a failed job later)."""
    limits = limits or IMPORT_LIMITS
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_xlsx(archive, data, limits)
            sheet_path, shared_path, date_styles, epoch = _workbook_parts(data)
            strings = (_shared_strings(archive, shared_path, limits) if shared_path
                       else SharedStrings())
            with archive.open(sheet_path) as source:
                yield from _sheet_rows(source, strings, date_styles, epoch, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, OSError, EOFError,
            ValueError, IndexError, TypeError, OverflowError, zlib.error,
            expat.ExpatError) as exc:
        raise BadRequest("Not a readable XLSX file", {"reason": str(exc)[:200]})


def _refuse(reason, **details):
    return ValidationFailed("The spreadsheet is outside the import limits",
                            {"fields": {"file": [reason]}, "reason": reason, **details})


def check_xlsx(archive, data, limits):
    """Before anything is decompressed: the number of parts, their declared sizes (zipfile
    never gives more than the declared size of a part), the compression ratio, the size of
    the parts read whole (shared strings, workbook, styles, relationships), and no DTD in
    any XML part (entity expansion, external entities)."""
    end = zipfile._EndRecData(io.BytesIO(data))  # the count before the directory is read
    if end and end[zipfile._ECD_ENTRIES_TOTAL] > limits["xlsx_max_parts"]:
        raise _refuse(f"More than {limits['xlsx_max_parts']} parts in the file.")
    infos = archive.infolist()
    if len(infos) > limits["xlsx_max_parts"]:
        raise _refuse(f"More than {limits['xlsx_max_parts']} parts in the file.")
    total = 0
    for info in infos:
        total += info.file_size
        if total > limits["xlsx_max_uncompressed_bytes"]:
            raise _refuse(f"Larger than {limits['xlsx_max_uncompressed_bytes']} bytes "
                          "once uncompressed.")
        if (info.file_size > RATIO_FROM_BYTES
                and info.file_size > limits["xlsx_max_ratio"] * max(info.compress_size, 1)):
            raise _refuse(f"{info.filename} is compressed more than "
                          f"{limits['xlsx_max_ratio']} to 1.", part=info.filename)
        name = info.filename.lower()
        if name.endswith("sharedstrings.xml"):
            if info.file_size > limits["xlsx_max_shared_strings_bytes"]:
                raise _refuse(f"The shared strings are larger than "
                              f"{limits['xlsx_max_shared_strings_bytes']} bytes.")
        elif name.endswith((".rels", "workbook.xml", "styles.xml", "[content_types].xml")):
            if info.file_size > limits["xlsx_max_other_part_bytes"]:
                raise _refuse(f"{info.filename} is larger than "
                              f"{limits['xlsx_max_other_part_bytes']} bytes.",
                              part=info.filename)
        if name.endswith((".xml", ".rels")):
            _check_prolog(archive, info)


class _Root(Exception):
    pass


def _check_prolog(archive, info):
    """A DTD can only come before the root element: read the part up to there."""
    parser = expat.ParserCreate()

    def doctype(*args):
        raise _refuse(f"{info.filename} declares a DTD (entities are not accepted).",
                      part=info.filename)

    def root(*args):
        raise _Root()

    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = root
    read = 0
    with archive.open(info) as part:
        while read < PROLOG_BYTES:
            chunk = part.read(16384)
            try:
                parser.Parse(chunk, not chunk)
            except _Root:
                return
            if not chunk:
                return
            read += len(chunk)
    raise _refuse(f"{info.filename} has no root element in its first {PROLOG_BYTES} bytes.")


def _workbook_parts(data):
    """The first worksheet's part, the shared strings' part, the styles that are dates and
    the date epoch: from the small parts, through openpyxl's own readers."""
    import warnings

    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet
    from openpyxl.xml.constants import SHARED_STRINGS
    reader = ExcelReader(io.BytesIO(data), read_only=True, data_only=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader.read_manifest()
            reader.read_workbook()
            apply_stylesheet(reader.archive, reader.wb)
            sheet_path = next((rel.target for _, rel in reader.parser.find_sheets()
                               if rel.target in reader.valid_files
                               and "chartsheet" not in rel.Type), None)
        if sheet_path is None:
            raise KeyError("no worksheet")
        shared = reader.package.find(SHARED_STRINGS)
        shared_path = shared.PartName[1:] if shared is not None else None
        if shared_path not in reader.valid_files:
            shared_path = None
        wb = reader.wb
        return (sheet_path, shared_path, frozenset(wb._date_formats),
                (frozenset(wb._timedelta_formats), wb.epoch))
    finally:
        reader.archive.close()


class SharedStrings:
    """The workbook's shared strings in one string plus offsets (no object per string)."""

    def __init__(self):
        self._parts, self._ends, self._text, self._size = [], array("Q"), None, 0

    def append(self, text):
        self._parts.append(text)
        self._size += len(text)
        self._ends.append(self._size)

    def freeze(self):
        self._text, self._parts = "".join(self._parts), None
        return self

    def __getitem__(self, index):
        if index < 0 or index >= len(self._ends):
            raise IndexError(f"shared string {index} does not exist")
        start = self._ends[index - 1] if index else 0
        return self._text[start:self._ends[index]]


def _local(name):
    return name.rpartition(" ")[2]


def _shared_strings(archive, path, limits):
    """The text of every <si> (its <t>, or the <t> of its runs; phonetic runs left out)."""
    strings = SharedStrings()
    state = {"si": False, "text": False, "phonetic": 0, "buffer": []}

    def start(name, attrs):
        tag = _local(name)
        if tag == "si":
            state["si"], state["buffer"] = True, []
        elif tag == "rPh":
            state["phonetic"] += 1
        elif tag == "t" and state["si"] and not state["phonetic"]:
            state["text"] = True

    def end(name):
        tag = _local(name)
        if tag == "t":
            state["text"] = False
        elif tag == "rPh":
            state["phonetic"] -= 1
        elif tag == "si":
            strings.append("".join(state["buffer"])[:MAX_CELL_CHARS + 1])
            state["si"] = False

    def text(data):
        if state["text"]:
            state["buffer"].append(data)

    _parse(archive, path, start, end, text)
    return strings.freeze()


def _parse(archive, path, start, end, text):
    with archive.open(path) as source:
        for _ in _expat_feed(source, start, end, text, path):
            pass


def _expat_feed(source, start, end, text, label):
    """Feed a part to expat a chunk at a time (a DTD refuses the file); yields after each
    chunk so a caller can hand on what the handlers gathered."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = text

    def doctype(*args):
        raise _refuse(f"{label} declares a DTD (entities are not accepted).")

    parser.StartDoctypeDeclHandler = doctype
    while True:
        chunk = source.read(PARSE_CHUNK)
        parser.Parse(chunk, not chunk)
        yield
        if not chunk:
            return


_COLUMN = re.compile(r"([A-Z]{1,3})(\d+)$")


def _column(reference, previous):
    match = _COLUMN.match(reference or "")
    if not match:
        return previous + 1
    number = 0
    for letter in match.group(1):
        number = number * 26 + ord(letter) - 64
    return number


def _sheet_rows(source, strings, date_styles, formats, limits):
    """Rows of a worksheet's XML as they come, with expat: only <row>s that hold cells,
    numbered as the sheet numbers them; cells right of max_columns are dropped (no header
    names them), a cell's text is cut after MAX_CELL_CHARS + 1 characters (convert_row
    reports it), more than max_rows rows or max_cells cells refuse the file."""
    from openpyxl.utils.datetime import from_ISO8601, from_excel
    from openpyxl.worksheet._reader import _cast_number
    timedelta_styles, epoch = formats
    max_rows, max_columns, max_cells = (limits["max_rows"], limits["max_columns"],
                                        limits["max_cells"])
    ready = []
    state = {"row": 0, "cells": {}, "column": 0, "cell": None, "text": None, "size": 0,
             "phonetic": 0, "rows": 0, "count": 0}

    def start(name, attrs):
        tag = _local(name)
        if tag == "c":
            column = _column(attrs.get("r"), state["column"])
            state["column"] = column
            state["cell"] = (column, attrs.get("t", "n"), attrs.get("s"))
            state["text"], state["size"] = [], 0
            state["count"] += 1
            if state["count"] > max_cells:
                raise _refuse(f"More than {max_cells} cells.")
        elif tag == "row":
            number = attrs.get("r")
            state["row"] = int(number) if number and number.isdigit() else state["row"] + 1
            state["cells"], state["column"] = {}, 0
        elif tag == "rPh":
            state["phonetic"] += 1
        elif tag in ("v", "t") and state["cell"] is not None and not state["phonetic"]:
            state["collect"] = True

    def end(name):
        tag = _local(name)
        if tag in ("v", "t"):
            state["collect"] = False
        elif tag == "rPh":
            state["phonetic"] -= 1
        elif tag == "c" and state["cell"] is not None:
            column, kind, style = state["cell"]
            state["cell"] = None
            if column <= max_columns:
                value = _cell_value("".join(state["text"]), kind, style)
                if value is not None:
                    state["cells"][column] = value
        elif tag == "row":
            cells = state["cells"]
            if cells:
                state["rows"] += 1
                if state["rows"] > max_rows:
                    raise _refuse(f"More than {max_rows} rows.")
                row = [None] * max(cells)
                for column, value in cells.items():
                    row[column - 1] = value
                ready.append((state["row"], row))
            state["cells"] = {}

    def text(data):
        if state.get("collect") and state["size"] <= MAX_CELL_CHARS:
            state["text"].append(data)
            state["size"] += len(data)

    def _cell_value(raw, kind, style):
        if kind == "inlineStr" or kind == "str":
            return raw
        if raw == "":
            return None
        if kind == "s":
            return strings[int(raw)]
        if kind == "b":
            return raw.strip() in ("1", "true")
        if kind == "e":
            return raw
        if kind == "d":
            return from_ISO8601(raw)
        number = _cast_number(raw.strip())
        if style and style.isdigit() and int(style) in date_styles:
            try:
                return from_excel(number, epoch, timedelta=int(style) in timedelta_styles)
            except (OverflowError, ValueError):
                return number
        return number

    for _ in _expat_feed(source, start, end, text, "The worksheet"):
        yield from ready
        ready.clear()


def inspect(filename, head_bytes):
    """Format, encoding and delimiter of a file from its first bytes."""
    fmt = detect_format(filename, head_bytes)
    if fmt == "xlsx":
        return {"format": "xlsx", "encoding": None, "delimiter": None}
    encoding = detect_encoding(head_bytes)
    text = head_bytes.decode(encoding, errors="ignore")
    return {"format": "csv", "encoding": encoding, "delimiter": detect_delimiter(text)}


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
