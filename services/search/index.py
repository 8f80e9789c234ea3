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


SCHEMA_VERSION = 3
# a list page whose last sort value is shared by more records reads all of them (they
# are ordered by id, or by name then id): at most this many
MAX_TIES = 20000
# the part of a name that orders names sharing their first 8 bytes (a cursor carries it,
# and a cursor stays under crm_common.fields' 500 characters)
SORT_NAME_CHARS = 32
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
    for name in ("digits", "emails", "visible_to", "filters"):
        b.add_text_field(name, tokenizer_name="raw", index_option="basic")
    b.add_integer_field("live", stored=True, indexed=True, fast=True)
    b.add_integer_field("updated", stored=True, indexed=True, fast=True)
    b.add_integer_field("version", stored=True)
    b.add_integer_field("created", stored=True, indexed=True, fast=True)
    b.add_integer_field("when", stored=True, indexed=True, fast=True)
    # the name sort: the first 8 bytes of the folded name as a number (its order), the
    # whole name beside it (the order of the names whose first 8 bytes are the same)
    b.add_unsigned_field("name_key", stored=True, indexed=True, fast=True)
    b.add_text_field("sort_name", stored=True, tokenizer_name="raw", index_option="basic")
    b.add_text_field("name_tie", tokenizer_name="raw", index_option="basic", fast=True)
    b.add_json_field("cf", fast=True, tokenizer_name="raw")  # Entry.numbers: custom ranges
    b.add_bytes_field("record", stored=True)
    b.add_bytes_field("card", stored=True)
    return b.build()


def name_key(name):
    """The first 8 bytes of a name (UTF-8: code point order) as an unsigned number."""
    return int.from_bytes((name or "").encode()[:8].ljust(8, b"\0"), "big")


def name_tie(name, record_id):
    """What orders records whose names share their first 8 bytes: the name's start, then
    the id (\x01 sorts below every character of a folded name)."""
    return f"{(name or '')[:SORT_NAME_CHARS]}\x01{record_id}"


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

    def committed_updated(self, key):
        """The updated_at (microseconds) of the state searches see of `key`; -1 if none."""
        searcher = self.searcher()
        found = searcher.search(tantivy.Query.term_query(self.schema, "key", key), 1).hits
        return searcher.doc(found[0][1]).get_first("updated") or 0 if found else -1

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
        for key, (stamp, _, _, entry) in self.pending.items():
            if key.startswith(kind + ":"):
                if entry is not None and filter_term in entry.filters:
                    keys.add(key)
                else:
                    keys.discard(key)
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
        for name, values in (("digits", sorted(entry.digits)), ("emails", entry.emails),
                             ("visible_to", entry.visible_to), ("filters", entry.filters)):
            for value in values:
                doc.add_text(name, value)
        doc.add_integer("live", 1 if entry.live else 0)
        doc.add_integer("updated", entry.updated)
        doc.add_integer("version", entry.version)
        doc.add_integer("created", entry.created)
        doc.add_integer("when", entry.when)
        doc.add_unsigned("name_key", name_key(entry.sort_name))
        doc.add_text("sort_name", entry.sort_name)
        doc.add_text("name_tie", name_tie(entry.sort_name, entry.id))
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
        bound = str(int(value)) if float(value).is_integer() else format(value, "f")
        return self.index.parse_query(f"cf.{key}:{'>=' if op == 'gte' else '<='}{bound}")

    def counts(self, query):
        """{type: how many records of it match} (one pass over the matches)."""
        answer = self.searcher().aggregate(query, {"types": {"terms": {"field": "type",
                                                                       "size": 20}}})
        return {b["key"]: b["doc_count"] for b in answer["types"]["buckets"]}

    def count(self, query):
        return self.searcher().search(query, 1, count=True).count

    def sorted_page(self, query, field, descending, limit, after=None):
        """The next `limit` + 1 records matching `query` in (`field`, tie) order, strictly
        after `after` (such a key), as [(key, record)]. The tie orders records sharing a
        value of `field`: their id, or for the name sort their name then id (as the
        owners' MongoDB keyset pages). Tantivy orders by one fast field: records sharing
        the last value of a page are read together, ordered by their tie's fast field."""
        searcher = self.searcher()
        field_type = tantivy.FieldType.Unsigned if field == "name_key" else tantivy.FieldType.Integer
        tie_field = "name_tie" if field == "name_key" else "id"
        order = tantivy.Order.Desc if descending else tantivy.Order.Asc
        docs = {}

        def doc_of(address):
            where = (address.segment_ord, address.doc)
            if where not in docs:
                docs[where] = searcher.doc(address)
            return docs[where]

        def beyond(a, b):
            return a < b if descending else a > b

        def where(**bounds):
            return tantivy.Query.boolean_query([
                (tantivy.Occur.Must, query),
                (tantivy.Occur.Must, tantivy.Query.range_query(self.schema, field, field_type,
                                                               **bounds))])

        def group(value):
            """Every match of this sort value, in tie order (fast fields only)."""
            hits = searcher.search(where(lower_bound=value, upper_bound=value), MAX_TIES,
                                   count=False, order_by_field=tie_field, order=order).hits
            return [((value, tie), address) for tie, address in hits]

        out, rest = [], query
        if after is not None:
            out = [item for item in group(after[0]) if beyond(item[0], after)]
            rest = (where(upper_bound=after[0], include_upper=False) if descending
                    else where(lower_bound=after[0], include_lower=False))
        need = limit + 1 - len(out)
        if need > 0:
            hits = searcher.search(rest, need, count=False, order_by_field=field, order=order).hits
            found = [((value, self._tie(doc_of(address), field)), address)
                     for value, address in hits]
            if len(found) == need:
                # the last value may be shared beyond what was read: read it whole
                last = found[-1][0][0]
                found = [item for item in found if item[0][0] != last] + group(last)
            out += sorted(found, key=lambda item: item[0], reverse=descending)
        # only the page's documents are read and parsed (a group of ties may be long)
        return [(key, json.loads(doc_of(address).get_first("record") or b"{}"))
                for key, address in out[:limit + 1]]

    @staticmethod
    def _tie(doc, field):
        if field == "name_key":
            return name_tie(doc.get_first("sort_name"), doc.get_first("id"))
        return doc.get_first("id")

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
