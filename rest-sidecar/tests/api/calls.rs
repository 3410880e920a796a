use std::time::Duration;

use base64::Engine;
use hmac::Mac;

use crate::harness::{assert_error, start_with};

#[tokio::test]
async fn ice_servers_with_time_limited_turn_credentials() {
    let server = start_with(|config| {
        config.ice.stun_urls = vec!["stun:stun.example.org:3478".into()];
        config.ice.turn_urls = vec!["turn:turn.example.org:3478?transport=udp".into()];
        config.ice.turn_secret = Some("shared-turn-secret".into());
        config.ice.turn_ttl = Duration::from_secs(3_600);
    })
    .await;
    let alice = server.register("13800000001", "alice").await;
    let (status, reply) = server.get("/api/calls/ice-servers", &alice.token).await;
    assert_eq!(status, 200, "{reply}");
    let servers = reply["data"]["ice_servers"].as_array().unwrap();
    assert_eq!(servers[0]["urls"][0], "stun:stun.example.org:3478");
    assert!(servers[0].get("credential").is_none(), "STUN needs no credential");
    let turn = &servers[1];
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, alice.id.to_string());
    let expiry: i64 = expiry.parse().unwrap();
    let now = protocol::time::now_millis() / 1000;
    assert!((now + 3_590..=now + 3_610).contains(&expiry), "valid for the ttl");
    // The TURN server recomputes the password from its copy of the secret.
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"shared-turn-secret").unwrap();
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.decode(turn["credential"].as_str().unwrap()).unwrap();
    mac.verify_slice(&credential).expect("the credential is the HMAC of the username");
    assert_eq!(reply["data"]["ttl"], 3_600);

    assert_error(&server.call(reqwest::Method::GET, "/api/calls/ice-servers", None, None).await, 401, 401);
}

#[tokio::test]
async fn no_turn_without_a_secret() {
    let server = start_with(|config| config.ice.turn_urls = vec!["turn:turn.example.org".into()]).await;
    let alice = server.register("13800000001", "alice").await;
    let (status, reply) = server.get("/api/calls/ice-servers", &alice.token).await;
    assert_eq!(status, 200);
    assert!(reply["data"]["ice_servers"].as_array().unwrap().is_empty(), "{reply}");
}
