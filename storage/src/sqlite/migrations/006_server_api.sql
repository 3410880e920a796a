-- What app backends keep through the server API: an account's external id
-- (a WeChat openid), unique; an account with only that keeps the
-- placeholder '@' and its id in the NOT NULL UNIQUE phone column, like an
-- email-only account. Their key-value profile fields, one JSON object per
-- user. Notifications gain a title, a JSON data object and an expiry.
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS users_external_id ON users (external_id);

CREATE TABLE IF NOT EXISTS profile_fields (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    fields     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

ALTER TABLE notifications ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE notifications ADD COLUMN data TEXT;
ALTER TABLE notifications ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 9223372036854775807;
CREATE INDEX IF NOT EXISTS notifications_by_expiry ON notifications (expires_at);
