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
    let mut operations = routes_in(&source, |path| {
        if path == "/health" || path == "/metrics" { path.to_owned() } else { format!("/api{path}") }
    });
    // The server API's routes are written with their full paths.
    operations.extend(routes_in(include_str!("../../src/routes/server.rs"), str::to_owned));
    assert!(operations.len() > 20, "the route scan found too little: {operations:?}");
    operations
}

/// Path parameters by position only: `{id}` and `{conversation_id}` alike.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push_str("{}");
            }
            '}' => inside = false,
            _ if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// Each dialect's document lists the routes its module registers under
/// its mount, and only those (the catch-all 404 and the document itself aside).
#[tokio::test]
async fn each_dialect_document_lists_its_routes_and_only_those() {
    let server = start().await;
    let dialects = [
        ("/v1", include_str!("../../src/dialects/dating.rs"), 10),
        ("/api/v1", include_str!("../../src/dialects/simple.rs"), 8),
    ];
    for (mount, source, expected) in dialects {
        let response = server.http.get(format!("{}{mount}/openapi.json", server.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{mount}");
        let doc: Value = response.json().await.unwrap();
        assert_eq!(doc["servers"][0]["url"], mount);
        let documented: BTreeSet<_> =
            documented(&doc).into_iter().map(|(method, path)| (method, shape(&format!("{mount}{path}")))).collect();
        let registered: BTreeSet<_> = routes_in(source, shape)
            .into_iter()
            .filter(|(_, path)| !path.ends_with("/openapi.json") && !path.contains('*'))
            .collect();
        assert_eq!(registered.len(), expected, "the route scan of {mount}: {registered:?}");
        assert_eq!(documented, registered, "{mount}/openapi.json against the routes");
    }
}

/// The `(METHOD, path)` pairs registered with `.route(...)` in `source`,
/// each path made full by `full`.
fn routes_in(source: &str, full: impl Fn(&str) -> String) -> BTreeSet<(String, String)> {
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
        let full = full(path);
        for method in ["get", "post", "put", "delete", "patch"] {
            let called = chain.match_indices(&format!("{method}(")).any(|(at, _)| {
                at == 0 || !chain.as_bytes()[at - 1].is_ascii_alphanumeric() && chain.as_bytes()[at - 1] != b'_'
            });
            if called {
                operations.insert((method.to_uppercase(), full.clone()));
            }
        }
    }
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
                let (status, reply) = if path.starts_with("/api/server/") {
                    server.call_as(method.clone(), &bad, &format!("apikey {}", crate::harness::SERVER_KEY), body).await
                } else {
                    server.call(method.clone(), &bad, Some(&alice.token), body).await
                };
                assert_eq!((status.as_u16(), reply["code"].as_u64()), (400, Some(400)), "{method} {bad}: {reply}");
            }
        }
    }
    assert!(protected >= 25, "only {protected} protected operations found");
}
