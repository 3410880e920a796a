-- The devices each user signed in from (seed 000's is_new_device,
-- X-Device-ID and X-Platform).
CREATE TABLE IF NOT EXISTS user_devices (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id   TEXT    NOT NULL,
    platform    TEXT    NOT NULL DEFAULT '',
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;
