"""The only code in the sales service that touches pymongo."""
from datetime import timedelta

import gridfs
from bson import Binary
from pymongo import ASCENDING, DESCENDING, InsertOne, UpdateOne
from pymongo.errors import DuplicateKeyError

from crm_common.cursors import page
from crm_common.ids import new_id
from crm_common.mongo import (BaseStore, JoiningDatabase, find_in, increment,
                              outside_transaction, update_and_get)

CHUNK_BYTES = 1024 * 1024  # GridFS chunk size of uploaded files = the gateway's RPC piece


class SalesStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.products = db["products"]
        self.price_lists = db["price_lists"]
        self.deal_items = db["deal_items"]
        self.documents = db["documents"]
        self.counters = db["counters"]
        self.settings_doc = db["settings"]
        self.purchases = db["purchases"]
        self.files = db["files"]            # the API's record of a file (GridFS has the bytes)
        self.uploads = db["uploads"]        # uploads under way
        self.fs_files = db["files_fs.files"]
        self.fs_chunks = db["files_fs.chunks"]

    def ensure_indexes(self):
        self.products.create_index("sku_key", unique=True)
        self.products.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.products.create_index([("active", ASCENDING), ("created_at", DESCENDING),
                                    ("_id", DESCENDING)])
        self.price_lists.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.price_lists.create_index("default_key", unique=True, sparse=True)
        # every list predicate (kind, the caller's owner filter, deal, status) is on one index
        # (SecantusDB uses an index only then): by deal, else by kind
        self.documents.create_index([("deal_id", ASCENDING), ("kind", ASCENDING),
                                     ("owner_id", ASCENDING), ("status", ASCENDING),
                                     ("created_at", DESCENDING), ("_id", DESCENDING)])
        self.documents.create_index([("kind", ASCENDING), ("owner_id", ASCENDING),
                                     ("status", ASCENDING), ("created_at", DESCENDING),
                                     ("_id", DESCENDING)])
        self.documents.create_index("overdue_at", sparse=True)
        self.documents.create_index("paid_on", sparse=True)
        self.purchases.create_index("key", unique=True)
        self.purchases.create_index([("product_id", ASCENDING), ("contact_id", ASCENDING),
                                     ("date", ASCENDING)])
        self.purchases.create_index([("date", ASCENDING), ("_id", ASCENDING)])  # search_records
        self.purchases.create_index("deal_id")
        for field in ("contact_id", "company_id"):
            self.purchases.create_index([(field, ASCENDING), ("date", DESCENDING), ("_id", DESCENDING)])
        # "<type>:<id>:live" or ":deleted": one predicate per list (no hints, docs/developing.md)
        self.files.create_index([("list_key", ASCENDING), ("created_at", DESCENDING),
                                 ("_id", DESCENDING)])
        self.uploads.create_index("started_at")
        self.fs_chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
        self.fs_files.create_index([("filename", ASCENDING), ("uploadDate", ASCENDING)])

    # products
    def product_by_sku(self, sku_key):
        return self.products.find_one({"sku_key": sku_key})

    def insert_product(self, doc):
        self.products.insert_one(doc)

    def products_by_sku(self, sku_keys):
        return {d["sku_key"]: d for d in find_in(self.products, "sku_key", list(sku_keys))}

    def upsert_products(self, docs):
        """Insert new products and change known ones (by `_id`), in one bulk write."""
        ops = [UpdateOne({"_id": d["_id"]}, {"$set": d}) if d.pop("_known", False) else InsertOne(d)
               for d in docs]
        if ops:
            self.products.bulk_write(ops, ordered=True)

    def get_product(self, product_id):
        return self.products.find_one({"_id": product_id})

    def products_by_id(self, ids):
        return {d["_id"]: d for d in find_in(self.products, "_id", list(ids))}

    def update_product(self, product_id, changes):
        return update_and_get(self.products, {"_id": product_id}, {"$set": changes})

    def list_products(self, filters, limit, cursor):
        query = {k: v for k, v in filters.items() if v is not None}
        return page(self.products, query, "created_at", DESCENDING, limit, cursor)

    # price lists
    def insert_price_list(self, doc):
        self.price_lists.insert_one(doc)

    def get_price_list(self, list_id):
        return self.price_lists.find_one({"_id": list_id})

    def default_price_list(self, currency):
        return self.price_lists.find_one({"default_key": currency})

    def clear_default(self, currency, except_id):
        """The previous default of the currency stops being one (before the new one is set:
        `default_key` is unique)."""
        old = self.price_lists.find_one({"default_key": currency})
        if old and old["_id"] != except_id:
            self.price_lists.update_one({"_id": old["_id"]},
                                        {"$set": {"is_default": False}, "$unset": {"default_key": ""}})

    def update_price_list(self, list_id, changes, default_key=None):
        """`default_key`: the currency it is the default of (None: not a default)."""
        update = {"$set": dict(changes)}
        if default_key:
            update["$set"]["default_key"] = default_key
        else:
            update["$unset"] = {"default_key": ""}
        return update_and_get(self.price_lists, {"_id": list_id}, update)

    def set_prices(self, list_id, prices, now):
        """Product ids are our own ids (no `.` or `$`), safe as field names."""
        return update_and_get(self.price_lists, {"_id": list_id}, {"$set": {
            "updated_at": now, **{f"prices.{pid}": price for pid, price in prices.items()}}})

    def list_price_lists(self, filters, limit, cursor):
        return page(self.price_lists, filters, "created_at", DESCENDING, limit, cursor)

    # deal items: one document per deal, its version moved by every change
    def get_items(self, deal_id):
        return self.deal_items.find_one({"_id": deal_id})

    def save_items(self, deal_id, version, doc):
        """Compare-and-set on the version read: False when someone changed it meanwhile."""
        if version == 0:
            result = self.deal_items.update_one({"_id": deal_id}, {"$setOnInsert": doc}, upsert=True)
            return result.upserted_id is not None
        return self.deal_items.update_one({"_id": deal_id, "version": version},
                                          {"$set": doc}).modified_count == 1

    # documents (quotes and invoices)
    @outside_transaction()
    def ensure_counter(self, key):
        """The counter exists before a transaction moves it: two first upserts of one key
        inside transactions would fail with a duplicate key (crm_common.mongo.increment)."""
        for _ in range(3):
            try:
                self.counters.update_one({"_id": key}, {"$setOnInsert": {"n": 0}}, upsert=True)
                return
            except DuplicateKeyError:
                continue

    def next_number(self, key):
        """The next sequence of a series and year: moved inside the transaction that inserts
        the document, so an aborted insert gives its number back (no gap) and concurrent
        ones conflict and run again (no duplicate)."""
        return increment(self.counters, key)

    def insert_document(self, doc):
        self.documents.insert_one(doc)

    def get_document(self, doc_id, kind=None, visible=None):
        query = {"_id": doc_id, **(visible or {})}
        doc = self.documents.find_one(query)
        if doc is not None and kind and doc["kind"] != kind:
            return None
        return doc

    def update_document(self, doc_id, changes, expect=None, unset=(), payment=None):
        """`changes` set, `unset` fields removed, `payment` appended to its payments; only if
        it still matches `expect` (e.g. its status): None otherwise."""
        update = {"$set": changes}
        if unset:
            update["$unset"] = {field: "" for field in unset}
        if payment is not None:
            update["$push"] = {"payments": payment}
        query = {"_id": doc_id, **(expect or {})}
        if expect:
            if self.documents.update_one(query, update).modified_count != 1:
                return None
            return self.documents.find_one({"_id": doc_id})
        return update_and_get(self.documents, query, update)

    def list_documents(self, kind, visible, filters, limit, cursor):
        query = {"kind": kind, **(visible or {}),
                 **{k: v for k, v in filters.items() if v is not None}}
        return page(self.documents, query, "created_at", DESCENDING, limit, cursor)

    def due_overdue(self, now, limit=200):
        return list(self.documents.find({"overdue_at": {"$lte": now}}).limit(limit))

    def claim_overdue(self, doc_id, overdue_at):
        """The replica whose update wins announces it (once)."""
        return self.documents.update_one(
            {"_id": doc_id, "overdue_at": overdue_at},
            {"$unset": {"overdue_at": ""}, "$set": {"status": "overdue"}}).modified_count == 1

    def paid_invoices(self, since, until, currency):
        query = {"paid_on": {"$gte": since, "$lt": until}}
        if currency:
            query["currency"] = currency
        return self.documents.find(query, {"currency": 1, "totals.total": 1})

    # settings
    def get_settings(self):
        return self.settings_doc.find_one({"_id": "sales"}) or {}

    def put_settings(self, changes):
        return update_and_get(self.settings_doc, {"_id": "sales"}, {"$set": changes}, upsert=True)

    # purchases
    def record_purchase(self, doc):
        """Once per key (a deal line): won deal and paid invoice record the same purchase."""
        self.purchases.update_one({"key": doc["key"]}, {"$setOnInsert": doc}, upsert=True)

    def purchases_of_deal(self, deal_id):
        return list(self.purchases.find({"deal_id": deal_id}, {"product_id": 1, "date": 1}))

    def purchases_of_contact(self, contact_id):
        return list(self.purchases.find({"contact_id": contact_id}, {"product_id": 1, "date": 1}))

    def buyers(self, product_id, since, until, after, limit):
        match = {"product_id": product_id}
        if since or until:
            match["date"] = {**({"$gte": since} if since else {}), **({"$lt": until} if until else {})}
        if after:
            match["contact_id"] = {"$gt": after}
        else:
            match["contact_id"] = {"$ne": None}
        rows = self.purchases.aggregate([
            {"$match": match}, {"$group": {"_id": "$contact_id"}}, {"$sort": {"_id": 1}},
            {"$limit": limit + 1}])
        return [r["_id"] for r in rows]

    def list_purchases(self, field, value, limit, cursor):
        return page(self.purchases, {field: value}, "date", DESCENDING, limit, cursor)

    def sales_by_product(self, since, until, currency):
        match = {"date": {"$gte": since, "$lt": until}}
        if currency:
            match["currency"] = currency
        return list(self.purchases.aggregate([
            {"$match": match},
            {"$group": {"_id": {"p": "$product_id", "c": "$currency"},
                        "quantity_milli": {"$sum": "$quantity_milli"},
                        "amount": {"$sum": "$amount"}, "buyers": {"$addToSet": "$contact_id"},
                        "sku": {"$first": "$sku"}, "name": {"$first": "$name"}}},
            {"$sort": {"amount": -1}}]))

    # files: bytes in a GridFS bucket ("files_fs"), written chunk by chunk as they arrive
    @property
    def bucket(self):
        db = self.db.raw if isinstance(self.db, JoiningDatabase) else self.db
        return gridfs.GridFSBucket(db, bucket_name="files_fs", chunk_size_bytes=CHUNK_BYTES)

    def start_upload(self, doc):
        self.uploads.insert_one(doc)

    def get_upload(self, upload_id):
        return self.uploads.find_one({"_id": upload_id})

    def add_chunk(self, upload_id, n, data, max_bytes):
        """Chunk n of an upload, in order; a repeated chunk (a retried call) is ignored.
        False when it would go over `max_bytes`."""
        upload = self.uploads.find_one({"_id": upload_id})
        if upload is None:
            return None
        if n < upload["next_n"]:
            return True
        if n != upload["next_n"]:
            return None
        if upload["size"] + len(data) > max_bytes:
            return False
        self.fs_chunks.update_one({"files_id": upload_id, "n": n},
                                  {"$setOnInsert": {"data": Binary(data)}}, upsert=True)
        self.uploads.update_one({"_id": upload_id, "next_n": n},
                                {"$set": {"next_n": n + 1}, "$inc": {"size": len(data)}})
        return True

    def first_chunk(self, file_id):
        doc = self.fs_chunks.find_one({"files_id": file_id, "n": 0})
        return bytes(doc["data"]) if doc else b""

    def finish_upload(self, upload, fs_doc, file_doc):
        self.fs_files.insert_one(fs_doc)
        self.files.insert_one(file_doc)
        self.uploads.delete_one({"_id": upload["_id"]})

    def drop_upload(self, upload_id):
        self.fs_chunks.delete_many({"files_id": upload_id})
        self.uploads.delete_one({"_id": upload_id})

    def stale_uploads(self, before, limit=100):
        return [d["_id"] for d in self.uploads.find({"started_at": {"$lt": before}}, {"_id": 1})
                .limit(limit)]

    def get_file(self, file_id):
        return self.files.find_one({"_id": file_id})

    def list_files(self, list_key, limit, cursor):
        return page(self.files, {"list_key": list_key}, "created_at", DESCENDING, limit, cursor)

    def set_file_deleted(self, file_id, deleted_at, list_key):
        return update_and_get(self.files, {"_id": file_id},
                              {"$set": {"deleted_at": deleted_at, "list_key": list_key}})

    def read_file(self, file_id, start, length):
        """Bytes [start, start+length) from the file's chunks (only the chunks needed)."""
        first, last = start // CHUNK_BYTES, (start + length - 1) // CHUNK_BYTES
        out = bytearray()
        for chunk in self.fs_chunks.find({"files_id": file_id, "n": {"$gte": first, "$lte": last}}
                                         ).sort("n", ASCENDING):
            out += chunk["data"]
        offset = start - first * CHUNK_BYTES
        return bytes(out[offset:offset + length])


def new_upload(record_type, record_id, filename, uploaded_by, now):
    return {"_id": new_id(), "record_type": record_type, "record_id": record_id,
            "filename": filename, "uploaded_by": uploaded_by, "started_at": now,
            "next_n": 0, "size": 0}


def stale_before(now, hours=1):
    return now - timedelta(hours=hours)
