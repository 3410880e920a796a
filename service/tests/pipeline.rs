//! The send pipeline over the real SQLite store and the in-process router.

use std::sync::Arc;
use storage::prelude::*;

use protocol::time::now_millis;
use router::{LocalRouter, Router};
use service::{Retries, SendLimits, SendPipeline, ServiceError};
use storage::model::{ChatKind, ContactUpdate, MessageKind, NewChat, NewMessage, NewUser};
use storage::{SqliteConfig, SqliteStore};

/// A text message; the pipeline stamps its time.
fn text(chat: i64, sender: i64, content: impl Into<String>) -> NewMessage {
    NewMessage::text(chat, sender, content, 0)
}

struct World {
    store: SqliteStore,
    pipeline: SendPipeline,
    deliveries: router::Subscription,
    dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
    let router = LocalRouter::new();
    let deliveries = router.subscribe();
    let pipeline = SendPipeline::new(Arc::new(store.clone()), Arc::new(router), SendLimits::default());
    World { store, pipeline, deliveries, dir }
}

async fn user(store: &SqliteStore, phone: &str) -> i64 {
    let new = NewUser {
        phone: phone.into(),
        username: Some(format!("u{phone}")),
        created_at: now_millis(),
        ..NewUser::default()
    };
    store.create_user(new).await.unwrap().id
}

async fn chat(store: &SqliteStore, kind: ChatKind, owner: i64, members: &[i64]) -> i64 {
    let new = NewChat { kind, ..NewChat::group(owner, "chat", members.to_vec(), now_millis()) };
    store.create_chat(new).await.unwrap().0.id
}

#[tokio::test]
async fn a_send_is_stored_then_delivered_to_every_member() {
    let mut w = world();
    let (alice, bob, carol) = (user(&w.store, "1").await, user(&w.store, "2").await, user(&w.store, "3").await);
    let group = chat(&w.store, ChatKind::Group, alice, &[bob, carol]).await;
    let mut request = text(group, alice, "hello all");
    request.client_message_id = Some("c1".into());
    let sent = w.pipeline.send(request.clone()).await.unwrap();
    assert!(!sent.duplicate && !sent.scheduled);
    assert_eq!(sent.message.seq, 1);
    assert_eq!(w.store.message(sent.message.id).await.unwrap().unwrap().content, "hello all");

    let delivery = w.deliveries.recv().await.unwrap();
    let event = delivery.frame.to_event().unwrap();
    assert_eq!(event.kind, "message.new");
    let mut recipients = delivery.recipients.clone();
    recipients.sort_unstable();
    assert_eq!(recipients, vec![alice, bob, carol], "the sender's other devices too");
    assert_eq!(event.data["seq"], 1);
    assert_eq!(event.data["content"], "hello all");
    assert_eq!(event.data["sender"]["username"], "u1");
    assert_eq!(event.data["client_message_id"], "c1");

    // A retry returns the original and delivers nothing again.
    let again = w.pipeline.send(request).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.id, sent.message.id);
    assert!(w.deliveries.try_recv().is_err());
}

#[tokio::test]
async fn refusals_say_why() {
    let w = world();
    let (alice, bob, mallory) = (user(&w.store, "1").await, user(&w.store, "2").await, user(&w.store, "3").await);
    let direct = chat(&w.store, ChatKind::Private, alice, &[bob]).await;
    let elsewhere = chat(&w.store, ChatKind::Group, mallory, &[]).await;
    let secret = w.pipeline.send(text(elsewhere, mallory, "secret")).await.unwrap().message;

    assert!(matches!(w.pipeline.send(text(999, alice, "x")).await, Err(ServiceError::ChatNotFound(999))));
    assert!(matches!(w.pipeline.send(text(direct, mallory, "x")).await, Err(ServiceError::NotMember(_))));
    assert!(matches!(w.pipeline.send(text(direct, alice, "   ")).await, Err(ServiceError::Invalid(_))));
    let long = "字".repeat(4_097);
    assert!(matches!(w.pipeline.send(text(direct, alice, long)).await, Err(ServiceError::Invalid(_))));
    let mut system = text(direct, alice, "fake");
    system.kind = MessageKind::System;
    assert!(matches!(w.pipeline.send(system).await, Err(ServiceError::Invalid(_))));
    let mut forever = text(direct, alice, "x");
    forever.ttl = 10 * 365 * 24 * 3600;
    assert!(matches!(w.pipeline.send(forever).await, Err(ServiceError::Invalid(_))));
    let mut empty_key = text(direct, alice, "x");
    empty_key.client_message_id = Some(String::new());
    assert!(matches!(w.pipeline.send(empty_key).await, Err(ServiceError::Invalid(_))));
    let mut stray_reply = text(direct, alice, "re");
    stray_reply.reply_to_id = Some(secret.id);
    assert!(matches!(w.pipeline.send(stray_reply).await, Err(ServiceError::MessageNotFound(_))));
    let mut leak = text(direct, alice, "");
    leak.forward_from = Some(secret.id);
    assert!(
        matches!(w.pipeline.send(leak).await, Err(ServiceError::MessageNotFound(_))),
        "cannot forward what one cannot read"
    );

    // Blocked in a private chat: refused, with its own error.
    w.store.add_contact(bob, alice, String::new(), now_millis()).await.unwrap();
    let block = ContactUpdate { is_blocked: Some(true), updated_at: now_millis(), ..ContactUpdate::default() };
    w.store.update_contact(bob, alice, block).await.unwrap();
    assert!(matches!(w.pipeline.send(text(direct, alice, "hi")).await, Err(ServiceError::Blocked)));
    assert!(w.pipeline.send(text(direct, bob, "I can still write")).await.is_ok());
}

#[tokio::test]
async fn group_members_who_blocked_the_sender_are_skipped() {
    let mut w = world();
    let (alice, bob, carol) = (user(&w.store, "1").await, user(&w.store, "2").await, user(&w.store, "3").await);
    let group = chat(&w.store, ChatKind::Group, alice, &[bob, carol]).await;
    w.store.add_contact(carol, alice, String::new(), now_millis()).await.unwrap();
    let block = ContactUpdate { is_blocked: Some(true), updated_at: now_millis(), ..ContactUpdate::default() };
    w.store.update_contact(carol, alice, block).await.unwrap();
    w.pipeline.send(text(group, alice, "hi group")).await.unwrap();
    let mut recipients = w.deliveries.recv().await.unwrap().recipients.clone();
    recipients.sort_unstable();
    assert_eq!(recipients, vec![alice, bob]);
}

#[tokio::test]
async fn forwards_copy_the_original_with_a_reference() {
    let w = world();
    let (alice, bob) = (user(&w.store, "1").await, user(&w.store, "2").await);
    let first = chat(&w.store, ChatKind::Group, alice, &[]).await;
    let second = chat(&w.store, ChatKind::Group, alice, &[bob]).await;
    let upload = storage::model::NewFile {
        owner_id: alice,
        name: "look.png".into(),
        size: 3,
        mime: "image/png".into(),
        kind: storage::model::FileKind::Image,
        sha256: "0".repeat(64),
        thumbnail_sha256: None,
        created_at: now_millis(),
    };
    let file = w.store.insert_file(upload).await.unwrap();
    let path = format!("/api/files/{}", file.id);
    let mut photo = text(first, alice, "look");
    photo.kind = MessageKind::Image;
    photo.file_url.clone_from(&path);
    let original = w.pipeline.send(photo).await.unwrap().message;
    assert_eq!((original.file_name.as_str(), original.file_size), ("look.png", 3), "filled in from the record");
    let mut forward = text(second, alice, "");
    forward.forward_from = Some(original.id);
    let copy = w.pipeline.send(forward).await.unwrap().message;
    assert_eq!((copy.kind, copy.content.as_str(), copy.file_url.as_str()), (MessageKind::Image, "look", path.as_str()));
    assert_eq!((copy.forward_from, copy.chat_id, copy.seq), (Some(original.id), second, 1));
}

#[tokio::test]
async fn scheduled_messages_are_held_then_delivered_with_the_next_seq() {
    let mut w = world();
    let (alice, bob) = (user(&w.store, "1").await, user(&w.store, "2").await);
    let group = chat(&w.store, ChatKind::Group, alice, &[bob]).await;
    let mut later = text(group, alice, "later");
    later.send_at = Some(now_millis() + 60_000);
    let held = w.pipeline.send(later).await.unwrap();
    assert!(held.scheduled);
    assert_eq!(held.message.seq, 0);
    assert!(w.deliveries.try_recv().is_err(), "not delivered before its time");
    w.pipeline.send(text(group, bob, "meanwhile")).await.unwrap();
    w.deliveries.recv().await.unwrap();

    assert_eq!(w.pipeline.release_due(now_millis(), &mut Retries::default()).await.unwrap(), 0);
    assert_eq!(w.pipeline.release_due(now_millis() + 61_000, &mut Retries::default()).await.unwrap(), 1);
    let released = w.deliveries.recv().await.unwrap().frame.to_event().unwrap();
    assert_eq!(released.data["id"], held.message.id);
    assert_eq!(released.data["seq"], 2);

    // A sender who left before the time sends nothing.
    let mut orphan = text(group, bob, "bye");
    orphan.send_at = Some(now_millis() + 1_000);
    let orphan = w.pipeline.send(orphan).await.unwrap().message;
    w.store.remove_member(group, bob).await.unwrap();
    assert_eq!(w.pipeline.release_due(now_millis() + 2_000, &mut Retries::default()).await.unwrap(), 0);
    assert!(w.store.scheduled_message(orphan.id).await.unwrap().is_none());
    assert!(w.deliveries.try_recv().is_err());
}

#[tokio::test]
async fn a_scheduled_message_that_cannot_be_released_holds_no_other_back() {
    let w = world();
    let alice = user(&w.store, "13800000001").await;
    let group = chat(&w.store, ChatKind::Group, alice, &[]).await;
    // The database itself refuses to store one of them, as a failing disk
    // or a broken row would: a trigger, through a connection of its own.
    let db = rusqlite::Connection::open(w.dir.path().join(storage::sqlite::DATABASE_FILE)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages WHEN NEW.content = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();
    let due = now_millis() + 1_000;
    // The poisoned one is due first: it heads every list of due messages.
    let mut poison = text(group, alice, "poison");
    poison.send_at = Some(due - 10);
    let poison = w.pipeline.send(poison).await.unwrap().message;
    for n in 0..3 {
        let mut fine = text(group, alice, format!("fine {n}"));
        fine.send_at = Some(due);
        w.pipeline.send(fine).await.unwrap();
    }
    let mut retries = Retries::default();
    assert_eq!(w.pipeline.release_due(due, &mut retries).await.unwrap(), 3, "the others go out");
    assert_eq!(retries.len(), 1);
    assert!(w.store.scheduled_message(poison.id).await.unwrap().is_some(), "kept for another try");
    // Not tried again at once; once the store takes it, it goes out too.
    assert_eq!(w.pipeline.release_due(due + 10, &mut retries).await.unwrap(), 0);
    db.execute_batch("DROP TRIGGER refuse_poison").unwrap();
    assert_eq!(w.pipeline.release_due(due + 60_000, &mut retries).await.unwrap(), 1);
    assert!(retries.is_empty());
}
