//! `GET /api/openapi.json` documents exactly the routes the server has.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::start;

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

/// The `(METHOD, path)` pairs `src/lib.rs` registers with `.route(...)`,
/// and the `/health` and `/metrics` it serves from the `ops` crate.
fn registered() -> BTreeSet<(String, String)> {
    let source = [include_str!("../../src/lib.rs"), include_str!("../../../ops/src/lib.rs")].concat();
    let mut operations = BTreeSet::new();
    for chunk in source.split(".route(\"").skip(1) {
        let (path, rest) = chunk.split_once('"').unwrap();
        // The handler chain runs to the end of the `.route(...)` call.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(rest.len(), |(at, _)| at);
        let chain = &rest[..end];
        let full = if path == "/health" || path == "/metrics" { path.to_owned() } else { format!("/api{path}") };
        for method in ["get", "post", "put", "delete", "patch"] {
            let called = chain.match_indices(&format!("{method}(")).any(|(at, _)| {
                at == 0 || !chain.as_bytes()[at - 1].is_ascii_alphanumeric() && chain.as_bytes()[at - 1] != b'_'
            });
            if called {
                operations.insert((method.to_uppercase(), full.clone()));
            }
        }
    }
    assert!(operations.len() > 20, "the route scan found too little: {operations:?}");
    operations
}

#[tokio::test]
async fn the_document_lists_every_route_and_only_those() {
    let server = start().await;
    let response = server.http.get(format!("{}/api/openapi.json", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["components"]["schemas"]["ApiError"].is_object());

    let documented = documented(&doc);
    let registered = registered();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&registered).collect();
    assert!(undocumented.is_empty(), "routes missing from openapi.json: {undocumented:?}");
    assert!(phantom.is_empty(), "openapi.json documents routes that do not exist: {phantom:?}");

    // And each documented operation really is routed: never the fallback.
    for (method, path) in &documented {
        let concrete = path.replace("{id}", "1").replace("{user_id}", "2");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = matches!(method, Method::POST | Method::PUT).then(|| json!({}));
        let (status, reply) = server.call(method.clone(), &concrete, None, body).await;
        assert_ne!(status, 405, "{method} {path} is not routed");
        let fallback = reply["error"].as_str().is_some_and(|error| error.starts_with("no route for"));
        assert!(!fallback, "{method} {path} fell through to the 404 fallback");
    }
}

#[tokio::test]
async fn every_protected_operation_refuses_strangers_and_bad_ids() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let doc: Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    let mut protected = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let secured = operation["security"].as_array().is_some_and(|schemes| !schemes.is_empty());
            let body = matches!(method, Method::POST | Method::PUT).then(|| json!({}));
            if secured {
                protected += 1;
                let concrete = path.replace("{id}", "1").replace("{user_id}", "2");
                let (status, reply) = server.call(method.clone(), &concrete, None, body.clone()).await;
                assert_eq!(
                    (status.as_u16(), reply["code"].as_u64()),
                    (401, Some(401)),
                    "{method} {path} without a token: {reply}"
                );
            }
            if path.contains("{id}") {
                let bad = path.replace("{id}", "abc").replace("{user_id}", "2");
                let (status, reply) = server.call(method.clone(), &bad, Some(&alice.token), body).await;
                assert_eq!((status.as_u16(), reply["code"].as_u64()), (400, Some(400)), "{method} {bad}: {reply}");
            }
        }
    }
    assert!(protected >= 25, "only {protected} protected operations found");
}
