-- Read receipts per recipient: who read which chat message, when. live_messages.read_at
-- stays (the first read by the message's recipient, or by anyone for a message to
-- everyone) for clients that know only it.
-- depends: 0005_uuid_spec_schema

CREATE TABLE live_message_reads (
    message_id  UUID NOT NULL REFERENCES live_messages(id) ON DELETE CASCADE,
    reader_id   UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    read_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (message_id, reader_id)
);
