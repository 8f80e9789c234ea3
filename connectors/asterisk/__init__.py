"""The Asterisk AMI connector: `python -m connectors.asterisk`.

Logs in to the Asterisk Manager Interface, follows the call events the ingest needs and
posts each one, as JSON, to the gateway's POST /api/v1/telephony/asterisk. Events wait in a
bounded memory buffer, then in a spool file, while the gateway is unreachable; one that was
posted but not answered is posted again, and the ingest knows the repeat (its event id is
derived from the event: asterisk:<Event>:<Uniqueid>:<DestUniqueid>:<DialStatus>). Run one
replica: AMI sends every event to every logged-in client."""
