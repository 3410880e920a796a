-- Times are Unix milliseconds (UTC). Booleans are 0/1.

CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    phone       TEXT    NOT NULL UNIQUE,
    username    TEXT    UNIQUE,
    nickname    TEXT    NOT NULL DEFAULT '',
    bio         TEXT    NOT NULL DEFAULT '',
    avatar      TEXT    NOT NULL DEFAULT '',
    language    TEXT    NOT NULL DEFAULT 'zh-CN',
    theme       TEXT    NOT NULL DEFAULT 'auto',
    is_disabled INTEGER NOT NULL DEFAULT 0,
    last_seen   INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE credentials (
    user_id       INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    password_hash TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id  TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);

-- Access tokens revoked before their expiry (logout), by JWT id. Rows
-- past expires_at are useless and pruned on insert.
CREATE TABLE revoked_access_tokens (
    jti        TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE contacts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    contact_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    nickname   TEXT    NOT NULL DEFAULT '',
    is_blocked INTEGER NOT NULL DEFAULT 0,
    is_muted   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (user_id, contact_id)
);
-- Who has a given user as a contact: who blocked a sender (every send),
-- who hears of their presence.
CREATE INDEX contacts_by_contact ON contacts(contact_id, user_id);

CREATE TABLE chats (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL CHECK (kind IN ('private', 'group')),
    name        TEXT    NOT NULL DEFAULT '',
    description TEXT    NOT NULL DEFAULT '',
    avatar      TEXT    NOT NULL DEFAULT '',
    created_by  INTEGER NOT NULL REFERENCES users(id),
    is_active   INTEGER NOT NULL DEFAULT 1,
    -- The highest seq handed out; the single writer bumps it per append.
    last_seq    INTEGER NOT NULL DEFAULT 0,
    -- 'low:high' user ids of a private chat, so a pair has at most one.
    private_key TEXT    UNIQUE,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE members (
    chat_id       INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    is_pinned     INTEGER NOT NULL DEFAULT 0,
    is_muted      INTEGER NOT NULL DEFAULT 0,
    last_read_seq INTEGER NOT NULL DEFAULT 0,
    joined_at     INTEGER NOT NULL,
    PRIMARY KEY (chat_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id, chat_id);

-- id is the time-ordered snowflake id, so it is also the rowid FTS points at.
CREATE TABLE messages (
    id                INTEGER PRIMARY KEY,
    chat_id           INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL,
    sender_id         INTEGER NOT NULL,
    client_message_id TEXT,
    kind              TEXT    NOT NULL,
    content           TEXT    NOT NULL DEFAULT '',
    file_name         TEXT    NOT NULL DEFAULT '',
    file_size         INTEGER NOT NULL DEFAULT 0,
    file_url          TEXT    NOT NULL DEFAULT '',
    thumbnail         TEXT    NOT NULL DEFAULT '',
    reply_to_id       INTEGER,
    forward_from      INTEGER,
    ttl               INTEGER NOT NULL DEFAULT 0,
    expires_at        INTEGER,
    send_at           INTEGER,
    is_silent         INTEGER NOT NULL DEFAULT 0,
    is_edited         INTEGER NOT NULL DEFAULT 0,
    is_deleted        INTEGER NOT NULL DEFAULT 0,
    is_pinned         INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    deleted_at        INTEGER,
    -- A seq is never handed out twice and an insert never overwrites.
    UNIQUE (chat_id, seq)
);
CREATE UNIQUE INDEX messages_dedupe ON messages(sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
CREATE INDEX messages_pinned ON messages(chat_id, seq) WHERE is_pinned = 1;
-- Which chats a file was shared in (who may download it).
CREATE INDEX messages_by_file ON messages(file_url) WHERE file_url != '';
-- Expired (ttl) messages still holding content: what the expiry purge erases.
CREATE INDEX messages_expiring ON messages(expires_at) WHERE expires_at IS NOT NULL AND content != '';

-- Substring search that also works for CJK text (no word boundaries);
-- queries shorter than three characters fall back to LIKE within the chat.
--
-- Indexing is deferred so it stays off the append path: an append only
-- queues its id in fts_pending, and the writer thread indexes queued rows
-- in small steps when it is idle (see search_index.rs). Search covers the
-- queued tail with LIKE, so results never lag.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, content = 'messages', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TABLE fts_pending (
    pos        INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL
);
CREATE INDEX fts_pending_message ON fts_pending(message_id);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO fts_pending(message_id) VALUES (new.id);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    -- Already indexed: take the old text out now; the new text is queued.
    INSERT INTO messages_fts(messages_fts, rowid, content)
        SELECT 'delete', old.id, old.content
        WHERE old.content != '' AND NOT EXISTS (SELECT 1 FROM fts_pending WHERE message_id = old.id);
    INSERT INTO fts_pending(message_id)
        SELECT new.id WHERE NOT EXISTS (SELECT 1 FROM fts_pending WHERE message_id = new.id);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content)
        SELECT 'delete', old.id, old.content
        WHERE old.content != '' AND NOT EXISTS (SELECT 1 FROM fts_pending WHERE message_id = old.id);
    DELETE FROM fts_pending WHERE message_id = old.id;
END;

-- Messages with a future send_at wait here without a seq; at their time
-- they move to messages (keeping their id) and take the next seq, so seq
-- order is delivery order and clients never see a slot fill in late.
CREATE TABLE scheduled_messages (
    id                INTEGER PRIMARY KEY,
    chat_id           INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    sender_id         INTEGER NOT NULL,
    client_message_id TEXT,
    kind              TEXT    NOT NULL,
    content           TEXT    NOT NULL DEFAULT '',
    file_name         TEXT    NOT NULL DEFAULT '',
    file_size         INTEGER NOT NULL DEFAULT 0,
    file_url          TEXT    NOT NULL DEFAULT '',
    thumbnail         TEXT    NOT NULL DEFAULT '',
    reply_to_id       INTEGER,
    forward_from      INTEGER,
    ttl               INTEGER NOT NULL DEFAULT 0,
    send_at           INTEGER NOT NULL,
    is_silent         INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL
);
CREATE INDEX scheduled_due ON scheduled_messages(send_at);
CREATE UNIQUE INDEX scheduled_dedupe ON scheduled_messages(sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;

CREATE TABLE reactions (
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL,
    emoji      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
) WITHOUT ROWID;

CREATE TABLE files (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id         INTEGER NOT NULL REFERENCES users(id),
    name             TEXT    NOT NULL,
    size             INTEGER NOT NULL,
    mime             TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    sha256           TEXT    NOT NULL,
    thumbnail_sha256 TEXT,
    created_at       INTEGER NOT NULL
);
CREATE INDEX files_by_hash ON files(sha256);

CREATE TABLE notifications (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind                  TEXT    NOT NULL,
    content               TEXT    NOT NULL,
    is_read               INTEGER NOT NULL DEFAULT 0,
    related_resource_type TEXT,
    related_resource_id   TEXT,
    created_at            INTEGER NOT NULL
);
CREATE INDEX notifications_by_user ON notifications(user_id, id);
