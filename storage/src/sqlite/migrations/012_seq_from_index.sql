-- A chat's last seq is the last entry of its messages' (chat_id, seq)
-- index, which every append writes anyway, and its last activity is the
-- later of its own updated_at and its last message's created_at (rows.rs,
-- CHAT_SELECT). An append no longer rewrites its chat's row: that row was
-- a page of its own in the WAL for nearly every message of a commit.
-- Message rows are never deleted on their own (a deleted message keeps its
-- row and seq), so the index's last entry never goes back.
ALTER TABLE chats DROP COLUMN last_seq;
