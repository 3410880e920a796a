//! [`crate::FileStore`] for [`SqliteStore`].

use super::{
    FILE_COLUMNS, FileId, FileMeta, FileStore, NewFile, OptionalExtension, SqliteStore, StoreError, StoreResult,
    UserId, async_trait, constraint_message, params, rows,
};

#[async_trait]
impl FileStore for SqliteStore {
    async fn insert_file(&self, file: NewFile) -> StoreResult<FileMeta> {
        self.write(move |conn| {
            let sql = format!(
                "INSERT INTO files (owner_id, name, size, mime, kind, sha256, thumbnail_sha256, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING {FILE_COLUMNS}"
            );
            let inserted = conn.prepare_cached(&sql)?.query_row(
                params![
                    file.owner_id,
                    file.name,
                    file.size as i64,
                    file.mime,
                    file.kind.as_str(),
                    file.sha256,
                    file.thumbnail_sha256,
                    file.created_at
                ],
                rows::file,
            );
            match inserted {
                Err(error) if constraint_message(&error).is_some() => Err(StoreError::UserNotFound(file.owner_id)),
                other => other.map_err(Into::into),
            }
        })
        .await
    }

    async fn file(&self, id: FileId) -> StoreResult<Option<FileMeta>> {
        self.read(move |conn| {
            let sql = format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ?1");
            Ok(conn.prepare_cached(&sql)?.query_row([id], rows::file).optional()?)
        })
        .await
    }

    async fn delete_file(&self, id: FileId) -> StoreResult<Option<u64>> {
        self.write(move |conn| {
            let hash: Option<String> = conn
                .prepare_cached("DELETE FROM files WHERE id = ?1 RETURNING sha256")?
                .query_row([id], |row| row.get(0))
                .optional()?;
            let Some(hash) = hash else { return Ok(None) };
            files_with_hash(conn, &hash).map(Some)
        })
        .await
    }

    async fn files_sharing(&self, sha256: &str) -> StoreResult<u64> {
        let sha256 = sha256.to_owned();
        self.read(move |conn| files_with_hash(conn, &sha256)).await
    }

    async fn file_visible_to(&self, file_id: FileId, file_url: &str, user_id: UserId) -> StoreResult<bool> {
        let file_url = file_url.to_owned();
        self.read(move |conn| {
            let owner = conn
                .prepare_cached("SELECT 1 FROM files WHERE id = ?1 AND owner_id = ?2")?
                .exists([file_id, user_id])?;
            if owner {
                return Ok(true);
            }
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM messages m JOIN members me ON me.chat_id = m.chat_id AND me.user_id = ?2 \
                     WHERE m.file_url = ?1 AND m.is_deleted = 0 AND (m.expires_at IS NULL OR m.expires_at > ?3) \
                     AND (m.send_at IS NULL OR m.send_at <= ?3) LIMIT 1",
                )?
                .exists(params![file_url, user_id, protocol::time::now_millis()])?)
        })
        .await
    }
}

/// How many files have the content hash `sha256`.
fn files_with_hash(conn: &rusqlite::Connection, sha256: &str) -> StoreResult<u64> {
    let count: i64 =
        conn.prepare_cached("SELECT COUNT(*) FROM files WHERE sha256 = ?1")?.query_row([sha256], |row| row.get(0))?;
    Ok(count as u64)
}
