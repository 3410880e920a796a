-- Advances of members' delivered and read markers, with their times: a
-- message's delivery and read times are the earliest advance covering its
-- seq. One row per advance (a read, a delivery ack), never one per message.
CREATE TABLE IF NOT EXISTS receipts (
    chat_id  INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (chat_id, kind, user_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS receipts_by_seq ON receipts (chat_id, seq);
