-- The full-text index moves to its own file (search.db beside this one),
-- written by its own thread: an indexing step no longer holds this file's
-- write lock, so no send ever waits behind one.
--
-- fts_pending stays the queue, in commit order (`pos` is handed out by the
-- one writer). The index records how far it got (search.db's
-- indexed_upto); the writer trims the queue behind that mark. A message's
-- insert queues it (when it has text); an edit or a delete queues it with
-- `reindex`, so the index drops what it held for it first.
--
-- Everything is indexed anew: a store opened without its search.db queues
-- every message again (search_index.rs), which is what happens right
-- after this migration.
DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_update;
DROP TRIGGER messages_fts_delete;
DROP TABLE messages_fts;
DROP INDEX fts_pending_message;
DELETE FROM fts_pending;
ALTER TABLE fts_pending ADD COLUMN reindex INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER messages_search_insert AFTER INSERT ON messages WHEN new.content != '' BEGIN
    INSERT INTO fts_pending(message_id) VALUES (new.id);
END;
CREATE TRIGGER messages_search_update AFTER UPDATE OF content ON messages
    WHEN old.content IS NOT new.content BEGIN
    INSERT INTO fts_pending(message_id, reindex) VALUES (new.id, 1);
END;
CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
    INSERT INTO fts_pending(message_id, reindex) VALUES (old.id, 1);
END;
