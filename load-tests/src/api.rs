//! The few REST calls a scenario needs to set itself up.

use anyhow::Context;
use serde_json::{Value, json};

/// A registered user and an access token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub token: String,
}

pub async fn register(http: &reqwest::Client, url: &str, phone: &str) -> anyhow::Result<User> {
    let body = json!({"phone": phone, "password": "load-test-password"});
    let reply: Value = http.post(format!("{url}/api/auth/register")).json(&body).send().await?.json().await?;
    let reply = if reply["code"] == 10005 {
        // Registered by an earlier run: log in instead.
        http.post(format!("{url}/api/auth/login")).json(&body).send().await?.json().await?
    } else {
        reply
    };
    let data = &reply["data"];
    Ok(User {
        id: data["user"]["id"].as_i64().with_context(|| format!("register {phone}: {reply}"))?,
        token: data["access_token"].as_str().context("no access token")?.to_owned(),
    })
}

/// Registers `count` users with phones from `prefix`, a few at a time.
pub async fn users(http: &reqwest::Client, url: &str, prefix: u64, count: usize) -> anyhow::Result<Vec<User>> {
    let mut users = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
        let batch = chunk.iter().map(|n| {
            let phone = format!("{}", prefix + *n as u64);
            async move { register(http, url, &phone).await }
        });
        for user in futures_util::future::join_all(batch).await {
            users.push(user?);
        }
    }
    Ok(users)
}

pub async fn private_chat(http: &reqwest::Client, url: &str, a: &User, b: &User) -> anyhow::Result<i64> {
    let reply: Value = http
        .post(format!("{url}/api/chats"))
        .bearer_auth(&a.token)
        .json(&json!({"type": "private", "members": [b.id]}))
        .send()
        .await?
        .json()
        .await?;
    reply["data"]["id"].as_i64().with_context(|| format!("create chat: {reply}"))
}

/// Creates a group of `members` owned by `owner`.
pub async fn group_chat(http: &reqwest::Client, url: &str, owner: &User, members: &[User]) -> anyhow::Result<i64> {
    let ids: Vec<i64> = members.iter().map(|user| user.id).collect();
    let reply: Value = http
        .post(format!("{url}/api/chats"))
        .bearer_auth(&owner.token)
        .json(&json!({"type": "group", "name": "load", "members": ids}))
        .send()
        .await?
        .json()
        .await?;
    reply["data"]["id"].as_i64().with_context(|| format!("create group: {reply}"))
}

/// `count` users for a server speaking `dialect`: registered through the
/// API on Switchboard (phones from `prefix`; a dating client uses a token
/// of `/api`, one account base), signed with `secret` on the peers.
pub async fn users_for(
    http: &reqwest::Client,
    url: &str,
    dialect: crate::dialect::Dialect,
    secret: &str,
    prefix: u64,
    count: usize,
) -> anyhow::Result<Vec<User>> {
    use crate::dialect::Dialect;
    match dialect {
        Dialect::Switchboard | Dialect::Dating => users(http, url, prefix, count).await,
        Dialect::SocketIo | Dialect::Ceiling => Ok(signed_users(secret, count)),
        Dialect::Centrifugo => jwt_users(secret, count),
    }
}

/// Users for Centrifugo: ids from 1, each with a connection JWT (HS256
/// under `secret`, `sub` the id, valid for a day), as an app backend
/// mints them.
pub fn jwt_users(secret: &str, count: usize) -> anyhow::Result<Vec<User>> {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 86_400;
    (1..=count as i64)
        .map(|id| {
            let claims = json!({"sub": id.to_string(), "exp": expires});
            Ok(User { id, token: jsonwebtoken::encode(&header, &claims, &key)? })
        })
        .collect()
}

/// Users for servers without Switchboard's API (the bench's Socket.IO peer
/// and ceiling): ids from 1, tokens `<id>.<hex HMAC-SHA256 of id>` under
/// `secret`, which the Socket.IO peer checks on connect.
///
/// # Panics
/// Never: HMAC takes keys of any length.
pub fn signed_users(secret: &str, count: usize) -> Vec<User> {
    use hmac::Mac;
    (1..=count as i64)
        .map(|id| {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
            mac.update(id.to_string().as_bytes());
            User { id, token: format!("{id}.{}", hex::encode(mac.finalize().into_bytes())) }
        })
        .collect()
}
