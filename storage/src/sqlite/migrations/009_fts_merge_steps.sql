-- FTS5 merges its index segments in bursts: every 64 leaf pages written,
-- 64 pages per level at once (tens of milliseconds inside one indexing
-- step, which every write queued behind it waits for). Turned off here;
-- each indexing step merges a few pages itself (search_index.rs).
INSERT INTO messages_fts(messages_fts, rank) VALUES('automerge', 0);
