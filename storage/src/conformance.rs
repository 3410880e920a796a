//! The conformance suite every [`Store`] backend must pass.
//!
//! Each case is a public async function taking a fresh, empty store. A
//! backend's test file instantiates them all with [`conformance_suite!`]:
//!
//! ```ignore
//! storage::conformance_suite!(async { (open_fresh_store().await, guard) });
//! // or, for a backend that needs a server that may be missing:
//! storage::conformance_suite!(optional async { Some((open().await?, guard)) });
//! ```
//!
//! The second tuple element keeps whatever the store needs alive (a
//! temporary folder, a keyspace) until the case ends.

#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

use std::collections::BTreeSet;

use protocol::time::now_millis;

use crate::model::{
    Appended, ChatKind, ChatUpdate, ContactUpdate, Couple, Cursor, DeviceSeen, FileKind, GroupInvites, InvitationClaim,
    Joining, MemberRole, MessageKind, MessageQuery, NewChat, NewFile, NewMessage, NewNotification, NewUser,
    PairInvitation, ReceiptKind, ReceiptMark, RefreshRotation, RefreshToken, UserUpdate,
};
use crate::{Store, StoreError};

/// Generates one `#[tokio::test]` per conformance case. `$make` is an
/// expression evaluating to a future of `(store, guard)`. With `optional`
/// in front (a backend that needs a server), it evaluates to a future of
/// `Option<(store, guard)>`, and the cases are `#[ignore]`d: the runner
/// reports them as ignored unless asked for them (`-- --ignored`), and a
/// case asked for with no server (`None`) fails, never passes.
#[macro_export]
macro_rules! conformance_suite {
    (@cases always $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::conformance::$case(&store).await;
            }
        )+
    };
    (@cases optional $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs a server: see this test file's header"]
            async fn $case() {
                let Some((store, _guard)) = $make.await else {
                    panic!("this conformance case needs a server, and none is configured");
                };
                $crate::conformance::$case(&store).await;
            }
        )+
    };
    (@all $mode:ident $make:expr) => {
        $crate::conformance_suite!(@cases $mode $make;
            users_register_update_and_lookup,
            emails_are_unique_and_case_insensitive,
            devices_are_new_once_per_user,
            refresh_tokens_rotate_and_detect_reuse,
            contacts_add_update_block_delete,
            send_context_reads_what_a_send_needs,
            chats_members_and_roles,
            chat_list_orders_and_counts,
            seq_is_contiguous_under_concurrent_senders,
            client_message_id_dedupes,
            batched_appends_keep_order_and_their_own_outcomes,
            pages_before_after_and_filters,
            history_pages_across_partition_buckets,
            search_finds_substrings_and_forgets_deleted,
            ttl_and_scheduled_messages_are_hidden,
            edit_delete_pin_and_react,
            read_markers_and_unread_counts,
            receipts_date_each_message_from_marker_advances,
            files_share_content,
            notifications_page_and_mark_read,
            notifications_delete_and_expire,
            external_ids_and_profile_fields,
            pairs_bind_once_and_invitations_are_used_once,
            joining_a_group_takes_consent_and_room,
            the_member_cap_holds_under_racing_additions,
            scheduled_messages_take_their_seq_when_released,
            shutdown_finishes_and_refuses_more,
        );
    };
    (optional $make:expr) => {
        $crate::conformance_suite!(@all optional $make);
    };
    ($make:expr) => {
        $crate::conformance_suite!(@all always $make);
    };
}

async fn user<S: Store>(store: &S, phone: &str) -> i64 {
    store
        .create_user(NewUser {
            phone: phone.into(),
            username: Some(format!("user{phone}")),
            nickname: format!("nick {phone}"),
            password_hash: None,
            created_at: now_millis(),
            ..NewUser::default()
        })
        .await
        .unwrap()
        .id
}

async fn group<S: Store>(store: &S, owner: i64, members: &[i64]) -> i64 {
    store.create_chat(NewChat::group(owner, "group", members.to_vec(), now_millis())).await.unwrap().0.id
}

async fn send<S: Store>(store: &S, chat: i64, sender: i64, text: &str) -> crate::model::Message {
    store.append_message(NewMessage::text(chat, sender, text, now_millis())).await.unwrap().into_message()
}

/// The seq of the chat's newest message (0 for none).
async fn top_seq<S: Store>(store: &S, chat: i64) -> u64 {
    let newest = store.messages(chat, MessageQuery::latest(1, now_millis() + 1)).await.unwrap();
    newest.first().map_or(0, |message| message.seq)
}

pub async fn users_register_update_and_lookup<S: Store>(store: &S) {
    let now = now_millis();
    let alice = store
        .create_user(NewUser {
            phone: "13800000001".into(),
            username: Some("alice".into()),
            nickname: "Alice".into(),
            password_hash: Some("$argon2id$hash".into()),
            created_at: now,
            ..NewUser::default()
        })
        .await
        .unwrap();
    assert_eq!(alice.phone, "13800000001");
    assert_eq!(alice.nickname, "Alice");
    assert_eq!(alice.created_at, now);
    assert!(!alice.is_disabled);

    let same_phone = NewUser { phone: "13800000001".into(), username: Some("other".into()), ..NewUser::default() };
    let same_both = NewUser { phone: "13800000001".into(), username: Some("alice".into()), ..NewUser::default() };
    assert!(matches!(store.create_user(same_both).await, Err(StoreError::PhoneTaken)), "the phone clash wins");
    assert!(matches!(store.create_user(same_phone).await, Err(StoreError::PhoneTaken)));
    let same_name = NewUser { phone: "13800000002".into(), username: Some("alice".into()), ..NewUser::default() };
    assert!(matches!(store.create_user(same_name).await, Err(StoreError::UsernameTaken)));
    let bob = user(store, "13800000003").await;

    assert_eq!(store.user_by_phone("13800000001").await.unwrap().unwrap().id, alice.id);
    assert_eq!(store.user_by_username("alice").await.unwrap().unwrap().id, alice.id);
    assert!(store.user_by_phone("000").await.unwrap().is_none());
    assert!(store.user(999_999).await.unwrap().is_none());
    let mut both: Vec<i64> = store.users(&[alice.id, bob, 999_999]).await.unwrap().iter().map(|u| u.id).collect();
    both.sort_unstable();
    assert_eq!(both, vec![alice.id, bob]);

    assert_eq!(store.password_hash(alice.id).await.unwrap().as_deref(), Some("$argon2id$hash"));
    assert!(store.password_hash(bob).await.unwrap().is_none());
    store.set_password_hash(bob, "$argon2id$bob".into(), now).await.unwrap();
    store.set_password_hash(bob, "$argon2id$bob2".into(), now).await.unwrap();
    assert_eq!(store.password_hash(bob).await.unwrap().as_deref(), Some("$argon2id$bob2"));
    assert!(matches!(store.set_password_hash(999_999, "x".into(), now).await, Err(StoreError::UserNotFound(999_999))));

    let updated = store
        .update_user(
            alice.id,
            UserUpdate {
                bio: Some("hello".into()),
                theme: Some("dark".into()),
                updated_at: now + 5,
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((updated.bio.as_str(), updated.theme.as_str(), updated.nickname.as_str()), ("hello", "dark", "Alice"));
    assert_eq!(updated.updated_at, now + 5);
    let taken = UserUpdate { username: Some("alice".into()), updated_at: now, ..UserUpdate::default() };
    assert!(matches!(store.update_user(bob, taken).await, Err(StoreError::UsernameTaken)));
    assert!(store.update_user(999_999, UserUpdate::default()).await.unwrap().is_none());

    store.set_last_seen(alice.id, now + 10).await.unwrap();
    store.set_last_seen(alice.id, now + 1).await.unwrap();
    assert_eq!(store.user(alice.id).await.unwrap().unwrap().last_seen, Some(now + 10));
}

pub async fn devices_are_new_once_per_user<S: Store>(store: &S) {
    let ann = user(store, "13800000001").await;
    let bob = user(store, "13800000002").await;
    let seen = |user_id: i64, device: &str, platform: &str, at: i64| DeviceSeen {
        user_id,
        device_id: device.into(),
        platform: platform.into(),
        at,
    };
    assert!(store.record_device(seen(ann, "phone-1", "ios", 10)).await.unwrap(), "first sighting");
    assert!(!store.record_device(seen(ann, "phone-1", "", 20)).await.unwrap(), "seen before");
    assert!(store.record_device(seen(ann, "tablet", "android", 30)).await.unwrap());
    assert!(store.record_device(seen(bob, "phone-1", "ios", 40)).await.unwrap(), "another user's device is theirs");
    let ghost = store.record_device(seen(999_999, "x", "web", 50)).await;
    assert!(matches!(ghost, Err(StoreError::UserNotFound(999_999))), "{ghost:?}");
}

pub async fn emails_are_unique_and_case_insensitive<S: Store>(store: &S) {
    let now = now_millis();
    let by_email = |email: &str, username: &str| NewUser {
        email: Some(email.into()),
        username: Some(username.into()),
        created_at: now,
        ..NewUser::default()
    };
    // An account by email alone has no phone.
    let ann = store.create_user(by_email(" Ann@Example.com", "ann")).await.unwrap();
    assert_eq!((ann.phone.as_str(), ann.email.as_deref()), ("", Some("ann@example.com")));
    assert_eq!(store.user_by_email("ANN@example.COM").await.unwrap().map(|user| user.id), Some(ann.id));
    assert_eq!(store.user(ann.id).await.unwrap().unwrap().email.as_deref(), Some("ann@example.com"));
    assert!(store.user_by_email("").await.unwrap().is_none());
    assert!(store.user_by_email("nobody@example.com").await.unwrap().is_none());
    // Another case of the same address is the same address.
    let again = store.create_user(by_email("ann@EXAMPLE.com", "ann2")).await;
    assert!(matches!(again, Err(StoreError::EmailTaken)), "{again:?}");
    // Two accounts without a phone, and one with both.
    let ben = store.create_user(by_email("ben@example.com", "ben")).await.unwrap();
    assert_eq!(ben.phone, "");
    let both = NewUser { phone: "13800000009".into(), ..by_email("cat@example.com", "cat") };
    let cat = store.create_user(both).await.unwrap();
    assert_eq!(store.user_by_phone("13800000009").await.unwrap().map(|user| user.id), Some(cat.id));
    assert_eq!(store.user_by_email("cat@example.com").await.unwrap().map(|user| user.id), Some(cat.id));
    // A taken username gives the email back for the next try.
    let clash = store.create_user(by_email("dan@example.com", "ann")).await;
    assert!(matches!(clash, Err(StoreError::UsernameTaken)), "{clash:?}");
    store.create_user(by_email("dan@example.com", "dan")).await.unwrap();
    // Neither a phone nor an email: nothing to find the account by.
    let nameless = store.create_user(NewUser { created_at: now, ..NewUser::default() }).await;
    assert!(matches!(nameless, Err(StoreError::Invalid(_))), "{nameless:?}");
}

/// A grace window that has always already passed.
const NO_GRACE: i64 = i64::MAX;

pub async fn refresh_tokens_rotate_and_detect_reuse<S: Store>(store: &S) {
    let alice = user(store, "1").await;
    let now = now_millis();
    let token = |hash: &str| RefreshToken {
        token_hash: hash.into(),
        user_id: alice,
        family_id: "family-1".into(),
        expires_at: now + 60_000,
        created_at: now,
    };
    store.insert_refresh_token(token("h1")).await.unwrap();

    // Reading a live token spends nothing.
    assert_eq!(store.live_refresh_token("h1", now).await.unwrap().map(|token| token.user_id), Some(alice));
    assert!(store.live_refresh_token("h1", now + 60_000).await.unwrap().is_none(), "expired");
    let first = store.rotate_refresh_token("h1", "h2".into(), now + 60_000, now, NO_GRACE).await.unwrap();
    assert!(store.live_refresh_token("h1", now).await.unwrap().is_none(), "spent by the rotation");
    assert!(matches!(first, RefreshRotation::Rotated { ref previous } if previous.user_id == alice));
    // h1 again within the grace window: answered Recent, nothing changes.
    let again = store.rotate_refresh_token("h1", "h9".into(), now + 60_000, now, now).await.unwrap();
    assert_eq!(again, RefreshRotation::Recent { user_id: alice, family_id: "family-1".into(), used_at: now });
    assert!(store.live_refresh_token("h2", now).await.unwrap().is_some(), "the successor stands");
    assert!(store.live_refresh_token("h9", now).await.unwrap().is_none(), "no second successor");
    // h1 again: reuse of a spent token revokes the family, h2 included.
    let reused = store.rotate_refresh_token("h1", "h3".into(), now + 60_000, now, NO_GRACE).await.unwrap();
    assert_eq!(reused, RefreshRotation::Reused { user_id: alice, family_id: "family-1".into() });
    assert!(matches!(
        store.rotate_refresh_token("h2", "h4".into(), now + 60_000, now, NO_GRACE).await.unwrap(),
        RefreshRotation::Reused { .. }
    ));
    assert_eq!(
        store.rotate_refresh_token("nope", "h5".into(), now, now, NO_GRACE).await.unwrap(),
        RefreshRotation::Unknown
    );

    let expired =
        RefreshToken { token_hash: "old".into(), family_id: "family-2".into(), expires_at: now - 1, ..token("") };
    store.insert_refresh_token(expired).await.unwrap();
    assert_eq!(
        store.rotate_refresh_token("old", "h6".into(), now, now, NO_GRACE).await.unwrap(),
        RefreshRotation::Expired
    );

    let live = RefreshToken { token_hash: "live".into(), family_id: "family-3".into(), ..token("") };
    store.insert_refresh_token(live).await.unwrap();
    assert!(store.revoke_refresh_token("live", now).await.unwrap());
    assert!(!store.revoke_refresh_token("missing", now).await.unwrap());
    assert!(matches!(
        store.rotate_refresh_token("live", "h7".into(), now, now, NO_GRACE).await.unwrap(),
        RefreshRotation::Reused { .. }
    ));

    store.revoke_access_token("jti-live", now + 60_000, now).await.unwrap();
    store.revoke_access_token("jti-old", now - 1, now).await.unwrap();
    let denied = store.revoked_access_tokens(now).await.unwrap();
    assert_eq!(denied, vec![("jti-live".to_owned(), now + 60_000)], "expired entries no longer matter");

    let other = RefreshToken { token_hash: "f4".into(), family_id: "family-4".into(), ..token("") };
    store.insert_refresh_token(other).await.unwrap();
    assert_eq!(store.revoke_refresh_family("family-4", now).await.unwrap(), 1);
    assert_eq!(store.revoke_refresh_family("family-4", now).await.unwrap(), 0);
}

pub async fn contacts_add_update_block_delete<S: Store>(store: &S) {
    let (alice, bob, carol) = (user(store, "1").await, user(store, "2").await, user(store, "3").await);
    let now = now_millis();
    let contact = store.add_contact(alice, bob, "Bobby".into(), now).await.unwrap();
    assert_eq!((contact.user_id, contact.contact_id, contact.nickname.as_str()), (alice, bob, "Bobby"));
    assert!(!contact.is_blocked && !contact.is_muted);
    assert!(matches!(store.add_contact(alice, bob, String::new(), now).await, Err(StoreError::ContactExists)));
    assert!(matches!(store.add_contact(alice, alice, String::new(), now).await, Err(StoreError::Invalid(_))));
    assert!(matches!(
        store.add_contact(alice, 999_999, String::new(), now).await,
        Err(StoreError::UserNotFound(999_999))
    ));
    store.add_contact(alice, carol, String::new(), now).await.unwrap();
    let listed: Vec<i64> = store.contacts(alice).await.unwrap().iter().map(|c| c.contact_id).collect();
    assert_eq!(listed, vec![bob, carol]);
    assert!(store.contacts(bob).await.unwrap().is_empty());

    assert!(!store.is_blocked(alice, bob).await.unwrap());
    let blocked = store
        .update_contact(
            alice,
            bob,
            ContactUpdate { is_blocked: Some(true), updated_at: now + 1, ..ContactUpdate::default() },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(blocked.is_blocked);
    assert_eq!(blocked.nickname, "Bobby", "fields left out stay as they were");
    assert!(store.is_blocked(alice, bob).await.unwrap());
    assert!(!store.is_blocked(bob, alice).await.unwrap(), "blocking is one-way");
    assert_eq!(store.blockers_of(bob, &[alice, carol]).await.unwrap(), vec![alice]);
    assert!(store.blockers_of(bob, &[carol]).await.unwrap().is_empty(), "only among those asked about");
    assert!(store.blockers_of(alice, &[bob, carol]).await.unwrap().is_empty());
    assert!(store.update_contact(bob, alice, ContactUpdate::default()).await.unwrap().is_none());
    assert_eq!(store.contact(alice, bob).await.unwrap().unwrap().id, contact.id);

    let dave = user(store, "4").await;
    store.add_contact(carol, alice, String::new(), now).await.unwrap();
    let direct = NewChat { kind: ChatKind::Private, ..NewChat::group(dave, "", vec![alice], now) };
    store.create_chat(direct).await.unwrap();
    let mut audience = store.presence_audience(alice).await.unwrap();
    audience.sort_unstable();
    assert_eq!(audience, vec![carol, dave], "mutual contacts, and her private-chat peers");
    // One-sided: keeping alice as a contact is not enough; a peer she blocks is left out.
    let eve = user(store, "5").await;
    store.add_contact(eve, alice, String::new(), now).await.unwrap();
    store.add_contact(alice, dave, String::new(), now).await.unwrap();
    let block_dave = ContactUpdate { is_blocked: Some(true), updated_at: now + 1, ..ContactUpdate::default() };
    store.update_contact(alice, dave, block_dave).await.unwrap();
    assert_eq!(store.presence_audience(alice).await.unwrap(), vec![carol], "not eve (one-sided), not dave (blocked)");
    // Who may look: mutual contacts and chat peers, never someone blocked, oneself always.
    let mut seen = store.presence_visible(carol, &[alice, eve, carol]).await.unwrap();
    seen.sort_unstable();
    assert_eq!(seen, vec![alice, carol]);
    assert!(store.presence_visible(dave, &[alice]).await.unwrap().is_empty(), "a peer alice blocked");
    assert!(store.presence_visible(eve, &[alice]).await.unwrap().is_empty(), "a one-sided contact");
    group(store, eve, &[carol]).await;
    assert_eq!(store.presence_visible(eve, &[carol, alice]).await.unwrap(), vec![carol], "a chat in common");
    let mut bobs = store.presence_audience(bob).await.unwrap();
    bobs.sort_unstable();
    assert!(bobs.is_empty(), "alice blocked bob, so she does not hear of him: {bobs:?}");

    assert!(store.delete_contact(alice, bob).await.unwrap());
    assert!(!store.delete_contact(alice, bob).await.unwrap());
    assert!(store.contact(alice, bob).await.unwrap().is_none());
    assert!(!store.is_blocked(alice, bob).await.unwrap());
}

pub async fn send_context_reads_what_a_send_needs<S: Store>(store: &S) {
    let (alice, bob, carol) = (user(store, "1").await, user(store, "2").await, user(store, "3").await);
    let chat = group(store, alice, &[bob, carol]).await;
    assert!(store.send_context(999_999, alice).await.unwrap().is_none(), "no such chat");
    let context = store.send_context(chat, alice).await.unwrap().unwrap();
    assert_eq!(context.chat.id, chat);
    let mut members: Vec<i64> = context.members.iter().map(|m| m.user_id).collect();
    members.sort_unstable();
    assert_eq!(members, vec![alice, bob, carol]);
    assert!(context.blockers.is_empty());
    assert_eq!(context.sender.map(|u| u.id), Some(alice));

    let block = ContactUpdate { is_blocked: Some(true), updated_at: now_millis(), ..ContactUpdate::default() };
    store.add_contact(carol, alice, String::new(), now_millis()).await.unwrap();
    store.update_contact(carol, alice, block).await.unwrap();
    assert_eq!(store.send_context(chat, alice).await.unwrap().unwrap().blockers, vec![carol]);
    assert!(store.send_context(chat, carol).await.unwrap().unwrap().blockers.is_empty(), "blocking is one-way");
    // A non-member still gets the context: the pipeline is the one to refuse.
    let dave = user(store, "4").await;
    let outsider = store.send_context(chat, dave).await.unwrap().unwrap();
    assert!(!outsider.members.iter().any(|m| m.user_id == dave));
    send_context_follows_every_change(store, chat, [alice, bob, carol, dave]).await;
}

/// Each change a send depends on shows in the next `send_context`, even
/// right after the same context was read (a backend may keep it in memory).
async fn send_context_follows_every_change<S: Store>(store: &S, chat: i64, [alice, bob, carol, dave]: [i64; 4]) {
    let context = || async { store.send_context(chat, alice).await.unwrap().unwrap() };
    let member_ids = |context: &crate::model::SendContext| {
        let mut ids: Vec<i64> = context.members.iter().map(|m| m.user_id).collect();
        ids.sort_unstable();
        ids
    };
    // Messages move the chat's seq, not what a send reads.
    send(store, chat, alice, "warm").await;
    assert_eq!(member_ids(&context().await), vec![alice, bob, carol]);

    store.add_members(chat, &[dave], MemberRole::Member, now_millis(), Joining::default()).await.unwrap();
    assert_eq!(member_ids(&context().await), vec![alice, bob, carol, dave], "a member added");
    assert!(store.remove_member(chat, bob).await.unwrap());
    assert_eq!(member_ids(&context().await), vec![alice, carol, dave], "a member removed");
    assert!(store.set_member_role(chat, dave, MemberRole::Admin).await.unwrap());
    let role = context().await.members.iter().find(|m| m.user_id == dave).map(|m| m.role);
    assert_eq!(role, Some(MemberRole::Admin), "a role changed");

    let rename = ChatUpdate { name: Some("renamed".into()), updated_at: now_millis(), ..ChatUpdate::default() };
    store.update_chat(chat, rename).await.unwrap();
    assert_eq!(context().await.chat.name, "renamed", "the chat renamed");

    let nickname =
        UserUpdate { nickname: Some("Alice again".into()), updated_at: now_millis(), ..UserUpdate::default() };
    store.update_user(alice, nickname).await.unwrap();
    assert_eq!(context().await.sender.unwrap().nickname, "Alice again", "the sender's profile");
    let disable = UserUpdate { is_disabled: Some(true), updated_at: now_millis(), ..UserUpdate::default() };
    store.update_user(alice, disable).await.unwrap();
    assert!(context().await.sender.unwrap().is_disabled, "the sender disabled");

    assert_eq!(context().await.blockers, vec![carol]);
    let unblock = ContactUpdate { is_blocked: Some(false), updated_at: now_millis(), ..ContactUpdate::default() };
    store.update_contact(carol, alice, unblock).await.unwrap();
    assert!(context().await.blockers.is_empty(), "unblocked");
    store.add_contact(dave, alice, String::new(), now_millis()).await.unwrap();
    let block = ContactUpdate { is_blocked: Some(true), updated_at: now_millis(), ..ContactUpdate::default() };
    store.update_contact(dave, alice, block).await.unwrap();
    assert_eq!(context().await.blockers, vec![dave], "blocked by another member");
    assert!(store.delete_contact(dave, alice).await.unwrap());
    assert!(context().await.blockers.is_empty(), "the blocker's contact deleted");

    let close = ChatUpdate { is_active: Some(false), updated_at: now_millis(), ..ChatUpdate::default() };
    store.update_chat(chat, close).await.unwrap();
    assert!(!context().await.chat.is_active, "the chat closed");
}

pub async fn chats_members_and_roles<S: Store>(store: &S) {
    let (alice, bob, carol) = (user(store, "1").await, user(store, "2").await, user(store, "3").await);
    let now = now_millis();
    let new_group = NewChat {
        kind: ChatKind::Group,
        name: "team".into(),
        description: "the team".into(),
        avatar: String::new(),
        created_by: alice,
        members: vec![bob, bob, alice],
        created_at: now,
        added_by: Some(alice),
        rejoin_others: false,
    };
    let (chat, created) = store.create_chat(new_group.clone()).await.unwrap();
    assert!(created);
    assert_eq!((chat.kind, chat.name.as_str(), chat.members_count, chat.last_seq), (ChatKind::Group, "team", 2, 0));
    let roles: Vec<(i64, MemberRole)> =
        store.members(chat.id).await.unwrap().iter().map(|m| (m.user_id, m.role)).collect();
    assert!(roles.contains(&(alice, MemberRole::Owner)) && roles.contains(&(bob, MemberRole::Member)));

    let unknown = NewChat { members: vec![999_999], ..new_group.clone() };
    assert!(matches!(store.create_chat(unknown).await, Err(StoreError::UserNotFound(999_999))));

    let private = NewChat { kind: ChatKind::Private, members: vec![bob], ..new_group.clone() };
    let (direct, created) = store.create_chat(private.clone()).await.unwrap();
    assert!(created);
    let reverse = NewChat { created_by: bob, members: vec![alice], ..private.clone() };
    let (again, created) = store.create_chat(reverse).await.unwrap();
    assert!(!created, "a pair has one private chat");
    assert_eq!(again.id, direct.id);
    assert_eq!(store.private_chat_between(bob, alice).await.unwrap().unwrap().id, direct.id);
    // One side leaves; the other asking for the chat does not pull them
    // back, unless told to; asking for it themselves brings them back,
    // history intact.
    assert!(store.remove_member(direct.id, bob).await.unwrap());
    let (again, created) = store.create_chat(private.clone()).await.unwrap();
    assert!((again.id, created) == (direct.id, false));
    assert!(store.member(direct.id, bob).await.unwrap().is_none(), "who left stays out");
    let rejoin = NewChat { created_by: bob, members: vec![alice], ..private.clone() };
    let (again, created) = store.create_chat(rejoin).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, direct.id);
    assert!(store.member(direct.id, bob).await.unwrap().is_some(), "rejoined");
    assert_eq!(again.members_count, 2);
    assert!(store.remove_member(direct.id, bob).await.unwrap());
    let both = NewChat { rejoin_others: true, ..private.clone() };
    store.create_chat(both).await.unwrap();
    assert!(store.member(direct.id, bob).await.unwrap().is_some(), "taken back when told to");
    assert!(store.private_chat_between(alice, carol).await.unwrap().is_none());
    let crowded = NewChat { members: vec![bob, carol], ..private.clone() };
    assert!(matches!(store.create_chat(crowded).await, Err(StoreError::Invalid(_))));
    let lonely = NewChat { members: vec![alice], ..private };
    assert!(matches!(store.create_chat(lonely).await, Err(StoreError::Invalid(_))));
    assert!(matches!(
        store.add_members(direct.id, &[carol], MemberRole::Member, now, Joining::default()).await,
        Err(StoreError::Invalid(_))
    ));

    assert!(store.share_a_chat(alice, bob).await.unwrap());
    assert!(!store.share_a_chat(alice, carol).await.unwrap());
    let added = store.add_members(chat.id, &[bob, carol], MemberRole::Member, now, Joining::default()).await.unwrap();
    assert!(store.share_a_chat(carol, alice).await.unwrap());
    assert_eq!(added.iter().map(|m| m.user_id).collect::<Vec<_>>(), vec![carol], "existing members are left alone");
    assert!(matches!(
        store.add_members(chat.id, &[999_999], MemberRole::Member, now, Joining::default()).await,
        Err(StoreError::UserNotFound(999_999))
    ));
    assert!(matches!(
        store.add_members(999_999, &[carol], MemberRole::Member, now, Joining::default()).await,
        Err(StoreError::ChatNotFound(999_999))
    ));
    assert!(store.set_member_role(chat.id, carol, MemberRole::Admin).await.unwrap());
    assert_eq!(store.member(chat.id, carol).await.unwrap().unwrap().role, MemberRole::Admin);
    assert!(!store.set_member_role(chat.id, 999_999, MemberRole::Admin).await.unwrap());

    let flagged = store.set_member_flags(chat.id, bob, Some(true), None).await.unwrap().unwrap();
    assert!(flagged.is_pinned && !flagged.is_muted);
    let flagged = store.set_member_flags(chat.id, bob, None, Some(true)).await.unwrap().unwrap();
    assert!(flagged.is_pinned && flagged.is_muted);
    assert!(store.set_member_flags(chat.id, 999_999, Some(true), None).await.unwrap().is_none());

    assert!(store.remove_member(chat.id, carol).await.unwrap());
    assert!(!store.remove_member(chat.id, carol).await.unwrap());
    assert!(store.member(chat.id, carol).await.unwrap().is_none());
    assert_eq!(store.chat(chat.id).await.unwrap().unwrap().members_count, 2);

    let renamed = store
        .update_chat(
            chat.id,
            crate::model::ChatUpdate { name: Some("renamed".into()), updated_at: now + 1, ..Default::default() },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.description.as_str()), ("renamed", "the team"));
    assert!(store.update_chat(999_999, crate::model::ChatUpdate::default()).await.unwrap().is_none());
    assert!(store.chat(999_999).await.unwrap().is_none());
}

pub async fn chat_list_orders_and_counts<S: Store>(store: &S) {
    let (alice, bob) = (user(store, "1").await, user(store, "2").await);
    // Each step a millisecond apart: a list orders by the millisecond, and
    // a tie goes to the newer chat, which would hide what is tested.
    let start = now_millis();
    let at = |step: i64| start + step;
    let group_at = |members: &[i64], step: i64| NewChat::group(alice, "group", members.to_vec(), at(step));
    let first = store.create_chat(group_at(&[bob], 0)).await.unwrap().0.id;
    let second = store.create_chat(group_at(&[bob], 1)).await.unwrap().0.id;
    let third = store.create_chat(group_at(&[], 2)).await.unwrap().0.id;
    for (chat, sender, text, step) in [(first, bob, "one", 3), (first, bob, "two", 4), (second, alice, "mine", 5)] {
        store.append_message(NewMessage::text(chat, sender, text, at(step))).await.unwrap();
    }
    // Latest activity first: `second` has the newest message.
    let now = at(6);
    let list = store.chats_of_user(alice, 10, 0, now).await.unwrap();
    let order: Vec<i64> = list.iter().map(|s| s.chat.id).collect();
    assert_eq!(order[0], second);
    assert_eq!(order.len(), 3);
    let first_row = list.iter().find(|s| s.chat.id == first).unwrap();
    assert_eq!(first_row.unread_count, 2);
    assert_eq!(first_row.last_message.as_ref().unwrap().content, "two");
    assert_eq!(first_row.member.role, MemberRole::Owner);
    let second_row = list.iter().find(|s| s.chat.id == second).unwrap();
    assert_eq!(second_row.unread_count, 0, "one's own messages are never unread");
    assert!(list.iter().find(|s| s.chat.id == third).unwrap().last_message.is_none());

    // A pinned chat comes first whatever its activity.
    store.set_member_flags(third, alice, Some(true), None).await.unwrap();
    let list = store.chats_of_user(alice, 10, 0, now).await.unwrap();
    assert_eq!(list[0].chat.id, third);
    assert!(list[0].member.is_pinned);

    let page: Vec<i64> = store.chats_of_user(alice, 2, 1, now).await.unwrap().iter().map(|s| s.chat.id).collect();
    assert_eq!(page, list[1..3].iter().map(|s| s.chat.id).collect::<Vec<_>>());
    assert_eq!(store.count_chats_of_user(alice).await.unwrap(), 3);
    assert_eq!(store.count_chats_of_user(bob).await.unwrap(), 2);
    assert!(store.chats_of_user(999_999, 10, 0, now).await.unwrap().is_empty());
}

pub async fn seq_is_contiguous_under_concurrent_senders<S: Store + Clone>(store: &S) {
    let (alice, bob) = (user(store, "1").await, user(store, "2").await);
    let chat = group(store, alice, &[bob]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let store = store.clone();
        let from = if sender % 2 == 0 { alice } else { bob };
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..50 {
                let sent = send(&store, chat, from, &format!("{sender}-{n}")).await;
                seqs.push((sent.seq, sent.id));
            }
            seqs
        });
    }
    let mut seqs = BTreeSet::new();
    let mut ids = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        for (seq, id) in done.unwrap() {
            assert!(seqs.insert(seq), "seq {seq} handed out twice");
            assert!(ids.insert(id), "id {id} handed out twice");
        }
    }
    assert_eq!(seqs, (1..=400).collect::<BTreeSet<u64>>());
    assert_eq!(top_seq(store, chat).await, 400);
    assert_eq!(store.chat(chat).await.unwrap().unwrap().last_seq, 400);
    // Ids are time-ordered: within one store they rise with seq.
    let all = store.messages(chat, MessageQuery::latest(400, now_millis() + 1)).await.unwrap();
    assert_eq!(all.len(), 400);
    assert!(all.windows(2).all(|pair| pair[0].seq + 1 == pair[1].seq && pair[0].id < pair[1].id));
    assert!(all.iter().all(|message| message.id < 1 << 53));
}

pub async fn batched_appends_keep_order_and_their_own_outcomes<S: Store>(store: &S) {
    let (alice, bob) = (user(store, "1").await, user(store, "2").await);
    let chat = group(store, alice, &[bob]).await;
    let with_id = |content: &str, chat: i64, client_id: &str| {
        let mut new = NewMessage::text(chat, alice, content, now_millis());
        new.client_message_id = Some(client_id.into());
        new
    };
    let batch = vec![
        with_id("one", chat, "b1"),
        with_id("lost", 999_999, "b2"),
        with_id("two", chat, "b3"),
        with_id("one again", chat, "b1"),
        with_id("three", chat, "b4"),
    ];
    let outcomes = store.append_messages(batch).await.unwrap();
    assert_eq!(outcomes.len(), 5);
    let seq = |index: usize| outcomes[index].as_ref().unwrap().message().seq;
    assert_eq!((seq(0), seq(2), seq(4)), (1, 2, 3), "in the order given, contiguous");
    assert!(matches!(outcomes[1], Err(StoreError::ChatNotFound(999_999))), "{:?}", outcomes[1]);
    assert!(matches!(&outcomes[3], Ok(Appended::Duplicate(m)) if m.content == "one"), "a repeat within the batch");
    let stored = store.messages(chat, MessageQuery::latest(10, now_millis() + 1)).await.unwrap();
    let contents: Vec<&str> = stored.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["one", "two", "three"], "the failed one left nothing behind");
    assert!(store.append_messages(Vec::new()).await.unwrap().is_empty());
}

pub async fn client_message_id_dedupes<S: Store + Clone>(store: &S) {
    let (alice, bob) = (user(store, "1").await, user(store, "2").await);
    let chat = group(store, alice, &[bob]).await;
    let mut new = NewMessage::text(chat, alice, "hello", now_millis());
    new.client_message_id = Some("c-1".into());
    let first = store.append_message(new.clone()).await.unwrap();
    assert!(matches!(first, Appended::New(_)));
    let again = store.append_message(NewMessage { content: "changed".into(), ..new.clone() }).await.unwrap();
    assert!(matches!(again, Appended::Duplicate(_)));
    assert_eq!(again.message(), first.message(), "the original comes back unchanged");

    // The key is per sender: bob may use the same one.
    let bobs = store.append_message(NewMessage { sender_id: bob, ..new.clone() }).await.unwrap();
    assert!(matches!(bobs, Appended::New(ref m) if m.seq == 2));

    // Concurrent retries of one send store it once.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let store = store.clone();
        let mut retry = NewMessage::text(chat, alice, "retry", now_millis());
        retry.client_message_id = Some("c-2".into());
        tasks.spawn(async move { store.append_message(retry).await.unwrap() });
    }
    let mut new_count = 0;
    let mut seqs = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let outcome = done.unwrap();
        new_count += usize::from(matches!(outcome, Appended::New(_)));
        seqs.insert(outcome.message().seq);
    }
    assert_eq!(new_count, 1);
    assert_eq!(seqs.len(), 1);
    assert_eq!(top_seq(store, chat).await, 3);

    // Within one batch, the second copy is the first's duplicate.
    let mut twice = NewMessage::text(chat, alice, "twice", now_millis());
    twice.client_message_id = Some("c-3".into());
    let outcomes = store.append_messages(vec![twice.clone(), twice]).await.unwrap();
    let [Ok(Appended::New(stored)), Ok(Appended::Duplicate(copy))] = &outcomes[..] else {
        panic!("{outcomes:?}");
    };
    assert_eq!((stored.id, stored.seq), (copy.id, 4));
    assert_eq!(top_seq(store, chat).await, 4);

    let missing = NewMessage::text(999_999, alice, "x", now_millis());
    assert!(matches!(store.append_message(missing).await, Err(StoreError::ChatNotFound(999_999))));
    let mut keyed = NewMessage::text(999_999, alice, "x", now_millis());
    keyed.client_message_id = Some("c-4".into());
    assert!(matches!(store.append_message(keyed).await, Err(StoreError::ChatNotFound(999_999))));
}

pub async fn pages_before_after_and_filters<S: Store>(store: &S) {
    let alice = user(store, "1").await;
    let chat = group(store, alice, &[]).await;
    let mut ids = Vec::new();
    for n in 1..=30 {
        let mut new = NewMessage::text(chat, alice, format!("m{n}"), now_millis());
        if n % 5 == 0 {
            new.kind = MessageKind::Image;
            new.file_url = format!("/files/{n}");
        }
        ids.push(store.append_message(new).await.unwrap().into_message().id);
    }
    let now = now_millis() + 1;
    let seqs = |page: Vec<crate::model::Message>| page.iter().map(|m| m.seq).collect::<Vec<_>>();

    assert_eq!(seqs(store.messages(chat, MessageQuery::latest(5, now)).await.unwrap()), vec![26, 27, 28, 29, 30]);
    let before = MessageQuery { before: Some(Cursor::Seq(21)), ..MessageQuery::latest(10, now) };
    assert_eq!(seqs(store.messages(chat, before).await.unwrap()), (11..=20).collect::<Vec<_>>());
    let before_id = MessageQuery { before: Some(Cursor::Id(ids[20])), ..MessageQuery::latest(3, now) };
    assert_eq!(seqs(store.messages(chat, before_id).await.unwrap()), vec![18, 19, 20]);
    let after = MessageQuery { after: Some(Cursor::Seq(5)), ..MessageQuery::latest(3, now) };
    assert_eq!(seqs(store.messages(chat, after).await.unwrap()), vec![6, 7, 8]);
    let after_id = MessageQuery { after: Some(Cursor::Id(ids[27])), ..MessageQuery::latest(10, now) };
    assert_eq!(seqs(store.messages(chat, after_id).await.unwrap()), vec![29, 30]);
    let window =
        MessageQuery { after: Some(Cursor::Seq(10)), before: Some(Cursor::Seq(14)), ..MessageQuery::latest(10, now) };
    assert_eq!(seqs(store.messages(chat, window).await.unwrap()), vec![11, 12, 13]);
    let offset = MessageQuery { offset: 5, ..MessageQuery::latest(5, now) };
    assert_eq!(seqs(store.messages(chat, offset).await.unwrap()), vec![21, 22, 23, 24, 25]);
    let images = MessageQuery { kind: Some(MessageKind::Image), ..MessageQuery::latest(50, now) };
    assert_eq!(seqs(store.messages(chat, images).await.unwrap()), vec![5, 10, 15, 20, 25, 30]);
    let unknown_id = MessageQuery { before: Some(Cursor::Id(1)), ..MessageQuery::latest(10, now) };
    assert!(store.messages(chat, unknown_id).await.unwrap().is_empty());
    assert!(store.messages(999_999, MessageQuery::latest(10, now)).await.unwrap().is_empty());
    assert_eq!(store.latest_message(chat, now).await.unwrap().unwrap().seq, 30);

    let got = store.message(ids[0]).await.unwrap().unwrap();
    assert_eq!((got.seq, got.content.as_str(), got.chat_id, got.sender_id), (1, "m1", chat, alice));
    assert!(store.message(1).await.unwrap().is_none());
}

/// A history longer than one partition bucket ([`crate::buckets`]) pages
/// backwards and forwards across the boundaries without losing or repeating
/// a message, and reads that end right at a boundary stop there.
pub async fn history_pages_across_partition_buckets<S: Store>(store: &S) {
    let span = crate::buckets::DEFAULT_SPAN;
    let alice = user(store, "1").await;
    let chat = group(store, alice, &[]).await;
    let last = 2 * span + 50;
    let mut next = 1;
    while next <= last {
        let batch: Vec<NewMessage> = (next..=last.min(next + 511))
            .map(|n| NewMessage::text(chat, alice, format!("m{n}"), now_millis()))
            .collect();
        next += batch.len() as u64;
        for appended in store.append_messages(batch).await.unwrap() {
            appended.unwrap();
        }
    }
    assert_eq!(top_seq(store, chat).await, last);
    let now = now_millis() + 1;
    let seqs = |page: Vec<crate::model::Message>| page.iter().map(|m| m.seq).collect::<Vec<_>>();

    // Backwards in pages of 700 from the newest: every seq once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let query = MessageQuery { before, ..MessageQuery::latest(700, now) };
        let page = seqs(store.messages(chat, query).await.unwrap());
        if page.is_empty() {
            break;
        }
        assert!(page.windows(2).all(|pair| pair[0] + 1 == pair[1]), "a page is contiguous");
        before = Some(Cursor::Seq(page[0]));
        seen.splice(0..0, page);
    }
    assert_eq!(seen, (1..=last).collect::<Vec<_>>());

    // Forwards from just below a boundary, and windows ending on one.
    let across = MessageQuery { after: Some(Cursor::Seq(span - 2)), ..MessageQuery::latest(5, now) };
    assert_eq!(seqs(store.messages(chat, across).await.unwrap()), (span - 1..=span + 3).collect::<Vec<_>>());
    let up_to_boundary = MessageQuery { before: Some(Cursor::Seq(span + 1)), ..MessageQuery::latest(3, now) };
    assert_eq!(seqs(store.messages(chat, up_to_boundary).await.unwrap()), vec![span - 2, span - 1, span]);
    let from_boundary = MessageQuery { after: Some(Cursor::Seq(2 * span)), ..MessageQuery::latest(2, now) };
    assert_eq!(seqs(store.messages(chat, from_boundary).await.unwrap()), vec![2 * span + 1, 2 * span + 2]);
    let tail = MessageQuery { after: Some(Cursor::Seq(last - 1)), ..MessageQuery::latest(10, now) };
    assert_eq!(seqs(store.messages(chat, tail).await.unwrap()), vec![last]);
    assert_eq!(store.latest_message(chat, now).await.unwrap().unwrap().seq, last);
}

pub async fn search_finds_substrings_and_forgets_deleted<S: Store>(store: &S) {
    let alice = user(store, "1").await;
    let chat = group(store, alice, &[]).await;
    let other = group(store, alice, &[]).await;
    send(store, chat, alice, "周末有空一起吃饭吗？").await;
    send(store, chat, alice, "Meeting moved to Friday").await;
    let doomed = send(store, chat, alice, "friday lunch is cancelled").await;
    send(store, chat, alice, "100% sure_thing").await;
    send(store, other, alice, "Friday in the other chat").await;
    let now = now_millis() + 1;
    let search = |text: &str| MessageQuery { search: Some(text.into()), ..MessageQuery::latest(50, now) };
    let contents = |page: Vec<crate::model::Message>| page.into_iter().map(|m| m.content).collect::<Vec<_>>();

    assert_eq!(
        contents(store.messages(chat, search("friday")).await.unwrap()),
        vec!["Meeting moved to Friday", "friday lunch is cancelled"],
        "case-insensitive, and only within the chat"
    );
    assert_eq!(contents(store.messages(chat, search("一起吃饭")).await.unwrap()), vec!["周末有空一起吃饭吗？"]);
    assert_eq!(
        contents(store.messages(chat, search("吃饭")).await.unwrap()),
        vec!["周末有空一起吃饭吗？"],
        "short CJK query"
    );
    assert_eq!(contents(store.messages(chat, search("0%")).await.unwrap()), vec!["100% sure_thing"]);
    assert!(store.messages(chat, search("_x")).await.unwrap().is_empty(), "LIKE wildcards are literal");
    assert!(store.messages(chat, search("\"quoted\" AND")).await.unwrap().is_empty(), "FTS syntax is literal");

    store.delete_message(doomed.id, now).await.unwrap();
    assert_eq!(contents(store.messages(chat, search("friday")).await.unwrap()), vec!["Meeting moved to Friday"]);
    let edited = send(store, chat, alice, "typo hre").await;
    store.edit_message(edited.id, "typo here".into(), now).await.unwrap();
    assert!(store.messages(chat, search("hre")).await.unwrap().is_empty());
    assert_eq!(contents(store.messages(chat, search("here")).await.unwrap()), vec!["typo here"]);
}

pub async fn ttl_and_scheduled_messages_are_hidden<S: Store>(store: &S) {
    let (alice, bob) = (user(store, "1").await, user(store, "2").await);
    let chat = group(store, alice, &[bob]).await;
    let start = now_millis();
    send(store, chat, alice, "permanent").await;
    let mut fleeting = NewMessage::text(chat, alice, "self-destructing secret", start);
    fleeting.ttl = 10;
    let fleeting = store.append_message(fleeting).await.unwrap().into_message();
    assert_eq!(fleeting.expires_at, Some(start + 10_000));
    let mut scheduled = NewMessage::text(chat, alice, "scheduled greeting", start);
    scheduled.send_at = Some(start + 60_000);
    store.append_message(scheduled).await.unwrap();

    let visible = |now: i64| async move {
        store
            .messages(chat, MessageQuery::latest(50, now))
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.content)
            .collect::<Vec<_>>()
    };
    assert_eq!(visible(start + 1).await, vec!["permanent", "self-destructing secret"]);
    assert_eq!(store.unread_count(chat, bob, start + 1).await.unwrap(), 2);
    assert_eq!(visible(start + 20_000).await, vec!["permanent"], "expired after its ttl");
    assert_eq!(store.unread_count(chat, bob, start + 20_000).await.unwrap(), 1);
    let secret = MessageQuery { search: Some("secret".into()), ..MessageQuery::latest(50, start + 20_000) };
    assert!(store.messages(chat, secret).await.unwrap().is_empty(), "expired messages leave search too");
    assert_eq!(store.latest_message(chat, start + 20_000).await.unwrap().unwrap().content, "permanent");
    assert_eq!(visible(start + 60_000).await, vec!["permanent", "scheduled greeting"], "shown once due");
    assert_eq!(store.latest_message(chat, start + 60_000).await.unwrap().unwrap().content, "scheduled greeting");
}

pub async fn edit_delete_pin_and_react<S: Store>(store: &S) {
    let (alice, bob) = (user(store, "1").await, user(store, "2").await);
    let chat = group(store, alice, &[bob]).await;
    let mut with_file = NewMessage::text(chat, alice, "look", now_millis());
    with_file.kind = MessageKind::Image;
    with_file.file_url = "/api/files/1".into();
    with_file.file_name = "cat.png".into();
    with_file.file_size = 1234;
    let message = store.append_message(with_file).await.unwrap().into_message();
    let after = send(store, chat, bob, "after").await;
    let mut both: Vec<i64> =
        store.messages_by_id(&[after.id, 999_999, message.id]).await.unwrap().iter().map(|m| m.id).collect();
    both.sort_unstable();
    assert_eq!(both, vec![message.id.min(after.id), message.id.max(after.id)], "the ones that exist, in one read");
    assert!(store.messages_by_id(&[]).await.unwrap().is_empty());
    let at = now_millis() + 5;

    let edited = store.edit_message(message.id, "look at this".into(), at).await.unwrap().unwrap();
    assert!(edited.is_edited);
    assert_eq!((edited.content.as_str(), edited.updated_at, edited.seq), ("look at this", at, message.seq));
    assert!(store.edit_message(1, "x".into(), at).await.unwrap().is_none());

    assert!(store.add_reaction(message.id, bob, "❤️".into(), at).await.unwrap());
    assert!(!store.add_reaction(message.id, bob, "❤️".into(), at).await.unwrap());
    assert!(store.add_reaction(message.id, alice, "👍".into(), at).await.unwrap());
    assert_eq!(store.reactions(&[message.id]).await.unwrap().len(), 2);
    assert!(store.remove_reaction(message.id, alice, "👍").await.unwrap());
    assert!(!store.remove_reaction(message.id, alice, "👍").await.unwrap());
    assert_eq!(store.reactions(&[message.id]).await.unwrap()[0].emoji, "❤️");
    assert!(store.reactions(&[]).await.unwrap().is_empty());
    assert!(matches!(store.add_reaction(1, bob, "x".into(), at).await, Err(StoreError::MessageNotFound(1))));

    let pinned = store.set_message_pinned(message.id, true, at).await.unwrap().unwrap();
    assert!(pinned.is_pinned);
    assert_eq!(store.pinned_messages(chat, at).await.unwrap().len(), 1);
    store.set_message_pinned(message.id, false, at).await.unwrap();
    assert!(store.pinned_messages(chat, at).await.unwrap().is_empty());
    store.set_message_pinned(message.id, true, at).await.unwrap();
    assert!(store.set_message_pinned(1, true, at).await.unwrap().is_none());

    let deleted = store.delete_message(message.id, at).await.unwrap().unwrap();
    assert!(deleted.is_deleted && !deleted.is_pinned);
    assert_eq!((deleted.content.as_str(), deleted.file_url.as_str(), deleted.file_size), ("", "", 0));
    assert_eq!(deleted.deleted_at, Some(at));
    assert!(store.reactions(&[message.id]).await.unwrap().is_empty());
    assert!(store.pinned_messages(chat, at).await.unwrap().is_empty());
    // The slot stays: history still has seq 1, so clients see no gap.
    let page = store.messages(chat, MessageQuery::latest(10, at)).await.unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(page[0].is_deleted);
    assert!(
        matches!(store.edit_message(message.id, "again".into(), at).await, Err(StoreError::MessageDeleted(id)) if id == message.id)
    );
    assert!(
        matches!(store.set_message_pinned(message.id, true, at).await, Err(StoreError::MessageDeleted(id)) if id == message.id)
    );
    assert!(store.delete_message(1, at).await.unwrap().is_none());
}

pub async fn receipts_date_each_message_from_marker_advances<S: Store>(store: &S) {
    let (alice, bob, carol, dan) =
        (user(store, "1").await, user(store, "2").await, user(store, "3").await, user(store, "4").await);
    let chat = group(store, alice, &[bob, carol]).await;
    for n in 1..=6 {
        send(store, chat, alice, &format!("m{n}")).await;
    }
    assert_eq!(store.mark_read(chat, bob, 3, 100).await.unwrap(), 3);
    assert_eq!(store.mark_read(chat, bob, 5, 200).await.unwrap(), 5);
    assert_eq!(store.mark_read(chat, bob, 2, 300).await.unwrap(), 5, "no advance, no row");
    assert_eq!(store.mark_delivered(chat, carol, 4, 150).await.unwrap(), 4);
    assert_eq!(store.mark_delivered(chat, carol, 1, 160).await.unwrap(), 4, "never backwards");
    assert_eq!(store.mark_delivered(chat, carol, 1_000, 170).await.unwrap(), 6, "clamped to the chat's last seq");
    assert!(matches!(store.mark_delivered(chat, dan, 1, 180).await, Err(StoreError::NotMember { .. })));
    let marks = |mut found: Vec<ReceiptMark>| {
        found.sort_by_key(|mark| (mark.user_id, mark.kind.as_str(), mark.seq));
        found.into_iter().map(|mark| (mark.user_id, mark.kind, mark.seq, mark.at)).collect::<Vec<_>>()
    };
    // What dates seqs 2..=3: bob's advance to 3, and each member's first advance past 3.
    let found = marks(store.receipts(chat, 2, 3).await.unwrap());
    assert_eq!(
        found,
        vec![
            (bob, ReceiptKind::Read, 3, 100),
            (bob, ReceiptKind::Read, 5, 200),
            (carol, ReceiptKind::Delivered, 4, 150)
        ]
    );
    // Past every advance: nothing.
    assert!(store.receipts(chat, 7, 9).await.unwrap().is_empty());
    let found = marks(store.receipts(chat, 6, 6).await.unwrap());
    assert_eq!(found, vec![(carol, ReceiptKind::Delivered, 6, 170)]);
}

pub async fn read_markers_and_unread_counts<S: Store>(store: &S) {
    let (alice, bob, carol) = (user(store, "1").await, user(store, "2").await, user(store, "3").await);
    let chat = group(store, alice, &[bob]).await;
    for n in 0..5 {
        send(store, chat, alice, &format!("a{n}")).await;
    }
    send(store, chat, bob, "b").await;
    let now = now_millis() + 1;
    assert_eq!(store.unread_count(chat, bob, now).await.unwrap(), 5);
    assert_eq!(store.unread_count(chat, alice, now).await.unwrap(), 1);
    assert_eq!(store.mark_read(chat, bob, 3, now).await.unwrap(), 3);
    assert_eq!(store.unread_count(chat, bob, now).await.unwrap(), 2);
    assert_eq!(store.mark_read(chat, bob, 2, now).await.unwrap(), 3, "a read marker never goes backwards");
    assert_eq!(store.mark_read(chat, bob, 1_000, now).await.unwrap(), 6, "clamped to the chat's last seq");
    assert_eq!(store.unread_count(chat, bob, now).await.unwrap(), 0);
    assert_eq!(store.member(chat, bob).await.unwrap().unwrap().last_read_seq, 6);
    assert!(matches!(store.mark_read(chat, carol, 1, now).await, Err(StoreError::NotMember { .. })));
    assert_eq!(store.unread_count(chat, carol, now).await.unwrap(), 0);
    // Deleted messages are not unread.
    let gone = send(store, chat, alice, "oops").await;
    store.delete_message(gone.id, now).await.unwrap();
    assert_eq!(store.unread_count(chat, bob, now).await.unwrap(), 0);
}

pub async fn files_share_content<S: Store>(store: &S) {
    let alice = user(store, "1").await;
    let new = NewFile {
        owner_id: alice,
        name: "cat.png".into(),
        size: 2048,
        mime: "image/png".into(),
        kind: FileKind::Image,
        sha256: "ab".repeat(32),
        thumbnail_sha256: Some("cd".repeat(32)),
        created_at: now_millis(),
    };
    let first = store.insert_file(new.clone()).await.unwrap();
    assert_eq!((first.name.as_str(), first.size, first.kind), ("cat.png", 2048, FileKind::Image));
    assert_eq!(store.file(first.id).await.unwrap().unwrap(), first);
    let second = store.insert_file(NewFile { name: "same.png".into(), ..new.clone() }).await.unwrap();
    assert_ne!(first.id, second.id);
    let bob = user(store, "2").await;
    let carol = user(store, "3").await;
    let url = format!("/api/files/{}", first.id);
    assert!(store.file_visible_to(first.id, &url, alice).await.unwrap(), "the owner");
    assert!(!store.file_visible_to(first.id, &url, bob).await.unwrap(), "nobody else yet");
    let chat = group(store, alice, &[bob]).await;
    let mut shared = NewMessage::text(chat, alice, "", now_millis());
    shared.kind = MessageKind::Image;
    shared.file_url.clone_from(&url);
    store.append_message(shared).await.unwrap();
    assert!(store.file_visible_to(first.id, &url, bob).await.unwrap(), "members of a chat it was sent in");
    assert!(!store.file_visible_to(first.id, &url, carol).await.unwrap(), "not strangers");
    assert_eq!(store.delete_file(first.id).await.unwrap(), Some(1), "one file still uses the bytes");
    assert_eq!(store.delete_file(second.id).await.unwrap(), Some(0));
    assert_eq!(store.delete_file(second.id).await.unwrap(), None);
    assert!(store.file(first.id).await.unwrap().is_none());
    let orphan = NewFile { owner_id: 999_999, ..new };
    assert!(matches!(store.insert_file(orphan).await, Err(StoreError::UserNotFound(999_999))));
}

fn notification(user_id: i64, n: usize) -> NewNotification {
    let now = now_millis();
    NewNotification {
        user_id,
        kind: "match".into(),
        title: format!("title {n}"),
        content: format!("n{n}"),
        data: Some(format!(r#"{{"n":{n}}}"#)),
        related_resource_type: Some("event".into()),
        related_resource_id: Some(format!("evt-{n}")),
        created_at: now,
        expires_at: now + 86_400_000,
    }
}

pub async fn notifications_page_and_mark_read<S: Store>(store: &S) {
    let (alice, bob) = (user(store, "1").await, user(store, "2").await);
    let mut ids = Vec::new();
    for n in 0..3 {
        let notification = store.insert_notification(notification(alice, n)).await.unwrap();
        assert!(!notification.is_read);
        assert_eq!(
            (notification.title.as_str(), notification.data.as_deref()),
            (&*format!("title {n}"), Some(&*format!(r#"{{"n":{n}}}"#)))
        );
        ids.push(notification.id);
    }
    let page = store.notifications(alice, 2, None).await.unwrap();
    assert_eq!(page.iter().map(|n| n.content.as_str()).collect::<Vec<_>>(), vec!["n2", "n1"], "newest first");
    assert_eq!(page[0].title, "title 2");
    assert_eq!(page[0].data.as_deref(), Some(r#"{"n":2}"#));
    let older = store.notifications(alice, 2, Some(page[1].id)).await.unwrap();
    assert_eq!(older.iter().map(|n| n.content.as_str()).collect::<Vec<_>>(), vec!["n0"], "before the last shown");
    assert_eq!(store.unread_notification_count(alice).await.unwrap(), 3);
    assert!(!store.mark_notification_read(bob, ids[0]).await.unwrap(), "only the owner marks it");
    assert!(store.mark_notification_read(alice, ids[0]).await.unwrap());
    assert_eq!(store.unread_notification_count(alice).await.unwrap(), 2);
    assert_eq!(store.mark_all_notifications_read(alice).await.unwrap(), 2);
    assert_eq!(store.unread_notification_count(alice).await.unwrap(), 0);
    assert!(store.notifications(bob, 10, None).await.unwrap().is_empty());
    let orphan = notification(999_999, 0);
    assert!(matches!(store.insert_notification(orphan).await, Err(StoreError::UserNotFound(999_999))));
}

pub async fn notifications_delete_and_expire<S: Store>(store: &S) {
    let (alice, bob) = (user(store, "1").await, user(store, "2").await);
    let kept = store.insert_notification(notification(alice, 0)).await.unwrap();
    let deleted = store.insert_notification(notification(alice, 1)).await.unwrap();
    assert!(!store.delete_notification(bob, deleted.id).await.unwrap(), "only the owner deletes it");
    assert!(store.delete_notification(alice, deleted.id).await.unwrap());
    assert!(!store.delete_notification(alice, deleted.id).await.unwrap(), "once");
    let now = now_millis();
    let brief = NewNotification { expires_at: now + 1_000, created_at: now, ..notification(alice, 2) };
    store.insert_notification(brief).await.unwrap();
    assert_eq!(store.notifications(alice, 10, None).await.unwrap().len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    // A store either prunes expired rows or lets them expire by themselves.
    store.prune_notifications(now_millis()).await.unwrap();
    let left: Vec<i64> = store.notifications(alice, 10, None).await.unwrap().iter().map(|n| n.id).collect();
    assert_eq!(left, vec![kept.id], "the expired one is gone, the other stays");
    assert_eq!(store.unread_notification_count(alice).await.unwrap(), 1);
}

pub async fn external_ids_and_profile_fields<S: Store>(store: &S) {
    let now = now_millis();
    let by_openid = |openid: &str| NewUser {
        external_id: Some(openid.into()),
        nickname: "wx".into(),
        created_at: now,
        ..NewUser::default()
    };
    // An account known only by its external id has no phone and no email.
    let ann = store.create_user(by_openid("oWx-ann")).await.unwrap();
    assert_eq!((ann.phone.as_str(), ann.email.as_deref(), ann.external_id.as_deref()), ("", None, Some("oWx-ann")));
    assert_eq!(store.user_by_external_id("oWx-ann").await.unwrap().map(|user| user.id), Some(ann.id));
    assert!(store.user_by_external_id("oWx-nobody").await.unwrap().is_none());
    let again = store.create_user(by_openid("oWx-ann")).await;
    assert!(matches!(again, Err(StoreError::ExternalIdTaken)), "{again:?}");
    // Linking: an existing phone account gains one; a taken one is refused.
    let ben = user(store, "13800000001").await;
    store.set_external_id(ben, "oWx-ben").await.unwrap();
    store.set_external_id(ben, "oWx-ben").await.unwrap();
    assert_eq!(store.user_by_external_id("oWx-ben").await.unwrap().map(|user| user.id), Some(ben));
    assert!(matches!(store.set_external_id(ben, "oWx-ann").await, Err(StoreError::ExternalIdTaken)));
    assert!(matches!(store.set_external_id(999_999, "oWx-x").await, Err(StoreError::UserNotFound(999_999))));
    assert_eq!(store.user(ben).await.unwrap().unwrap().external_id.as_deref(), Some("oWx-ben"));
    // Profile fields: empty until set, then replaced whole.
    assert!(store.profile_fields(ann.id).await.unwrap().is_empty());
    let mut fields = serde_json::Map::new();
    fields.insert("vip_level".into(), serde_json::json!(2));
    fields.insert("balance".into(), serde_json::json!("12.50"));
    store.set_profile_fields(ann.id, fields.clone(), now).await.unwrap();
    assert_eq!(store.profile_fields(ann.id).await.unwrap(), fields);
    fields.remove("balance");
    store.set_profile_fields(ann.id, fields.clone(), now).await.unwrap();
    assert_eq!(store.profile_fields(ann.id).await.unwrap(), fields);
    assert!(store.profile_fields(ben).await.unwrap().is_empty(), "each user has their own");
    assert!(matches!(store.set_profile_fields(999_999, fields, now).await, Err(StoreError::UserNotFound(999_999))));
}

pub async fn pairs_bind_once_and_invitations_are_used_once<S: Store>(store: &S) {
    let now = now_millis();
    let (ann, ben, cy) =
        (user(store, "13900000001").await, user(store, "13900000002").await, user(store, "13900000003").await);
    // The user's own fields.
    let update = UserUpdate {
        gender: Some("female".into()),
        birthday: Some("1995-06-15".into()),
        preferences: Some(r#"{"theme":"dark"}"#.into()),
        updated_at: now,
        ..UserUpdate::default()
    };
    let updated = store.update_user(ann, update).await.unwrap().unwrap();
    assert_eq!((updated.gender.as_str(), updated.birthday.as_str()), ("female", "1995-06-15"));
    let read = store.user(ann).await.unwrap().unwrap();
    assert_eq!(
        (read.gender.as_str(), read.birthday.as_str(), read.preferences.as_str()),
        ("female", "1995-06-15", r#"{"theme":"dark"}"#)
    );
    // Invitations: live ones are counted, a code is used once, expiry and unknown codes say so.
    let invite =
        |code: &str, expires_at: i64| PairInvitation { code: code.into(), inviter: ann, expires_at, created_at: now };
    store.create_invitation(invite("A8C3F9", now + 60_000)).await.unwrap();
    store.create_invitation(invite("B8C3F9", now - 1)).await.unwrap();
    assert!(matches!(store.create_invitation(invite("A8C3F9", now + 60_000)).await, Err(StoreError::CodeTaken)));
    assert_eq!(store.live_invitations(ann, now).await.unwrap(), 1);
    assert_eq!(store.invitation("A8C3F9").await.unwrap().map(|found| found.inviter), Some(ann));
    assert_eq!(store.claim_invitation("B8C3F9", ben, now).await.unwrap(), InvitationClaim::Expired);
    assert_eq!(store.claim_invitation("ZZZZZZ", ben, now).await.unwrap(), InvitationClaim::Unknown);
    assert_eq!(store.claim_invitation("A8C3F9", ben, now).await.unwrap(), InvitationClaim::Claimed(ann));
    assert_eq!(store.claim_invitation("A8C3F9", cy, now).await.unwrap(), InvitationClaim::Used);
    assert_eq!(store.live_invitations(ann, now).await.unwrap(), 0);
    // Pairs: one partner at a time, seen from either side, unbound together.
    let private = NewChat {
        kind: ChatKind::Private,
        name: String::new(),
        description: String::new(),
        avatar: String::new(),
        created_by: ann,
        members: vec![ben],
        created_at: now,
        added_by: None,
        rejoin_others: true,
    };
    let chat = store.create_chat(private).await.unwrap().0;
    let pair = Couple { id: 77, user_id: ben, partner_id: ann, chat_id: chat.id, since: now };
    store.bind_pair(pair.clone()).await.unwrap();
    let seen = store.pair_of(ann).await.unwrap().unwrap();
    assert_eq!((seen.id, seen.user_id, seen.partner_id, seen.chat_id), (77, ann, ben, chat.id));
    let third = Couple { id: 78, user_id: cy, partner_id: ann, chat_id: chat.id, since: now };
    assert!(matches!(store.bind_pair(third).await, Err(StoreError::AlreadyPaired(id)) if id == ann));
    assert!(store.pair_of(cy).await.unwrap().is_none(), "a refused pair binds nobody");
    let gone = store.unbind_pair(ann).await.unwrap().unwrap();
    assert_eq!((gone.id, gone.partner_id), (77, ben));
    assert!(store.pair_of(ben).await.unwrap().is_none() && store.pair_of(ann).await.unwrap().is_none());
    assert!(store.unbind_pair(ann).await.unwrap().is_none());
    // A closed chat says so, and opens again.
    let close = |open: bool| ChatUpdate { is_active: Some(open), updated_at: now, ..ChatUpdate::default() };
    assert!(!store.update_chat(chat.id, close(false)).await.unwrap().unwrap().is_active);
    assert!(!store.chat(chat.id).await.unwrap().unwrap().is_active);
    assert!(store.update_chat(chat.id, close(true)).await.unwrap().unwrap().is_active);
}

pub async fn joining_a_group_takes_consent_and_room<S: Store>(store: &S) {
    let (owner, open, careful, closed, blocker) = (
        user(store, "1").await,
        user(store, "2").await,
        user(store, "3").await,
        user(store, "4").await,
        user(store, "5").await,
    );
    let now = now_millis();
    let setting = |invites| UserUpdate { group_invites: Some(invites), updated_at: now, ..UserUpdate::default() };
    store.update_user(careful, setting(GroupInvites::Contacts)).await.unwrap();
    let stored = store.update_user(closed, setting(GroupInvites::Nobody)).await.unwrap().unwrap();
    assert_eq!(stored.group_invites, GroupInvites::Nobody);
    assert_eq!(store.user(open).await.unwrap().unwrap().group_invites, GroupInvites::Everyone, "the default");
    store.add_contact(blocker, owner, String::new(), now).await.unwrap();
    let block = ContactUpdate { is_blocked: Some(true), updated_at: now, ..ContactUpdate::default() };
    store.update_contact(blocker, owner, block).await.unwrap();
    let chat = group(store, owner, &[]).await;
    let by_owner = |max_members| Joining { by: Some(owner), max_members };
    let add = |users: Vec<i64>, joining| async move {
        store.add_members(chat, &users, MemberRole::Member, now, joining).await.map(|added| added.len())
    };
    // Nobody who refuses is added, and one refusal adds nobody at all.
    assert!(matches!(add(vec![open, closed], by_owner(None)).await, Err(StoreError::NotAccepted(id)) if id == closed));
    assert!(matches!(add(vec![careful], by_owner(None)).await, Err(StoreError::NotAccepted(id)) if id == careful));
    assert!(matches!(add(vec![blocker], by_owner(None)).await, Err(StoreError::NotAccepted(id)) if id == blocker));
    assert!(store.member(chat, open).await.unwrap().is_none());
    // A contact is welcome to whoever says "contacts"; the server binds only the cap.
    store.add_contact(careful, owner, String::new(), now).await.unwrap();
    assert_eq!(add(vec![careful], by_owner(Some(3))).await.unwrap(), 1);
    assert_eq!(add(vec![closed], Joining { by: None, max_members: Some(3) }).await.unwrap(), 1);
    // Three members now: the cap counts only who is new.
    assert!(matches!(add(vec![open], by_owner(Some(3))).await, Err(StoreError::ChatFull(3))));
    assert_eq!(add(vec![careful, closed], by_owner(Some(3))).await.unwrap(), 0);
    assert_eq!(add(vec![open, open], by_owner(Some(4))).await.unwrap(), 1);
    // Creating a group asks the same consent.
    let refused = NewChat { added_by: Some(owner), ..NewChat::group(owner, "g", vec![open, blocker], now) };
    assert!(matches!(store.create_chat(refused).await, Err(StoreError::NotAccepted(id)) if id == blocker));
    let by_server = NewChat { added_by: None, ..NewChat::group(owner, "g", vec![closed], now) };
    assert!(store.create_chat(by_server).await.unwrap().1);
}

/// Additions racing for a chat's last places: the cap holds, however many
/// writers try at once (on a cluster store, from different nodes).
pub async fn the_member_cap_holds_under_racing_additions<S: Store + Clone>(store: &S) {
    let owner = user(store, "1").await;
    let mut joiners = Vec::new();
    for n in 2..=9 {
        joiners.push(user(store, &n.to_string()).await);
    }
    let chat = group(store, owner, &[]).await;
    let now = now_millis();
    let cap = Joining { by: None, max_members: Some(3) };
    let additions = joiners.iter().map(|&joiner| {
        let store = store.clone();
        tokio::spawn(async move { store.add_members(chat, &[joiner], MemberRole::Member, now, cap).await })
    });
    let mut outcomes = Vec::new();
    for addition in additions.collect::<Vec<_>>() {
        outcomes.push(addition.await.unwrap());
    }
    let added = outcomes.iter().filter(|outcome| matches!(outcome, Ok(added) if added.len() == 1)).count();
    let full = outcomes.iter().filter(|outcome| matches!(outcome, Err(StoreError::ChatFull(3)))).count();
    assert_eq!((added, full), (2, joiners.len() - 2), "{outcomes:?}");
    assert_eq!(store.members(chat).await.unwrap().len(), 3);
    // A place freed is a place taken again, once.
    let leaver = store.members(chat).await.unwrap().into_iter().find(|member| member.user_id != owner).unwrap();
    assert!(store.remove_member(chat, leaver.user_id).await.unwrap());
    let members: Vec<i64> = store.members(chat).await.unwrap().iter().map(|member| member.user_id).collect();
    let outsider = joiners.iter().copied().find(|&joiner| joiner != leaver.user_id && !members.contains(&joiner));
    let both = [outsider.unwrap(), leaver.user_id];
    let again = store.add_members(chat, &both, MemberRole::Member, now, cap).await;
    assert!(matches!(again, Err(StoreError::ChatFull(3))), "{again:?}");
    assert_eq!(store.add_members(chat, &both[1..], MemberRole::Member, now, cap).await.unwrap().len(), 1);
    assert_eq!(store.members(chat).await.unwrap().len(), 3);
}

pub async fn scheduled_messages_take_their_seq_when_released<S: Store>(store: &S) {
    let (alice, bob) = (user(store, "1").await, user(store, "2").await);
    let chat = group(store, alice, &[bob]).await;
    let start = now_millis();
    let mut later = NewMessage::text(chat, alice, "happy birthday", start);
    later.send_at = Some(start + 60_000);
    later.client_message_id = Some("bday".into());
    let held = store.schedule_message(later.clone()).await.unwrap();
    assert!(matches!(held, Appended::New(ref m) if m.seq == 0 && m.send_at == Some(start + 60_000)));
    let held = held.into_message();
    let again = store.schedule_message(later.clone()).await.unwrap();
    assert!(matches!(again, Appended::Duplicate(ref m) if m.id == held.id), "scheduling is idempotent too");
    assert!(matches!(store.append_message(later.clone()).await.unwrap(), Appended::Duplicate(_)));
    assert_eq!(store.scheduled_message(held.id).await.unwrap().unwrap().content, "happy birthday");

    // Not in the chat yet, and it holds no seq: others take 1 and 2.
    assert!(store.message(held.id).await.unwrap().is_none());
    assert_eq!(send(store, chat, bob, "first").await.seq, 1);
    assert_eq!(send(store, chat, bob, "second").await.seq, 2);
    assert!(store.due_scheduled(start + 59_999, 10).await.unwrap().is_empty());
    let due = store.due_scheduled(start + 60_000, 10).await.unwrap();
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), vec![held.id]);

    let released = store.release_scheduled(held.id, start + 60_001).await.unwrap().unwrap();
    assert_eq!((released.id, released.seq, released.created_at), (held.id, 3, start + 60_001));
    assert!(store.release_scheduled(held.id, start + 60_002).await.unwrap().is_none(), "released once");
    assert_eq!(store.message(held.id).await.unwrap().unwrap().seq, 3);
    assert!(store.due_scheduled(start + 70_000, 10).await.unwrap().is_empty());
    assert!(matches!(store.append_message(later).await.unwrap(), Appended::Duplicate(ref m) if m.seq == 3));

    let mut cancelled = NewMessage::text(chat, alice, "never mind", start);
    cancelled.send_at = Some(start + 1_000);
    let cancelled = store.schedule_message(cancelled).await.unwrap().into_message();
    assert_eq!(store.cancel_scheduled(cancelled.id).await.unwrap().unwrap().id, cancelled.id);
    assert!(store.cancel_scheduled(cancelled.id).await.unwrap().is_none());
    assert!(store.release_scheduled(cancelled.id, start + 2_000).await.unwrap().is_none());

    let mut unscheduled = NewMessage::text(chat, alice, "x", start);
    unscheduled.send_at = None;
    assert!(matches!(store.schedule_message(unscheduled).await, Err(StoreError::Invalid(_))));
    let mut orphan = NewMessage::text(999_999, alice, "x", start);
    orphan.send_at = Some(start);
    assert!(matches!(store.schedule_message(orphan).await, Err(StoreError::ChatNotFound(999_999))));
}

pub async fn shutdown_finishes_and_refuses_more<S: Store + Clone>(store: &S) {
    let alice = user(store, "1").await;
    let chat = group(store, alice, &[]).await;
    // Writes in flight when shutdown is asked for still complete.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let store = store.clone();
        tasks.spawn(
            async move { store.append_message(NewMessage::text(chat, alice, format!("{n}"), now_millis())).await },
        );
    }
    tokio::task::yield_now().await;
    store.shutdown().await.unwrap();
    let mut stored = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(_) => stored += 1,
            Err(StoreError::Closed) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(matches!(send_after_close(store, chat, alice).await, Err(StoreError::Closed)));
    store.shutdown().await.unwrap();
    // Every write that answered Ok is there (reads may still be served).
    if let Ok(page) = store.messages(chat, MessageQuery::latest(100, now_millis() + 1)).await {
        assert_eq!(page.len(), stored);
    }
}

async fn send_after_close<S: Store>(store: &S, chat: i64, sender: i64) -> Result<Appended, StoreError> {
    store.append_message(NewMessage::text(chat, sender, "late", now_millis())).await
}
