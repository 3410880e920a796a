-- Seed 000's media fields of a message (width, height, duration, extra),
-- kept as one JSON object as the client sent them.
ALTER TABLE messages ADD COLUMN media TEXT NOT NULL DEFAULT '';
ALTER TABLE scheduled_messages ADD COLUMN media TEXT NOT NULL DEFAULT '';
