-- Each sender's client_message_ids, kept for good so that a resend finds
-- its original (store.rs, `original_of`), in two tiers instead of the
-- partial unique index on messages. That index took a leaf per sender:
-- the senders of a commit are spread over all of it, so nearly every
-- message dirtied a page of its own (BENCHMARKS.md, item 60).
--
-- message_keys is the full index. recent_keys is what was appended since
-- its last merge, in the order written, so a commit adds to its last page
-- only; the writer of a store alone on its file holds it in memory (the
-- `keys` module) and merges it into message_keys in sorted batches, each
-- leaf then written once a batch. A store shared by several processes
-- writes message_keys directly, and every open merges what a store
-- stopped before merging left.
CREATE TABLE message_keys (
    sender_id         INTEGER NOT NULL,
    client_message_id TEXT    NOT NULL,
    message_id        INTEGER NOT NULL,
    PRIMARY KEY (sender_id, client_message_id)
) WITHOUT ROWID;
INSERT INTO message_keys (sender_id, client_message_id, message_id)
    SELECT sender_id, client_message_id, id FROM messages
    WHERE client_message_id IS NOT NULL ORDER BY sender_id, client_message_id;
CREATE TABLE recent_keys (
    sender_id         INTEGER NOT NULL,
    client_message_id TEXT    NOT NULL,
    message_id        INTEGER NOT NULL
);
DROP INDEX messages_dedupe;
