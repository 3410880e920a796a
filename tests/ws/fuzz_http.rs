//! The hand-fed edges of the HTTP surface, fed arbitrary input against the
//! real server: multipart upload bodies (seed 002's and seed 000's upload
//! endpoints) and `Range` headers on file downloads. Every answer is a
//! client error or a success in the contract's envelope: no 5xx, no
//! hang, no dropped connection.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::dating::PNG_4X3;
use crate::harness::{self, Server, User};

/// One part of a multipart body: its field name, file name, content type
/// and bytes.
type Part = (String, Option<String>, Option<String>, Vec<u8>);

fn part() -> impl Strategy<Value = Part> {
    (
        prop_oneof![Just("file".to_owned()), Just("type".to_owned()), Just("duration".to_owned()), "[a-z]{1,8}"],
        prop::option::of(prop_oneof![Just("a.png".to_owned()), Just("x.bin".to_owned()), ".{0,300}"]),
        prop::option::of(prop_oneof![Just("image/png".to_owned()), Just("text/html".to_owned()), "[ -~]{0,40}"]),
        prop_oneof![
            Just(PNG_4X3.to_vec()),
            prop::sample::select(vec!["image", "video", "voice", "document", "file", ""])
                .prop_map(|kind| kind.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..2048),
        ],
    )
}

/// A multipart body: a boundary, well-formed parts, then perhaps a cut or
/// garbage, so that the parser sees both what clients send and what they
/// must not.
fn multipart() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        // Mostly boundaries a client would pick, so the parser gets past them.
        prop_oneof![9 => "[A-Za-z0-9_-]{1,60}", 1 => "[ -~]{0,80}"],
        prop::collection::vec(part(), 0..4),
        prop_oneof![Just(None), any::<prop::sample::Index>().prop_map(Some)],
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(boundary, parts, cut, garbage)| {
            let mut body = Vec::new();
            for (name, file_name, content_type, bytes) in parts {
                body.extend_from_slice(
                    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
                );
                if let Some(file_name) = file_name {
                    body.extend_from_slice(format!("; filename=\"{file_name}\"").as_bytes());
                }
                if let Some(content_type) = content_type {
                    body.extend_from_slice(format!("\r\nContent-Type: {content_type}").as_bytes());
                }
                body.extend_from_slice(b"\r\n\r\n");
                body.extend_from_slice(&bytes);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            if let Some(cut) = cut {
                body.truncate(cut.index(body.len() + 1));
                body.extend_from_slice(&garbage);
            }
            (boundary, body)
        })
}

fn range() -> impl Strategy<Value = String> {
    prop_oneof![
        "bytes=[0-9]{0,21}-[0-9]{0,21}",
        "bytes=-[0-9]{0,21}",
        "bytes=([0-9]{1,4}-[0-9]{0,4},){1,6}[0-9]{1,4}-",
        "(bytes|items|)=?[ -~]{0,40}",
    ]
}

/// A server, a user and one uploaded image, on a runtime that outlives
/// every case.
fn scene() -> (tokio::runtime::Runtime, Server, User, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (server, alice, file) = runtime.block_on(async {
        // Every case is an upload: the hourly upload limit must not answer for the parser.
        let server = harness::start_with_flags(&["--rate-upload-per-hour", "1000000"], |_| {}).await;
        let alice = server.register("13800000001", "alice").await;
        let form = reqwest::multipart::Form::new()
            .text("type", "image")
            .part("file", reqwest::multipart::Part::bytes(PNG_4X3.to_vec()).file_name("a.png"));
        let request = server.http.post(format!("{}/api/files/upload", server.base)).bearer_auth(&alice.token);
        let uploaded: Value = request.multipart(form).send().await.unwrap().json().await.unwrap();
        let url = uploaded["data"]["url"].as_str().unwrap_or_else(|| panic!("{uploaded}")).to_owned();
        (server, alice, url)
    });
    (runtime, server, alice, file)
}

#[test]
fn arbitrary_multipart_uploads_are_answered_in_the_envelope_never_with_a_5xx() {
    let (runtime, server, alice, _) = scene();
    let mut runner = TestRunner::new(Config { cases: 96, failure_persistence: None, ..Config::default() });
    runner
        .run(&(multipart(), prop::bool::ANY), |((boundary, body), canonical)| {
            let path = if canonical { "/api/files/upload" } else { "/v1/messages/upload" };
            let (status, answer) = runtime.block_on(async {
                let response = server
                    .http
                    .post(format!("{}{path}", server.base))
                    .bearer_auth(&alice.token)
                    .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                    .body(body)
                    .send()
                    .await
                    .expect("answered, not dropped");
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            });
            prop_assert!(status < 500, "{path}: {status} {answer}");
            let envelope: Value = serde_json::from_str(&answer)
                .map_err(|_| TestCaseError::fail(format!("{path}: not JSON: {answer}")))?;
            prop_assert!(envelope["code"].is_number(), "{path}: {answer}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_range_headers_get_the_bytes_a_part_or_416_never_a_5xx() {
    let (runtime, server, alice, file) = scene();
    let mut runner = TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() });
    runner
        .run(&range(), |range| {
            let (status, content_range, length) = runtime.block_on(async {
                let response = server
                    .http
                    .get(format!("{}{file}", server.base))
                    .bearer_auth(&alice.token)
                    .header("range", range.as_str())
                    .send()
                    .await
                    .expect("answered, not dropped");
                let status = response.status().as_u16();
                let content_range =
                    response.headers().get("content-range").map(|value| value.to_str().unwrap_or("").to_owned());
                (status, content_range, response.bytes().await.expect("the whole body").len())
            });
            prop_assert!(matches!(status, 200 | 206 | 416), "{range:?}: {status}");
            match status {
                200 => prop_assert_eq!(length, PNG_4X3.len()),
                206 => {
                    prop_assert!(
                        content_range.is_some() && length <= PNG_4X3.len(),
                        "{:?}: {:?}",
                        range,
                        content_range
                    );
                }
                _ => {}
            }
            Ok(())
        })
        .unwrap();
}
