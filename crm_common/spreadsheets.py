"""Reading spreadsheets people upload (the contacts import, the sales catalogue): format
and encoding detection, CSV rows streamed from stored chunks, and XLSX rows read with flat
memory inside bounds checked before anything is decompressed (zip bombs, DTDs, huge shared
strings). Pure functions; a refused file raises ValidationFailed / BadRequest (4xx)."""
import codecs
import csv
import io
import re
import zipfile
import zlib
from array import array
from xml.parsers import expat

from crm_common.config import get_settings
from crm_common.errors import BadRequest, ValidationFailed

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


def outside_limits(reason, **details):
    return ValidationFailed("The spreadsheet is outside the import limits",
                            {"fields": {"file": [reason]}, "reason": reason, **details})


def check_xlsx(archive, data, limits):
    """Before anything is decompressed: the number of parts, their declared sizes (zipfile
    never gives more than the declared size of a part), the compression ratio, the size of
    the parts read whole (shared strings, workbook, styles, relationships), and no DTD in
    any XML part (entity expansion, external entities)."""
    end = zipfile._EndRecData(io.BytesIO(data))  # the count before the directory is read
    if end and end[zipfile._ECD_ENTRIES_TOTAL] > limits["xlsx_max_parts"]:
        raise outside_limits(f"More than {limits['xlsx_max_parts']} parts in the file.")
    infos = archive.infolist()
    if len(infos) > limits["xlsx_max_parts"]:
        raise outside_limits(f"More than {limits['xlsx_max_parts']} parts in the file.")
    total = 0
    for info in infos:
        total += info.file_size
        if total > limits["xlsx_max_uncompressed_bytes"]:
            raise outside_limits(f"Larger than {limits['xlsx_max_uncompressed_bytes']} bytes "
                          "once uncompressed.")
        if (info.file_size > RATIO_FROM_BYTES
                and info.file_size > limits["xlsx_max_ratio"] * max(info.compress_size, 1)):
            raise outside_limits(f"{info.filename} is compressed more than "
                          f"{limits['xlsx_max_ratio']} to 1.", part=info.filename)
        name = info.filename.lower()
        if name.endswith("sharedstrings.xml"):
            if info.file_size > limits["xlsx_max_shared_strings_bytes"]:
                raise outside_limits(f"The shared strings are larger than "
                              f"{limits['xlsx_max_shared_strings_bytes']} bytes.")
        elif name.endswith((".rels", "workbook.xml", "styles.xml", "[content_types].xml")):
            if info.file_size > limits["xlsx_max_other_part_bytes"]:
                raise outside_limits(f"{info.filename} is larger than "
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
        raise outside_limits(f"{info.filename} declares a DTD (entities are not accepted).",
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
    raise outside_limits(f"{info.filename} has no root element in its first {PROLOG_BYTES} bytes.")


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
        raise outside_limits(f"{label} declares a DTD (entities are not accepted).")

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
                raise outside_limits(f"More than {max_cells} cells.")
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
                    raise outside_limits(f"More than {max_rows} rows.")
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
