"""Connector processes: read a PBX's own protocol and post its events to the gateway's
ingest routes. Not nameko services; they depend on crm_common and contracts only."""
