use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::harness::{Server, User, assert_error, start, start_with};

fn png(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn upload(server: &Server, user: &User, bytes: Vec<u8>, name: &str, kind: Option<&str>) -> (u16, Value) {
    let mut form = Form::new().part("file", Part::bytes(bytes).file_name(name.to_owned()));
    if let Some(kind) = kind {
        form = form.text("type", kind.to_owned());
    }
    let response = server
        .http
        .post(format!("{}/api/files/upload", server.base))
        .bearer_auth(&user.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn download(server: &Server, user: &User, path: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = server.http.get(format!("{}{path}", server.base)).bearer_auth(&user.token);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn images_upload_with_thumbnails_and_download_with_ranges() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bytes = png(640, 480);
    let (status, uploaded) = upload(&server, &alice, bytes.clone(), "cat photo.png", Some("image")).await;
    assert_eq!(status, 200, "{uploaded}");
    let file = &uploaded["data"];
    assert_eq!((file["type"].as_str(), file["mime"].as_str()), (Some("image"), Some("image/png")));
    assert_eq!((file["size"].as_u64(), file["name"].as_str()), (Some(bytes.len() as u64), Some("cat photo.png")));
    let url = file["url"].as_str().unwrap().to_owned();
    let thumbnail = file["thumbnail"].as_str().unwrap().to_owned();
    assert!(!thumbnail.is_empty());

    let whole = download(&server, &alice, &url, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "image/png");
    assert!(whole.headers()["content-disposition"].to_str().unwrap().contains("cat%20photo.png"));
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &bytes[..]);

    let part = download(&server, &alice, &url, Some("bytes=0-9")).await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 0-9/{}", bytes.len()).as_str());
    assert_eq!(part.bytes().await.unwrap().as_ref(), &bytes[..10]);

    let thumb = download(&server, &alice, &thumbnail, None).await;
    assert_eq!(thumb.status(), 200);
    let thumb = thumb.bytes().await.unwrap();
    assert_eq!(&thumb[..2], &[0xFF, 0xD8], "a JPEG");
    let decoded = image::load_from_memory(&thumb).unwrap();
    assert!(decoded.width() <= 320 && decoded.height() <= 320);
}

#[tokio::test]
async fn only_the_owner_and_chats_it_was_sent_in_may_read_it() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let eve = server.register("13800000003", "eve").await;
    let (_, uploaded) = upload(&server, &alice, b"meeting notes\n".to_vec(), "notes.txt", Some("document")).await;
    let url = uploaded["data"]["url"].as_str().unwrap().to_owned();
    assert_eq!(uploaded["data"]["type"], "document");

    let stranger = download(&server, &bob, &url, None).await;
    assert_eq!(stranger.status(), 404);
    assert_eq!(stranger.json::<Value>().await.unwrap()["code"], 30001);

    let chat = server.group(&alice, &[&bob]).await;
    let (status, _) = server
        .post(
            &format!("/api/chats/{chat}/messages"),
            Some(&alice.token),
            json!({"type": "file", "file_url": url, "file_name": "notes.txt"}),
        )
        .await;
    assert_eq!(status, 200);
    let shared = download(&server, &bob, &url, None).await;
    assert_eq!(shared.status(), 200);
    assert_eq!(shared.text().await.unwrap(), "meeting notes\n");
    assert_eq!(download(&server, &eve, &url, None).await.status(), 404);

    assert_error(&server.delete(&url, &bob.token).await, 403, 403);
    assert_error(&server.delete(&url, &eve.token).await, 404, 30001);
    assert_eq!(server.http.get(format!("{}{url}", server.base)).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn content_decides_the_type() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let (status, reply) = upload(&server, &alice, png(8, 8), "video.mp4", Some("video")).await;
    assert_eq!((status, reply["code"].as_u64()), (400, Some(30002)), "a PNG is not a video whatever it is called");
    // Any bytes are a document: kept, and only ever downloaded.
    let elf = [0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0].repeat(4);
    let (status, reply) = upload(&server, &alice, elf, "tool.png", None).await;
    assert_eq!(
        (status, reply["data"]["type"].as_str()),
        (200, Some("document")),
        "an executable is a document: {reply}"
    );
    let (status, reply) = upload(&server, &alice, vec![0u8, 159, 146, 150, 0, 1], "blob.bin", Some("document")).await;
    assert_eq!((status, reply["data"]["type"].as_str()), (200, Some("document")), "{reply}");
    assert_eq!(reply["data"]["mime"], "application/octet-stream");
    let (status, reply) = upload(&server, &alice, vec![0u8, 159, 146, 150, 0, 1], "blob.bin", Some("image")).await;
    assert_eq!((status, reply["code"].as_u64()), (400, Some(30002)), "unknown bytes are no image");
    let (status, reply) = upload(&server, &alice, png(8, 8), "scan.png", Some("document")).await;
    assert_eq!((status, reply["data"]["type"].as_str()), (200, Some("document")), "a picture sent as a document");
    let (status, reply) = upload(&server, &alice, png(8, 8), "x.png", Some("spreadsheet")).await;
    assert_eq!((status, reply["code"].as_u64()), (400, Some(30002)));
    let (status, reply) = upload(&server, &alice, Vec::new(), "empty.txt", None).await;
    assert_eq!((status, reply["code"].as_u64()), (400, Some(400)));

    let no_file = server
        .http
        .post(format!("{}/api/files/upload", server.base))
        .bearer_auth(&alice.token)
        .multipart(Form::new().text("type", "image"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_file.status(), 400);
    let not_multipart = server.post("/api/files/upload", Some(&alice.token), json!({"file": "x"})).await;
    assert_error(&not_multipart, 400, 400);
}

#[tokio::test]
async fn size_is_limited() {
    let server = start_with(|config| config.upload_limit = 4 * 1024).await;
    let alice = server.register("13800000001", "alice").await;
    let (status, reply) = upload(&server, &alice, vec![b'a'; 3 * 1024], "ok.txt", None).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = upload(&server, &alice, vec![b'a'; 8 * 1024], "big.txt", None).await;
    assert_eq!((status, reply["code"].as_u64()), (413, Some(30003)), "{reply}");
    let leftovers = std::fs::read_dir(server.dir.path().join("files/tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "refused uploads leave no temporary files");
}

#[tokio::test]
async fn identical_uploads_share_storage_until_the_last_is_deleted() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bytes = b"same bytes".to_vec();
    let (_, first) = upload(&server, &alice, bytes.clone(), "a.txt", None).await;
    let (_, second) = upload(&server, &alice, bytes, "b.txt", None).await;
    let (first, second) =
        (first["data"]["url"].as_str().unwrap().to_owned(), second["data"]["url"].as_str().unwrap().to_owned());
    assert_ne!(first, second);
    let files = server.dir.path().join("files");
    let temporary = files.join("tmp").display().to_string();
    let blobs = || walk(&files).into_iter().filter(|p| !p.starts_with(&temporary)).count();
    assert_eq!(blobs(), 1, "one copy on disk");
    assert_eq!(server.delete(&first, &alice.token).await.0, 200);
    assert_error(&server.get(&first, &alice.token).await, 404, 30001);
    assert_eq!(download(&server, &alice, &second, None).await.text().await.unwrap(), "same bytes");
    assert_eq!(server.delete(&second, &alice.token).await.0, 200);
    assert_eq!(blobs(), 0, "the last delete frees the bytes");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

/// Uploaded HTML (or anything not verified as media) never renders on the
/// API's origin: it downloads as opaque bytes, sandboxed; verified images
/// are shown inline, sandboxed too.
#[tokio::test]
async fn only_verified_media_is_served_inline_and_everything_is_sandboxed() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let page = b"<!DOCTYPE html><html><script>fetch('/api/users/me')</script></html>".to_vec();
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec();
    for (bytes, name) in [(page, "page.html"), (svg, "logo.svg")] {
        let (status, reply) = upload(&server, &alice, bytes, name, None).await;
        assert_eq!(status, 200, "{reply}");
        let url = reply["data"]["url"].as_str().unwrap().to_owned();
        let answer = download(&server, &alice, &url, None).await;
        let header = |name: &str| answer.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "application/octet-stream", "{name}");
        assert!(header("content-disposition").starts_with("attachment;"), "{name}");
        assert_eq!(header("content-security-policy"), "sandbox");
        assert_eq!(header("x-content-type-options"), "nosniff");
    }
    let (_, reply) = upload(&server, &alice, png(8, 8), "cat.png", None).await;
    let picture = download(&server, &alice, reply["data"]["url"].as_str().unwrap(), None).await;
    assert_eq!(picture.headers()["content-type"], "image/png");
    assert!(picture.headers()["content-disposition"].to_str().unwrap().starts_with("inline;"));
    assert_eq!(picture.headers()["content-security-policy"], "sandbox");
}
