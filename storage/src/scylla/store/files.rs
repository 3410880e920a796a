//! [`crate::FileStore`] for [`ScyllaStore`].

use super::{FileId, FileMeta, FileStore, NewFile, ScyllaStore, StoreResult, UserId, async_trait, try_join};

#[async_trait]
impl FileStore for ScyllaStore {
    async fn insert_file(&self, file: NewFile) -> StoreResult<FileMeta> {
        let _open = self.open_guard().await?;
        self.require_user(file.owner_id).await?;
        let id = self.inner.ids.next_id();
        let values = (
            id,
            file.owner_id,
            file.name.as_str(),
            file.size as i64,
            file.mime.as_str(),
            file.kind.as_str(),
            file.sha256.as_str(),
            file.thumbnail_sha256.as_deref(),
            file.created_at,
        );
        try_join(
            self.run(&self.st().insert_file, values),
            self.run(&self.st().insert_file_hash, (file.sha256.as_str(), id)),
        )
        .await?;
        Ok(FileMeta {
            id,
            owner_id: file.owner_id,
            name: file.name,
            size: file.size,
            mime: file.mime,
            kind: file.kind,
            sha256: file.sha256,
            thumbnail_sha256: file.thumbnail_sha256,
            created_at: file.created_at,
        })
    }

    async fn file(&self, id: FileId) -> StoreResult<Option<FileMeta>> {
        let _open = self.open_guard().await?;
        self.load_file(id).await
    }

    async fn delete_file(&self, id: FileId) -> StoreResult<Option<u64>> {
        let _open = self.open_guard().await?;
        let Some(file) = self.load_file(id).await? else { return Ok(None) };
        try_join(
            self.run(&self.st().delete_file, (id,)),
            self.run(&self.st().delete_file_hash, (file.sha256.as_str(), id)),
        )
        .await?;
        Ok(Some(self.count(&self.st().files_of_hash, (file.sha256.as_str(),)).await?))
    }

    async fn files_sharing(&self, sha256: &str) -> StoreResult<u64> {
        let _open = self.open_guard().await?;
        self.count(&self.st().files_of_hash, (sha256,)).await
    }

    async fn file_visible_to(&self, file_id: FileId, file_url: &str, user_id: UserId) -> StoreResult<bool> {
        let _open = self.open_guard().await?;
        if self.load_file(file_id).await?.is_some_and(|file| file.owner_id == user_id) {
            return Ok(true);
        }
        // A message in one of the user's chats that is still there (not
        // deleted, not expired, not waiting to be sent) names it.
        let now = protocol::time::now_millis();
        let rows = self.rows::<(i64, i64)>(&self.st().file_chats, (file_url,)).await?;
        let mut member_of = std::collections::HashMap::new();
        for (chat, message) in rows {
            let member = if let Some(&member) = member_of.get(&chat) {
                member
            } else {
                let member = self.load_member(chat, user_id).await?.is_some();
                member_of.insert(chat, member);
                member
            };
            if member && self.load_message(message).await?.is_some_and(|message| message.is_visible_at(now)) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
