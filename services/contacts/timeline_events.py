"""Other services' events that appear on a contact's timeline.

To put an event on the timeline: add its (source service, event type) below and let its
`data` (its schema in contracts/<source>.py) carry
    contact_id                            whose timeline it belongs to  (null: on none)
    summary                               one line for people              (recommended)
    actor_id                              the user who did it              (optional)
    ref: {"type", "id"}                   the record behind it             (optional)
    contacted_at: ISO time                a real touch (call, meeting...):  (optional)
                                          moves last_contacted_at forward
The handler is idempotent on (event_id, contact): a redelivered event adds nothing.
(deals.lead_routed is put on the timeline by the inbound handler, with the owner's name.)
"""
TIMELINE_EVENTS = (
    ("deals", "deal_created"),
    ("deals", "deal_stage_changed"),
    ("deals", "deal_won"),
    ("deals", "deal_lost"),
    ("tasks", "task_created"),
    ("tasks", "task_completed"),
    ("telephony", "call_answered"),
    ("telephony", "call_ended"),
    ("telephony", "call_missed"),
    ("notes", "note_created"),
    ("conversations", "message_received"),
    ("conversations", "message_sent"),
    ("conversations", "mail_history_synced"),
    ("sales", "quote_sent"),
    ("sales", "quote_accepted"),
    ("sales", "invoice_issued"),
    ("sales", "invoice_paid"),
    ("sales", "file_uploaded"),
)

# the busiest ones (a message each): their handlers running at once are stored together,
# one insert of the entries and one write per contact touched (a group commit)
GATHERED = {
    ("conversations", "message_received"),
    ("conversations", "message_sent"),
}
