use serde_json::json;

use crate::harness::{assert_error, start};

#[tokio::test]
async fn groups_are_created_listed_and_shown_to_members_only() {
    let mut server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let eve = server.register("13800000003", "eve").await;

    let body = json!({"type": "group", "name": "team", "description": "our team", "members": [bob.id]});
    let (status, created) = server.post("/api/chats", Some(&alice.token), body).await;
    assert_eq!(status, 200, "{created}");
    let chat = created["data"]["id"].as_i64().unwrap();
    assert_eq!((created["data"]["type"].as_str(), created["data"]["members_count"].as_u64()), (Some("group"), Some(2)));
    let roles: Vec<(i64, String)> = created["data"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_i64().unwrap(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    assert!(roles.contains(&(alice.id, "owner".into())) && roles.contains(&(bob.id, "member".into())));
    let added = server.event("chat.member_added").await;
    assert!(added.recipients.contains(&bob.id));

    assert_error(&server.post("/api/chats", Some(&alice.token), json!({"type": "channel"})).await, 400, 400);
    assert_error(
        &server.post("/api/chats", Some(&alice.token), json!({"type": "group", "members": [999_999]})).await,
        404,
        10001,
    );
    assert_error(
        &server.post("/api/chats", Some(&alice.token), json!({"type": "private", "members": [bob.id, eve.id]})).await,
        400,
        400,
    );

    let (status, detail) = server.get(&format!("/api/chats/{chat}"), &bob.token).await;
    assert_eq!(status, 200);
    assert_eq!(detail["data"]["members"].as_array().unwrap().len(), 2);
    assert_error(&server.get(&format!("/api/chats/{chat}"), &eve.token).await, 403, 20002);
    assert_error(&server.get("/api/chats/999999", &eve.token).await, 404, 20001);

    server.send(&alice, chat, "hello bob").await;
    let (_, list) = server.get("/api/chats", &bob.token).await;
    let row = &list["data"]["chats"][0];
    assert_eq!((row["id"].as_i64(), row["unread_count"].as_u64()), (Some(chat), Some(1)));
    assert_eq!(row["last_message"]["content"], "hello bob");
    assert_eq!((list["data"]["total"].as_u64(), list["data"]["has_more"].as_bool()), (Some(1), Some(false)));
    assert_error(&server.get("/api/chats?limit=0", &bob.token).await, 400, 400);
    assert_error(&server.get("/api/chats?limit=abc", &bob.token).await, 400, 400);
}

#[tokio::test]
async fn private_chats_are_one_per_pair_and_named_after_the_peer() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let (_, first) =
        server.post("/api/chats", Some(&alice.token), json!({"type": "private", "members": [bob.id]})).await;
    let (_, second) =
        server.post("/api/chats", Some(&bob.token), json!({"type": "private", "members": [alice.id]})).await;
    assert_eq!(first["data"]["id"], second["data"]["id"]);
    assert_eq!(first["data"]["name"], "bob");
    assert_eq!(second["data"]["name"], "alice");
    let chat = first["data"]["id"].as_i64().unwrap();
    let (status, _) =
        server.post(&format!("/api/chats/{chat}/members"), Some(&alice.token), json!({"user_ids": [alice.id]})).await;
    assert_eq!(status, 403, "private chats take no members");
}

#[tokio::test]
async fn owners_and_admins_manage_members() {
    let mut server = start().await;
    let owner = server.register("13800000001", "owner").await;
    let admin = server.register("13800000002", "admin").await;
    let member = server.register("13800000003", "member").await;
    let newcomer = server.register("13800000004", "newcomer").await;
    let chat = server.group(&owner, &[&admin, &member]).await;
    server.drain_events();

    let role = format!("/api/chats/{chat}/members/{}/role", admin.id);
    assert_error(&server.put(&role, &member.token, json!({"role": "admin"})).await, 403, 403);
    assert_error(&server.put(&role, &owner.token, json!({"role": "king"})).await, 400, 400);
    assert_eq!(server.put(&role, &owner.token, json!({"role": "admin"})).await.0, 200);

    let members = format!("/api/chats/{chat}/members");
    assert_error(&server.post(&members, Some(&member.token), json!({"user_ids": [newcomer.id]})).await, 403, 403);
    assert_error(&server.post(&members, Some(&admin.token), json!({"user_ids": []})).await, 400, 400);
    let (status, added) = server.post(&members, Some(&admin.token), json!({"user_ids": [newcomer.id]})).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["data"]["added"][0]["id"], newcomer.id);
    let event = server.event("chat.member_added").await;
    assert!(event.recipients.contains(&newcomer.id) && event.recipients.contains(&owner.id));

    assert_error(&server.delete(&format!("{members}/{}", owner.id), &admin.token).await, 403, 403);
    assert_error(&server.delete(&format!("{members}/{}", admin.id), &member.token).await, 403, 403);
    assert_eq!(server.delete(&format!("{members}/{}", newcomer.id), &admin.token).await.0, 200);
    let removed = server.event("chat.member_removed").await;
    assert!(removed.recipients.contains(&newcomer.id), "the removed member hears of it too");
    assert_error(&server.get(&format!("/api/chats/{chat}"), &newcomer.token).await, 403, 20002);
    assert_error(&server.delete(&format!("{members}/{}", newcomer.id), &admin.token).await, 403, 20002);

    let edit = json!({"name": "renamed"});
    assert_error(&server.put(&format!("/api/chats/{chat}"), &member.token, edit.clone()).await, 403, 403);
    let (status, renamed) = server.put(&format!("/api/chats/{chat}"), &admin.token, edit).await;
    assert_eq!((status.as_u16(), renamed["data"]["name"].as_str()), (200, Some("renamed")));
    server.event("chat.updated").await;

    // The owner leaves: the admin inherits the group.
    assert_eq!(server.post(&format!("/api/chats/{chat}/leave"), Some(&owner.token), json!({})).await.0, 200);
    let (_, detail) = server.get(&format!("/api/chats/{chat}"), &admin.token).await;
    let admin_role =
        detail["data"]["members"].as_array().unwrap().iter().find(|m| m["id"] == admin.id).unwrap()["role"].clone();
    assert_eq!(admin_role, "owner");
    assert_error(&server.post(&format!("/api/chats/{chat}/leave"), Some(&owner.token), json!({})).await, 403, 20002);
}

#[tokio::test]
async fn pin_and_mute_are_per_member() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let first = server.group(&alice, &[&bob]).await;
    let second = server.group(&alice, &[&bob]).await;
    server.send(&alice, second, "newer").await;
    let (status, settings) = server
        .put(&format!("/api/chats/{first}/settings"), &alice.token, json!({"is_pinned": true, "is_muted": true}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (settings["data"]["is_pinned"].as_bool(), settings["data"]["is_muted"].as_bool()),
        (Some(true), Some(true))
    );
    let (_, list) = server.get("/api/chats", &alice.token).await;
    assert_eq!(list["data"]["chats"][0]["id"], first, "pinned first");
    let (_, bobs) = server.get("/api/chats", &bob.token).await;
    assert_eq!(bobs["data"]["chats"][0]["id"], second, "bob's order is his own");
    assert_eq!(bobs["data"]["chats"][1]["is_pinned"], false);
    assert_error(
        &server.put(&format!("/api/chats/{first}/settings"), &alice.token, json!({"is_pinned": 1})).await,
        400,
        400,
    );
    let (_, page) = server.get("/api/chats?limit=1", &alice.token).await;
    assert_eq!((page["data"]["chats"].as_array().unwrap().len(), page["data"]["has_more"].as_bool()), (1, Some(true)));
}
