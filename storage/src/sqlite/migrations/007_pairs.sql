-- Seed 003's and 004's profile fields the user sets (gender, birthday,
-- their client preferences as a JSON object); pairs of users (seed 004's
-- couples), one row per side, and the one-use invitation codes that pair them.
ALTER TABLE users ADD COLUMN gender TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN birthday TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN preferences TEXT NOT NULL DEFAULT '';

CREATE TABLE IF NOT EXISTS pairs (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    partner_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    pair_id    INTEGER NOT NULL,
    chat_id    INTEGER NOT NULL,
    since      INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS pair_invitations (
    code       TEXT    PRIMARY KEY,
    inviter    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    used_by    INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pair_invitations_by_inviter ON pair_invitations (inviter, expires_at);
