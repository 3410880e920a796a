-- An append queues its message for the search index itself (store.rs,
-- `append_with_id`) instead of through an insert trigger. A trigger makes
-- the insert a statement that writes several tables and so needs a
-- statement journal: a copy of every page it touches, for each message.
-- Without it, a failing insert fails before writing anything, and the
-- messages of one batch share their job's savepoint.
DROP TRIGGER messages_search_insert;
