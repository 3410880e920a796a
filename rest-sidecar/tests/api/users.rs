use serde_json::json;

use crate::harness::{assert_error, start};

#[tokio::test]
async fn profiles_public_and_private() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;

    let (status, me) = server.get("/api/users/me", &alice.token).await;
    assert_eq!(status, 200);
    for field in [
        "id",
        "phone",
        "username",
        "nickname",
        "bio",
        "avatar",
        "online",
        "last_seen",
        "language",
        "theme",
        "created_at",
        "updated_at",
    ] {
        assert!(me["data"].get(field).is_some(), "missing {field}: {me}");
    }

    let update = json!({"nickname": "Alice W.", "bio": "hi", "theme": "dark", "avatar": "https://example.com/a.png"});
    let (status, updated) = server.put("/api/users/me", &alice.token, update).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (updated["data"]["nickname"].as_str(), updated["data"]["theme"].as_str()),
        (Some("Alice W."), Some("dark"))
    );
    assert_eq!(updated["data"]["username"], "alice", "fields left out stay");

    assert_error(&server.put("/api/users/me", &alice.token, json!({"theme": "purple"})).await, 400, 400);
    assert_error(&server.put("/api/users/me", &alice.token, json!({"nickname": ""})).await, 400, 400);
    assert_error(&server.put("/api/users/me", &alice.token, json!({"bio": "x".repeat(501)})).await, 400, 400);
    assert_error(&server.put("/api/users/me", &alice.token, json!({"password": "sneaky"})).await, 400, 400);
    assert_error(&server.put("/api/users/me", &alice.token, json!({"username": "bob"})).await, 409, 10006);

    let (status, public) = server.get(&format!("/api/users/{}", bob.id), &alice.token).await;
    assert_eq!(status, 200);
    assert_eq!(public["data"]["username"], "bob");
    assert!(public["data"].get("phone").is_none(), "never the phone: {public}");
    assert_error(&server.get("/api/users/999999", &alice.token).await, 404, 10001);
    assert_error(&server.get("/api/users/abc", &alice.token).await, 400, 400);
    assert_error(&server.call(reqwest::Method::GET, &format!("/api/users/{}", bob.id), None, None).await, 401, 401);
}

#[tokio::test]
async fn contacts_add_alias_block_and_remove() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;

    let (status, added) =
        server.post("/api/contacts", Some(&alice.token), json!({"phone": bob.phone, "nickname": "Bobby"})).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(
        (added["data"]["contact_id"].as_i64(), added["data"]["nickname"].as_str()),
        (Some(bob.id), Some("Bobby"))
    );
    assert_eq!(added["data"]["contact"]["username"], "bob");
    assert_error(&server.post("/api/contacts", Some(&alice.token), json!({"phone": bob.phone})).await, 409, 409);
    assert_error(&server.post("/api/contacts", Some(&alice.token), json!({"phone": "13999999999"})).await, 404, 10001);
    assert_error(&server.post("/api/contacts", Some(&alice.token), json!({"phone": alice.phone})).await, 400, 400);
    assert_error(&server.post("/api/contacts", Some(&alice.token), json!({"nickname": "x"})).await, 400, 400);

    let (_, list) = server.get("/api/contacts", &alice.token).await;
    assert_eq!(list["data"]["total"], 1);
    assert_eq!(list["data"]["contacts"][0]["contact"]["id"], bob.id);
    assert!(list["data"]["contacts"][0]["contact"].get("phone").is_none());
    let (_, bobs) = server.get("/api/contacts", &bob.token).await;
    assert_eq!(bobs["data"]["total"], 0, "a contact list is its owner's");

    let path = format!("/api/contacts/{}", bob.id);
    let (status, blocked) = server.put(&path, &alice.token, json!({"is_blocked": true})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (blocked["data"]["is_blocked"].as_bool(), blocked["data"]["nickname"].as_str()),
        (Some(true), Some("Bobby"))
    );
    assert_error(&server.put(&path, &alice.token, json!({"is_blocked": "yes"})).await, 400, 400);
    assert_error(
        &server.put(&format!("/api/contacts/{}", alice.id), &bob.token, json!({"is_muted": true})).await,
        404,
        404,
    );

    assert_eq!(server.delete(&path, &alice.token).await.0, 200);
    assert_error(&server.delete(&path, &alice.token).await, 404, 404);
    assert_error(&server.delete(&path, "bad-token").await, 401, 10008);
}
