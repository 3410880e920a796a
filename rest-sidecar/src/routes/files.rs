//! Uploads and downloads. An upload streams to a temporary file while it
//! is hashed and measured (never held whole in memory), its type is taken
//! from its magic bytes, and it is stored by content hash, so identical
//! uploads share one copy on disk.

use std::path::{Path as FsPath, PathBuf};

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use md5::Md5;
use protocol::time::{now_millis, to_iso};
use protocol::{ApiResponse, ErrorCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use storage::model::{FileKind, FileMeta, NewFile};
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::{Empty, ok};
use crate::extract::{Caller, Path};
use crate::rate_limit::Class;
use crate::{ApiFailure, SidecarState};

/// The MIME type of content served as opaque bytes.
const OPAQUE: &str = "application/octet-stream";

/// Bytes looked at to recognise a type.
const SNIFF_BYTES: usize = 8 * 1024;
/// Longest side of a thumbnail, in pixels.
const THUMBNAIL_SIDE: u32 = 320;
/// Images of more pixels than this (read from the header) get no
/// thumbnail: decoding them is never tried.
const MAX_THUMBNAIL_PIXELS: u64 = 40_000_000;
/// The most memory one thumbnail's decode may allocate.
const MAX_DECODE_ALLOC: u64 = 64 * 1024 * 1024;

/// Where the bytes with `sha256` live: `<files>/ab/cd/abcd...`.
fn blob_path(files_dir: &FsPath, sha256: &str) -> PathBuf {
    files_dir.join(&sha256[..2]).join(&sha256[2..4]).join(sha256)
}

/// The kind and MIME type the content really is, if it is one we take.
fn sniff(head: &[u8]) -> Option<(FileKind, String)> {
    if let Some(found) = infer::get(head) {
        let kind = match found.matcher_type() {
            infer::MatcherType::Image => FileKind::Image,
            infer::MatcherType::Video => FileKind::Video,
            infer::MatcherType::Audio => FileKind::Audio,
            infer::MatcherType::Doc | infer::MatcherType::Archive | infer::MatcherType::Text => FileKind::Document,
            // Executables, fonts, and the like are not chat attachments.
            _ => return None,
        };
        return Some((kind, found.mime_type().to_owned()));
    }
    // No signature: plain text is a document; anything else is unknown.
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        // A multi-byte character cut at the end of the sniffed prefix.
        Err(error) if error.error_len().is_none() => std::str::from_utf8(&head[..error.valid_up_to()]).ok(),
        Err(_) => None,
    };
    text.filter(|text| !text.contains('\0')).map(|_| (FileKind::Document, "text/plain; charset=utf-8".to_owned()))
}

#[derive(Debug, Serialize)]
pub(crate) struct FileView {
    id: i64,
    name: String,
    size: u64,
    #[serde(rename = "type")]
    kind: String,
    mime: String,
    url: String,
    thumbnail: String,
    created_at: String,
}

fn view(file: &FileMeta) -> FileView {
    FileView {
        id: file.id,
        name: file.name.clone(),
        size: file.size,
        kind: file.kind.as_str().to_owned(),
        mime: file.mime.clone(),
        url: url(file),
        thumbnail: thumbnail_url(file),
        created_at: to_iso(file.created_at),
    }
}

/// A received upload in its temporary file.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
pub(crate) struct Received {
    pub(crate) temp: PathBuf,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    /// For clients that check their upload by MD5 (seed 003).
    pub(crate) md5: String,
    /// The first bytes, for recognising the type (read again from the
    /// file when a kept record has none).
    #[serde(skip)]
    pub(crate) head: Vec<u8>,
}

/// Removes the temporary file unless the upload was kept.
#[derive(Debug, Default)]
pub(crate) struct TempGuard(pub(crate) Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn multipart_failure(error: &axum::extract::multipart::MultipartError) -> ApiFailure {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiFailure::new(ErrorCode::FileTooLarge, "the upload is larger than allowed")
    } else {
        ApiFailure::bad_request(format!("malformed multipart body: {error}"))
    }
}

async fn receive(
    state: &SidecarState,
    field: &mut axum::extract::multipart::Field<'_>,
    guard: &mut TempGuard,
) -> Result<Received, ApiFailure> {
    let name = field.file_name().unwrap_or("file").to_owned();
    let chunks = futures_util::StreamExt::map(&mut *field, |chunk| chunk.map_err(|error| multipart_failure(&error)));
    receive_stream(state, &name, chunks, state.config.upload_limit, guard).await
}

/// Streams an upload's bytes to a temporary file while hashing and
/// measuring them; more than `limit` bytes is refused (413).
pub(crate) async fn receive_stream(
    state: &SidecarState,
    name: &str,
    chunks: impl futures_util::Stream<Item = Result<axum::body::Bytes, ApiFailure>>,
    limit: u64,
    guard: &mut TempGuard,
) -> Result<Received, ApiFailure> {
    use futures_util::StreamExt;
    let name = name.chars().filter(|c| !c.is_control()).take(255).collect::<String>();
    let temp_dir = state.config.files_dir.join("tmp");
    tokio::fs::create_dir_all(&temp_dir).await.map_err(io_failure)?;
    let temp = temp_dir.join(format!("upload-{}-{}", now_millis(), rand_suffix()));
    guard.0 = Some(temp.clone());
    let mut file = tokio::fs::File::create(&temp).await.map_err(io_failure)?;
    let (mut hasher, mut md5, mut size, mut head) = (Sha256::new(), Md5::new(), 0u64, Vec::with_capacity(SNIFF_BYTES));
    let mut chunks = std::pin::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiFailure::new(ErrorCode::FileTooLarge, format!("the file may be at most {limit} bytes")));
        }
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        md5.update(&chunk);
        file.write_all(&chunk).await.map_err(io_failure)?;
    }
    file.sync_all().await.map_err(io_failure)?;
    Ok(Received { temp, name, size, sha256: hex::encode(hasher.finalize()), md5: hex::encode(md5.finalize()), head })
}

/// Temporary files older than this are leftovers (an upload never
/// finished, a direct upload never completed) and are removed.
const TEMPORARY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(2 * 3_600);

/// Removes leftover temporary files of uploads.
pub(crate) async fn prune_temporary(files_dir: &FsPath) {
    let Ok(mut entries) = tokio::fs::read_dir(files_dir.join("tmp")).await else { return };
    let mut removed = 0u64;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let old = entry
            .metadata()
            .await
            .ok()
            .and_then(|meta| meta.modified().ok())
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > TEMPORARY_MAX_AGE);
        if old && tokio::fs::remove_file(entry.path()).await.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "leftover upload files removed");
    }
}

fn rand_suffix() -> u64 {
    rand::random()
}

#[allow(clippy::needless_pass_by_value, reason = "shaped for `map_err`")]
fn io_failure(error: std::io::Error) -> ApiFailure {
    tracing::error!(%error, "file storage failure");
    ApiFailure::new(ErrorCode::Internal, "internal error")
}

/// Makes a JPEG thumbnail of the image at `source`, whose header says it
/// is `width` × `height`; `None` if it cannot be
/// decoded within limits: the header's pixel count is checked before
/// anything is decoded, and the decode's allocations are capped.
fn thumbnail(source: &FsPath, (width, height): (u32, u32)) -> Option<Vec<u8>> {
    if u64::from(width) * u64::from(height) > MAX_THUMBNAIL_PIXELS {
        metrics::counter!("switchboard_thumbnails_refused_total", "reason" => "pixels").increment(1);
        return None;
    }
    let mut reader = image::ImageReader::open(source).ok()?.with_guessed_format().ok()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let picture = match reader.decode() {
        Ok(picture) => picture,
        Err(error) => {
            tracing::debug!(%error, "no thumbnail: the image did not decode within limits");
            metrics::counter!("switchboard_thumbnails_refused_total", "reason" => "decode").increment(1);
            return None;
        }
    };
    let picture = picture.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut out, image::ImageFormat::Jpeg).ok()?;
    Some(out.into_inner())
}

async fn store_blob(files_dir: &FsPath, sha256: &str, from: &FsPath) -> Result<(), ApiFailure> {
    let path = blob_path(files_dir, sha256);
    if tokio::fs::try_exists(&path).await.map_err(io_failure)? {
        return Ok(()); // the same bytes are stored already
    }
    tokio::fs::create_dir_all(path.parent().unwrap_or(files_dir)).await.map_err(io_failure)?;
    tokio::fs::rename(from, &path).await.map_err(io_failure)
}

/// An upload as stored, with the pixel size of an image.
#[derive(Debug)]
pub(crate) struct Uploaded {
    pub(crate) file: FileMeta,
    pub(crate) width: Option<u32>,
    pub(crate) height: Option<u32>,
    /// The text fields the caller asked for besides `file` and `type`, as sent.
    pub(crate) fields: Vec<(String, String)>,
}

/// The longest text field of an upload that is read (`type`, and the
/// fields a contract asks for); longer ones are refused, not buffered.
const MAX_UPLOAD_FIELD_BYTES: usize = 1024;

/// Receives a multipart upload (`file`, and a `type` read by `parse_kind`)
/// for `owner`: streamed to disk, its type taken from its bytes (and
/// checked against `type`), a thumbnail made for images, stored by hash.
/// The text fields named in `wanted` are read too; others are skipped.
/// Every contract's upload route runs this.
pub(crate) async fn store_upload(
    state: &SidecarState,
    owner: i64,
    multipart: Result<Multipart, MultipartRejection>,
    parse_kind: fn(&str) -> Option<FileKind>,
    wanted: &[&str],
) -> Result<Uploaded, ApiFailure> {
    let mut multipart = multipart.map_err(|rejection| ApiFailure::bad_request(rejection.body_text()))?;
    state.limits.check(Class::Upload, &format!("user:{owner}"))?;
    let mut guard = TempGuard(None);
    let (mut received, mut declared, mut fields) = (None, None, Vec::new());
    while let Some(mut field) = multipart.next_field().await.map_err(|error| multipart_failure(&error))? {
        match field.name().map(str::to_owned).as_deref() {
            Some("file") if received.is_none() => received = Some(receive(state, &mut field, &mut guard).await?),
            Some("type") => {
                let text = small_text(&mut field).await?;
                declared = Some(parse_kind(text.trim()).ok_or_else(|| {
                    ApiFailure::new(ErrorCode::FileTypeUnsupported, format!("type {:?} is not accepted", text.trim()))
                })?);
            }
            Some(name) if wanted.contains(&name) => {
                let name = name.to_owned();
                fields.push((name, small_text(&mut field).await?));
            }
            _ => {} // unknown fields are ignored
        }
    }
    let received = received.ok_or_else(|| ApiFailure::bad_request("a `file` part is required"))?;
    let (file, width, height) = keep(state, owner, received, declared).await?;
    Ok(Uploaded { file, width, height, fields })
}

/// What a received upload really is (from its bytes, checked against the
/// `declared` kind), stored by hash with a thumbnail for images, and
/// recorded as `owner`'s file; answers it with an image's pixel size.
pub(crate) async fn keep(
    state: &SidecarState,
    owner: i64,
    mut received: Received,
    declared: Option<FileKind>,
) -> Result<(FileMeta, Option<u32>, Option<u32>), ApiFailure> {
    if received.head.is_empty() && received.size > 0 {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(&received.temp).await.map_err(io_failure)?;
        file.take(SNIFF_BYTES as u64).read_to_end(&mut received.head).await.map_err(io_failure)?;
    }
    if received.size == 0 {
        return Err(ApiFailure::bad_request("the file is empty"));
    }
    let (kind, mime) = match (sniff(&received.head), declared) {
        // Any bytes make a document (served as an attachment, never inline).
        (Some((_, mime)), Some(FileKind::Document)) => (FileKind::Document, mime),
        (None, Some(FileKind::Document) | None) => (FileKind::Document, OPAQUE.to_owned()),
        (Some((kind, mime)), None) => (kind, mime),
        (Some((kind, mime)), Some(declared)) if kind == declared => (kind, mime),
        (found, Some(declared)) => {
            let content = found.map_or_else(
                || "not a recognised format".to_owned(),
                |(kind, mime)| format!("{} ({mime})", kind.as_str()),
            );
            return Err(ApiFailure::new(
                ErrorCode::FileTypeUnsupported,
                format!("the content is {content}, not {}", declared.as_str()),
            ));
        }
    };
    let (mut width, mut height) = (None, None);
    let thumbnail_sha256 = if kind == FileKind::Image {
        let source = received.temp.clone();
        let made = tokio::task::spawn_blocking(move || {
            let size = dimensions(&source);
            (size, size.and_then(|size| thumbnail(&source, size)))
        })
        .await
        .ok();
        let (size, thumb) = made.unwrap_or((None, None));
        (width, height) = (size.map(|(w, _)| w), size.map(|(_, h)| h));
        match thumb {
            Some(bytes) => {
                let sha = hex::encode(Sha256::digest(&bytes));
                let temp = received.temp.with_extension("thumb");
                tokio::fs::write(&temp, &bytes).await.map_err(io_failure)?;
                let _thumb_guard = TempGuard(Some(temp.clone()));
                store_blob(&state.config.files_dir, &sha, &temp).await?;
                Some(sha)
            }
            None => None,
        }
    } else {
        None
    };
    // The record first, then the bytes: a deletion of an identical file
    // racing this upload then sees the record and keeps (or puts back)
    // the bytes (see `drop_unused_blob`).
    let file = state
        .store
        .insert_file(NewFile {
            owner_id: owner,
            name: received.name,
            size: received.size,
            mime,
            kind,
            sha256: received.sha256.clone(),
            thumbnail_sha256,
            created_at: now_millis(),
        })
        .await?;
    if let Err(failure) = store_blob(&state.config.files_dir, &received.sha256, &received.temp).await {
        let _ = state.store.delete_file(file.id).await;
        return Err(failure);
    }
    metrics::counter!("switchboard_files_uploaded_total", "type" => kind.as_str()).increment(1);
    Ok((file, width, height))
}

/// A short text field of a multipart body; longer ones are refused, never buffered whole.
async fn small_text(field: &mut axum::extract::multipart::Field<'_>) -> Result<String, ApiFailure> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|error| multipart_failure(&error))? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_UPLOAD_FIELD_BYTES {
            return Err(ApiFailure::bad_request(format!(
                "upload fields may be at most {MAX_UPLOAD_FIELD_BYTES} bytes"
            )));
        }
    }
    String::from_utf8(bytes).map_err(|_| ApiFailure::bad_request("upload fields must be UTF-8 text"))
}

/// An image's pixel size, read from its header (no decoding).
fn dimensions(source: &FsPath) -> Option<(u32, u32)> {
    image::ImageReader::open(source).ok()?.with_guessed_format().ok()?.into_dimensions().ok()
}

/// The URL a file is downloaded from (`/api/files/{id}`: one per file,
/// whichever contract uploaded it).
pub(crate) fn url(file: &FileMeta) -> String {
    service::file_path(file.id)
}

/// The URL of a file's thumbnail, or empty.
pub(crate) fn thumbnail_url(file: &FileMeta) -> String {
    if file.thumbnail_sha256.is_some() { format!("/api/files/{}/thumbnail", file.id) } else { String::new() }
}

/// `POST /api/files/upload` (multipart: `file`, `type`).
pub(crate) async fn upload(
    State(state): State<SidecarState>,
    caller: Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<ApiResponse<FileView>>, ApiFailure> {
    let uploaded = store_upload(&state, caller.user_id, multipart, FileKind::parse, &[]).await?;
    Ok(ok("文件上传成功", view(&uploaded.file)))
}

/// The file, if the caller may read it; 30001 otherwise (no existence leak).
async fn readable(state: &SidecarState, id: i64, user_id: i64) -> Result<FileMeta, ApiFailure> {
    let missing = || ApiFailure::new(ErrorCode::FileNotFound, format!("file {id} not found"));
    let file = state.store.file(id).await?.ok_or_else(missing)?;
    if !state.store.file_visible_to(id, &service::file_path(id), user_id).await? {
        return Err(missing());
    }
    Ok(file)
}

/// Whether content of `kind` with `mime` (both from its magic bytes) may
/// be shown by a browser: images (not SVG, which runs script), video and
/// audio. Everything else is downloaded.
fn shown_inline(kind: FileKind, mime: &str) -> bool {
    matches!(kind, FileKind::Image | FileKind::Video | FileKind::Audio) && !mime.starts_with("image/svg")
}

/// Serves a stored blob: inline only when `inline`, otherwise as an opaque
/// attachment; always sandboxed and never sniffed.
async fn serve(path: PathBuf, mime: &str, inline: bool, name: &str, request: Request) -> Result<Response, ApiFailure> {
    // ServeFile answers Range and conditional requests.
    let mut response = match ServeFile::new(path).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    };
    let content_type = if inline { mime } else { OPAQUE };
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    let disposition = if inline { "inline" } else { "attachment" };
    if let Ok(value) = HeaderValue::from_str(&format!("{disposition}; filename*=UTF-8''{encoded}")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    Ok(response)
}

/// `GET /api/files/{id}`: the bytes, with Range support.
pub(crate) async fn download(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
    request: Request,
) -> Result<Response, ApiFailure> {
    let file = readable(&state, id, caller.user_id).await?;
    let inline = shown_inline(file.kind, &file.mime);
    serve(blob_path(&state.config.files_dir, &file.sha256), &file.mime, inline, &file.name, request).await
}

/// `GET /api/files/{id}/thumbnail`.
pub(crate) async fn download_thumbnail(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
    request: Request,
) -> Result<Response, ApiFailure> {
    let file = readable(&state, id, caller.user_id).await?;
    let sha =
        file.thumbnail_sha256.ok_or_else(|| ApiFailure::new(ErrorCode::FileNotFound, "this file has no thumbnail"))?;
    serve(blob_path(&state.config.files_dir, &sha), "image/jpeg", true, &format!("thumb_{}.jpg", file.id), request)
        .await
}

/// `DELETE /api/files/{id}`: the owner only; the bytes go when no other
/// upload shares them.
pub(crate) async fn delete(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    let file = readable(&state, id, caller.user_id).await?;
    if file.owner_id != caller.user_id {
        return Err(ApiFailure::new(ErrorCode::Forbidden, "only the uploader may delete a file"));
    }
    if state.store.delete_file(id).await? == Some(0) {
        drop_unused_blob(&state, &file.sha256).await;
    }
    Ok(ok("文件删除成功", Empty {}))
}

/// Removes the bytes of `sha256` unless a file recorded meanwhile shares
/// them: an identical upload racing this deletion (on any process) records
/// its file before it stores its bytes, so the bytes are first moved
/// aside, the files sharing them counted again, and put back if any does.
async fn drop_unused_blob(state: &SidecarState, sha256: &str) {
    let path = blob_path(&state.config.files_dir, sha256);
    let aside = path.with_extension(format!("deleting-{:016x}", rand::random::<u64>()));
    if tokio::fs::rename(&path, &aside).await.is_err() {
        return; // gone already
    }
    let shared = match state.store.files_sharing(sha256).await {
        Ok(count) => count > 0,
        // Unsure: keep the bytes (a leak is better than a loss).
        Err(error) => {
            tracing::warn!(%error, "could not recount a blob's files; keeping it");
            true
        }
    };
    let kept = if shared && !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        tokio::fs::rename(&aside, &path).await.is_ok()
    } else {
        false
    };
    if !kept {
        let _ = tokio::fs::remove_file(&aside).await;
    }
    metrics::counter!("switchboard_file_blobs_total", "outcome" => if shared { "kept" } else { "removed" })
        .increment(1);
}
