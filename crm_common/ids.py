"""Ids are strings: an ObjectId's hex, so they sort by creation time."""
from bson import ObjectId


def new_id():
    return str(ObjectId())
