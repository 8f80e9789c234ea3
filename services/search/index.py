"""The Tantivy index of one replica, on its local disk. Plain, synchronous code: the
dependency (dependencies.py) decides when it runs (one writer at a time, commits off the
event loop).

Layout of the replica's folder (`CRM_SEARCH_INDEX_DIR`):
    replica-id              this replica's name (its event queues are named after it)
    index-v<SCHEMA_VERSION>/  the index; `complete` is written when a rebuild has finished
A folder of another schema version, or without `complete`, is rebuilt from the owners.

Each document is one record, keyed `<type>:<id>`. A deleted record stays as a tombstone
(`live` 0) so that a late, older state of it never comes back: a state is written only if
it is not older (updated_at, version) than the one the index holds."""
import json
import os
import shutil
import uuid

import tantivy


SCHEMA_VERSION = 7
# The total order of a list, as numbers Tantivy can range over and order by (it orders by
# one fast field, and has no range over text): the sort field, then the record's id as
# 3 numbers of 8 bytes (ids are 24 characters: ObjectId hex); the name sort orders by the
# first 32 bytes of the folded name as 4 numbers, then the id.
ID_KEYS = ("id_key", "id_key2", "id_key3")
NAME_KEYS = ("name_key", "name_key2", "name_key3", "name_key4")
WRITER_HEAP_BYTES = 64 * 1024 * 1024
COMPLETE = "complete"


def build_schema():
    b = tantivy.SchemaBuilder()
    b.add_text_field("key", stored=True, tokenizer_name="raw")
    b.add_text_field("type", stored=True, tokenizer_name="raw", fast=True)
    b.add_text_field("id", stored=True, tokenizer_name="raw", fast=True)
    # words arrive folded and split (documents.words): whitespace keeps them as they are
    b.add_text_field("names", tokenizer_name="whitespace", index_option="freq")
    b.add_text_field("words", tokenizer_name="whitespace", index_option="freq")
    # the words again, each as <field>:<word> (documents.Entry.guarded): field grants
    b.add_text_field("guarded", tokenizer_name="whitespace", index_option="freq")
    for name in ("digits", "emails", "visible_to", "filters"):
        b.add_text_field(name, tokenizer_name="raw", index_option="basic")
    b.add_integer_field("live", stored=True, indexed=True, fast=True)
    b.add_integer_field("updated", stored=True, indexed=True, fast=True)
    b.add_integer_field("version", stored=True)
    b.add_integer_field("created", stored=True, indexed=True, fast=True)
    b.add_integer_field("when", stored=True, indexed=True, fast=True)
    b.add_integer_field("closed", indexed=True, fast=True)   # deals: closed_at
    # the name sort's numbers (NAME_KEYS) and the id's (ID_KEYS), the first also indexed
    # (a page's records of one value are read by term); the folded name is stored for
    # the cursor
    for name in NAME_KEYS + ID_KEYS:
        b.add_unsigned_field(name, fast=True, indexed=name == NAME_KEYS[0])
    b.add_text_field("sort_name", stored=True, tokenizer_name="raw", index_option="basic")
    b.add_json_field("cf", fast=True, tokenizer_name="raw")  # Entry.numbers: custom ranges
    b.add_bytes_field("record", stored=True)
    b.add_bytes_field("card", stored=True)
    return b.build()


def _numbers(text, count):
    """The first 8 * count bytes of a text (UTF-8: code point order) as unsigned numbers
    whose order is the text's (a shorter text is padded with \\0, below every character)."""
    raw = str(text or "").encode()[:8 * count].ljust(8 * count, b"\0")
    return tuple(int.from_bytes(raw[at:at + 8], "big") for at in range(0, 8 * count, 8))


def order_fields(field):
    """The index fields that order a list sorted by `field`, most significant first."""
    return (NAME_KEYS if field == "name_key" else (field,)) + ID_KEYS


def order_key(field, value, record_id):
    """A record's place in a list sorted by `field`: `value` is the field's (microseconds),
    or for the name sort the folded name."""
    head = _numbers(value, len(NAME_KEYS)) if field == "name_key" else (value,)
    return head + _numbers(record_id, len(ID_KEYS))


def _strictly_after(fields, target, must, need, equal, beyond, ordered):
    """The first `need` matches of `must` strictly after the position `target` (k0, k1, ...
    kn) in the order of `fields`: same k0..k(n-1) and beyond kn, then same k0..k(n-2) and
    beyond k(n-1), ... then beyond k0 (`ordered(clauses, level, count)` reads each)."""
    found = []
    for level in reversed(range(len(fields))):
        if len(found) >= need:
            break
        clauses = must + [(tantivy.Occur.Must, equal(fields[j], target[j])) for j in range(level)]
        clauses.append((tantivy.Occur.Must, beyond(fields[level], target[level])))
        found += ordered(clauses, level, need - len(found))
    return found


def replica_id(root):
    """This replica's name, kept in its folder (made once)."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "replica-id")
    try:
        with open(path) as handle:
            name = handle.read().strip()
        if name:
            return name
    except FileNotFoundError:
        pass
    name = uuid.uuid4().hex[:12]
    scratch = f"{path}.{os.getpid()}"
    with open(scratch, "w") as handle:
        handle.write(name)
    os.replace(scratch, path)
    return name


class TantivyIndex:
    def __init__(self, root, fresh=False):
        """Opens this schema version's index under `root`; `fresh` (or no complete index
        there) starts it empty: `needs_rebuild` then says so."""
        self.root = root
        self.folder = os.path.join(root, f"index-v{SCHEMA_VERSION}")
        os.makedirs(root, exist_ok=True)
        for name in os.listdir(root):  # other schema versions: never read again
            if name.startswith("index-v") and name != os.path.basename(self.folder):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        self.needs_rebuild = fresh or not os.path.exists(os.path.join(self.folder, COMPLETE))
        if self.needs_rebuild:
            shutil.rmtree(self.folder, ignore_errors=True)
        os.makedirs(self.folder, exist_ok=True)
        self.schema = build_schema()
        self.index = tantivy.Index(self.schema, path=self.folder, reuse=True)
        self.writer = self.index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
        self.pending = {}   # key -> (stamp, live, record, entry) written since the last commit
        self.pending_terms = {}   # filter term -> keys written with it since the last commit
        self.dirty = False
        self._searcher = None   # of the last commit (a snapshot: reused until the next)

    # -- state of the folder ----------------------------------------------------------
    def mark_complete(self, summary):
        path = os.path.join(self.folder, COMPLETE)
        with open(path + ".tmp", "w") as handle:
            json.dump(summary, handle)
        os.replace(path + ".tmp", path)
        self.needs_rebuild = False

    def completed(self):
        try:
            with open(os.path.join(self.folder, COMPLETE)) as handle:
                return json.load(handle)
        except (FileNotFoundError, ValueError):
            return None

    # -- reading ----------------------------------------------------------------------
    def searcher(self):
        if self._searcher is None:
            self._searcher = self.index.searcher()
        return self._searcher

    def held(self, key):
        """(stamp, live, record) of what the index holds for `key` (written or not yet
        committed), or None."""
        if key in self.pending:
            stamp, live, record, _ = self.pending[key]
            return None if stamp is None else (stamp, live, record)
        searcher = self.searcher()
        found = searcher.search(tantivy.Query.term_query(self.schema, "key", key), 1).hits
        if not found:
            return None
        doc = searcher.doc(found[0][1])
        return ((doc.get_first("updated") or 0, doc.get_first("version") or 0),
                bool(doc.get_first("live")), json.loads(doc.get_first("record") or b"{}"))

    def record(self, kind, record_id):
        """The record the index holds (live or not), or None."""
        held = self.held(f"{kind}:{record_id}")
        return held[2] if held else None

    def keys_with(self, kind, filter_term, limit=10000):
        """Keys of records of `kind` with a `field=value` filter term (committed or not)."""
        query = tantivy.Query.boolean_query([
            (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "type", kind)),
            (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "filters", filter_term))])
        searcher = self.searcher()
        keys = {searcher.doc(address).get_first("key")
                for _, address in searcher.search(query, limit).hits}

        def pending_with(key):
            entry = self.pending[key][3]
            return entry is not None and filter_term in entry.filters

        # what was written since the last commit is what counts (read by term, not by a
        # walk of every pending write: an import batch asks this of each of its records)
        keys = {key for key in keys if key not in self.pending or pending_with(key)}
        keys |= {key for key in self.pending_terms.get(filter_term, ())
                 if key.startswith(kind + ":") and pending_with(key)}
        return sorted(keys)

    # -- writing ----------------------------------------------------------------------
    def write(self, entry, record, force=False):
        """Writes the record's state unless the index holds a later one, or this very one.
        True if written."""
        held = self.held(entry.key)
        if held is not None and not force and (
                held[0] > entry.stamp or (held[0] == entry.stamp and held[2] == record)):
            return False
        self.writer.delete_documents_by_term("key", entry.key)
        self.writer.add_document(self._document(entry, record))
        self.pending[entry.key] = (entry.stamp, entry.live, record, entry)
        for term in entry.filters:
            self.pending_terms.setdefault(term, set()).add(entry.key)
        self.dirty = True
        return True

    def remove(self, kind, record_id):
        """The owner has no such record at all: nothing of it stays."""
        key = f"{kind}:{record_id}"
        self.writer.delete_documents_by_term("key", key)
        self.pending[key] = (None, False, None, None)
        self.dirty = True

    def _document(self, entry, record):
        doc = tantivy.Document()
        doc.add_text("key", entry.key)
        doc.add_text("type", entry.type)
        doc.add_text("id", entry.id)
        if entry.names:
            doc.add_text("names", " ".join(entry.names))
        if entry.words:
            doc.add_text("words", " ".join(entry.words))
        if entry.guarded:
            doc.add_text("guarded", " ".join(entry.guarded))
        for name, values in (("digits", sorted(entry.digits)), ("emails", entry.emails),
                             ("visible_to", entry.visible_to), ("filters", entry.filters)):
            for value in values:
                doc.add_text(name, value)
        doc.add_integer("live", 1 if entry.live else 0)
        doc.add_integer("updated", entry.updated)
        doc.add_integer("version", entry.version)
        doc.add_integer("created", entry.created)
        doc.add_integer("when", entry.when)
        doc.add_integer("closed", entry.closed)
        for name, number in zip(NAME_KEYS + ID_KEYS,
                                order_key("name_key", entry.sort_name, entry.id)):
            doc.add_unsigned(name, number)
        doc.add_text("sort_name", entry.sort_name)
        if entry.numbers:
            doc.add_json("cf", entry.numbers)
        doc.add_bytes("record", json.dumps(record, separators=(",", ":")).encode())
        doc.add_bytes("card", json.dumps(entry.card, separators=(",", ":")).encode())
        return doc

    def commit(self):
        """Makes what was written durable (blocking: fsync). Runs off the event loop."""
        self.writer.commit()

    def committed(self):
        """After commit(): searches see it, and `pending` is history."""
        self.index.reload()
        self._searcher = None
        self.pending.clear()
        self.pending_terms.clear()
        self.dirty = False

    def close(self):
        try:
            self.writer.wait_merging_threads()
        except Exception:  # noqa: BLE001 - closing: nothing more to do with it
            pass

    # -- answers ----------------------------------------------------------------------
    def hits(self, query, limit):
        """[(score, {"type", "id", "card"})] best first."""
        searcher = self.searcher()
        out = []
        for score, address in searcher.search(query, limit, count=False).hits:
            doc = searcher.doc(address)
            out.append((score, {"type": doc.get_first("type"), "id": doc.get_first("id"),
                                "card": json.loads(doc.get_first("card") or b"{}")}))
        return out

    def custom_range(self, key, op, value):
        """cf.<key> >= or <= a number (Entry.numbers); the key is a checked field key."""
        bound = repr(float(value))  # a float, as documents.range_number stores them
        return self.index.parse_query(f"cf.{key}:{'>=' if op == 'gte' else '<='}{bound}")

    def counts(self, query):
        """{type: how many records of it match} (one pass over the matches)."""
        answer = self.searcher().aggregate(query, {"types": {"terms": {"field": "type",
                                                                       "size": 20}}})
        return {b["key"]: b["doc_count"] for b in answer["types"]["buckets"]}

    def count(self, query):
        return self.searcher().search(query, 1, count=True).count

    def sorted_page(self, query, field, descending, limit, after=None):
        """The next `limit` + 1 records matching `query` in `field` order, strictly after
        the position `after`, as [(position, record)]. A position is (value, id): the
        field's value (microseconds), or the folded name for the name sort. Records
        sharing a value are in id order (by name then id for the name sort), as in the
        owners' MongoDB keyset pages.

        Tantivy orders by one fast field: the list's order is the tuple of order_fields,
        read one field at a time. When the last of the records read shares its value with
        records not read, those are read in the next field's order, among the records of
        that value only; every search reads at most `limit` + 1 records, however many
        records share a value."""
        searcher = self.searcher()
        fields = order_fields(field)
        order = tantivy.Order.Desc if descending else tantivy.Order.Asc
        need = limit + 1

        def kind_of(name):
            return tantivy.FieldType.Integer if name == field and name != "name_key" \
                else tantivy.FieldType.Unsigned

        def equal(name, value):
            if name == fields[0]:   # indexed: its posting list, not a pass over its column
                return tantivy.Query.term_query(self.schema, name, value)
            return tantivy.Query.range_query(self.schema, name, kind_of(name), value, value)

        def beyond(name, value):
            if descending:
                return tantivy.Query.range_query(self.schema, name, kind_of(name), None, value,
                                                 include_upper=False)
            return tantivy.Query.range_query(self.schema, name, kind_of(name), value, None,
                                             include_lower=False)

        def ordered(clauses, level, count):
            """The first `count` matches of the clauses in the order of fields[level:]
            (the clauses fix fields[:level])."""
            name = fields[level]
            hits = searcher.search(tantivy.Query.boolean_query(clauses), count, count=False,
                                   order_by_field=name, order=order).hits
            if len(hits) < count or level == len(fields) - 1:
                return [address for _, address in hits]
            last = hits[-1][0]   # maybe shared beyond what was read: read those in order
            kept = [address for value, address in hits if value != last]
            return kept + ordered(clauses + [(tantivy.Occur.Must, equal(name, last))],
                                  level + 1, count - len(kept))

        must = [(tantivy.Occur.Must, query)]
        if after is None:
            addresses = ordered(must, 0, need)
        else:
            addresses = _strictly_after(fields, order_key(field, *after), must, need, equal,
                                        beyond, ordered)
        page = []
        for address in addresses:
            doc = searcher.doc(address)
            value = (doc.get_first("sort_name") or "") if field == "name_key" \
                else doc.get_first(field) or 0
            position = (value, doc.get_first("id"))
            page.append((order_key(field, *position), position, doc))
        page.sort(key=lambda item: item[0], reverse=descending)
        return [(position, json.loads(doc.get_first("record") or b"{}"))
                for _, position, doc in page[:need]]

    def custom_sorted_page(self, query, paths, descending, limit, after=None):
        """sorted_page for a sort by a custom field: its values are `paths` of the `cf`
        JSON field (one number, or a text's TEXT_SORT_NUMBERS numbers), which Tantivy
        orders only in a top_hits aggregation; records without a value are left out (as
        the owners' lists do). `after`: the position's numbers (one per path), then the id.
        [(id, record)] of the next `limit` + 1 records."""
        searcher = self.searcher()
        fields = list(paths) + list(ID_KEYS)
        direction = "desc" if descending else "asc"
        need = limit + 1

        def bound(value):
            # a number sort's values are floats (documents.range_number), a text sort's
            # are integers: each queried as the type it is stored as
            return repr(value) if isinstance(value, float) else str(int(value))

        def equal(name, value):
            if name in ID_KEYS:
                return tantivy.Query.range_query(self.schema, name, tantivy.FieldType.Unsigned,
                                                 value, value)
            return self.index.parse_query(f"{name}:[{bound(value)} TO {bound(value)}]")

        def beyond(name, value):
            if name in ID_KEYS and descending:
                return tantivy.Query.range_query(self.schema, name, tantivy.FieldType.Unsigned,
                                                 None, value, include_upper=False)
            if name in ID_KEYS:
                return tantivy.Query.range_query(self.schema, name, tantivy.FieldType.Unsigned,
                                                 value, None, include_lower=False)
            return self.index.parse_query(f"{name}:{'<' if descending else '>'}{bound(value)}")

        def ordered(clauses, count):
            found = searcher.aggregate(tantivy.Query.boolean_query(clauses), {"page": {
                "top_hits": {"size": count, "sort": [{name: direction} for name in fields],
                             "docvalue_fields": ["id"]}}})
            return [hit["docvalue_fields"]["id"][0] for hit in found["page"]["hits"]
                    if hit["docvalue_fields"].get("id")]

        must = [(tantivy.Occur.Must, query),
                (tantivy.Occur.Must, tantivy.Query.exists_query(paths[0]))]
        if after is None:
            ids = ordered(must, need)
        else:
            target = tuple(after[:-1]) + _numbers(after[-1], len(ID_KEYS))
            ids = _strictly_after(fields, target, must, need, equal, beyond,
                                  lambda clauses, level, count: ordered(clauses, count))
        ids = ids[:need]
        if not ids:
            return []
        records = {}
        keyed = tantivy.Query.term_set_query(self.schema, "id", ids)
        for _, address in searcher.search(tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, keyed), *must[:1]]), len(ids) * 2, count=False).hits:
            doc = searcher.doc(address)
            records[doc.get_first("id")] = json.loads(doc.get_first("record") or b"{}")
        return [(i, records[i]) for i in ids if i in records]

    def live_stamps(self, kind, limit=1_000_000):
        """{id: updated_at micros} of every live record of `kind` (tests, audits)."""
        query = tantivy.Query.boolean_query([
            (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "type", kind)),
            (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "live", 1))])
        searcher = self.searcher()
        out = {}
        for _, address in searcher.search(query, limit).hits:
            doc = searcher.doc(address)
            out[doc.get_first("id")] = doc.get_first("updated")
        return out

    def num_docs(self):
        return self.searcher().num_docs
