//! A connection's socket in two halves. tungstenite reads and parses the
//! client's frames; the server's frames are written here, straight from
//! their bytes: an event encoded once for every recipient leaves each
//! connection by `writev` of its header and its shared payload, with no
//! copy into a per-connection buffer (tungstenite copies every frame into
//! its write buffer: a tenth of the runtime's time at the fan-out maximum).
//!
//! What tungstenite writes itself (the pong to a ping, the reply to the
//! client's close) goes into [`ReadSide`]'s buffer, and the writer sends it
//! ahead of its next frames.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// Control frames tungstenite may hold for the writer at most: a client
/// that keeps pinging without reading the pongs is cut off past this.
const MAX_CONTROL_BYTES: usize = 16 * 1024;
/// Buffers handed to one `writev`.
const MAX_SLICES: usize = 64;

type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// The reading half, as tungstenite sees it. Boxed: a connection's task
/// moves it through several states, and inline it would take room in each
/// (2.5 KiB more per idle connection).
pub(crate) type Reader = Box<WebSocketStream<ReadSide>>;

/// Splits an upgraded connection into its writer and its reader.
pub(crate) async fn open(upgraded: Upgraded, config: WebSocketConfig) -> (Writer, Reader) {
    let (read, write): (ReadHalf, WriteHalf) = match upgraded.downcast::<TokioIo<TcpStream>>() {
        // The TCP socket itself: halves that share no lock.
        Ok(parts) => {
            let (read, write) = parts.io.into_inner().into_split();
            if parts.read_buf.is_empty() {
                (Box::new(read), Box::new(write))
            } else {
                // Bytes the client sent right behind its upgrade request.
                (Box::new(AsyncReadExt::chain(io::Cursor::new(parts.read_buf), read)), Box::new(write))
            }
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            (Box::new(read), Box::new(write))
        }
    };
    let control = Arc::new(Mutex::new(Vec::new()));
    let read_side = ReadSide { read, control: control.clone() };
    let reader = Box::new(WebSocketStream::from_raw_socket(read_side, Role::Server, Some(config)).await);
    (Writer { write, control, unsent: VecDeque::new() }, reader)
}

/// The socket's read half; what tungstenite writes is kept for [`Writer`].
pub(crate) struct ReadSide {
    read: ReadHalf,
    control: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for ReadSide {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadSide {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        if control.len() + bytes.len() > MAX_CONTROL_BYTES {
            return Poll::Ready(Err(io::Error::other("control frames are not being read")));
        }
        control.extend_from_slice(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The socket's write half: frames in, bytes out.
pub(crate) struct Writer {
    write: WriteHalf,
    control: Arc<Mutex<Vec<u8>>>,
    /// Frames not yet written, in order. Whatever a write that was given
    /// up (its future dropped) left unsent goes first at the next write,
    /// so the stream stays whole.
    unsent: VecDeque<Chunk>,
}

/// Part of the byte stream: a frame's header (kept inline: no allocation
/// per frame) or bytes written as they are.
enum Chunk {
    Head { bytes: [u8; 10], start: u8, end: u8 },
    Bytes(Bytes),
}

impl Chunk {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Head { bytes, start, end } => &bytes[usize::from(*start)..usize::from(*end)],
            Self::Bytes(bytes) => bytes,
        }
    }

    /// Drops the first `count` bytes, fewer than it has.
    fn advance(&mut self, count: usize) {
        match self {
            // A header is at most 10 bytes.
            Self::Head { start, .. } => *start += count as u8,
            Self::Bytes(bytes) => bytes.advance(count),
        }
    }
}

/// Chunks a quiet connection keeps room for: a burst's larger queue is let go.
const KEPT_CHUNKS: usize = 8;

impl Writer {
    /// Whether tungstenite holds frames of its own to send.
    pub(crate) fn control_pending(&self) -> bool {
        !self.control.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Writes `frames` (after any control frames waiting) until the
    /// socket has taken all of them. Cancel-safe: what a dropped call did
    /// not write goes out first at the next call.
    pub(crate) async fn write(&mut self, frames: Vec<Message>) -> io::Result<()> {
        let control = std::mem::take(&mut *self.control.lock().unwrap_or_else(PoisonError::into_inner));
        if !control.is_empty() {
            self.unsent.push_back(Chunk::Bytes(control.into()));
        }
        let queued = self.unsent.len();
        for frame in frames {
            let Some((opcode, payload)) = parts(frame) else {
                self.unsent.truncate(queued);
                return Err(io::Error::other("raw frames are not written by the server"));
            };
            self.unsent.push_back(head(opcode, payload.len()));
            if !payload.is_empty() {
                self.unsent.push_back(Chunk::Bytes(payload));
            }
        }
        self.flush().await
    }

    /// Writes one frame.
    pub(crate) async fn send(&mut self, frame: Message) -> io::Result<()> {
        self.write(vec![frame]).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        while !self.unsent.is_empty() {
            // The slices are built on each poll, so they take no room in
            // the connection's task while it waits.
            let mut written = std::future::poll_fn(|cx| {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slot, chunk) in slices.iter_mut().zip(&self.unsent) {
                    *slot = IoSlice::new(chunk.as_slice());
                    count += 1;
                }
                Pin::new(&mut self.write).poll_write_vectored(cx, &slices[..count])
            })
            .await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            while let Some(chunk) = self.unsent.front_mut() {
                let len = chunk.as_slice().len();
                if written < len {
                    chunk.advance(written);
                    break;
                }
                written -= len;
                self.unsent.pop_front();
            }
        }
        if self.unsent.capacity() > KEPT_CHUNKS {
            self.unsent = VecDeque::new();
        }
        Ok(())
    }
}

/// A frame's opcode and payload; `None` for a raw frame.
fn parts(frame: Message) -> Option<(u8, Bytes)> {
    Some(match frame {
        Message::Text(text) => (0x1, text.into()),
        Message::Binary(bytes) => (0x2, bytes),
        Message::Close(close) => {
            let mut payload = BytesMut::new();
            if let Some(close) = close {
                payload.put_u16(u16::from(close.code));
                payload.put_slice(close.reason.as_bytes());
            }
            (0x8, payload.freeze())
        }
        Message::Ping(bytes) => (0x9, bytes),
        Message::Pong(bytes) => (0xA, bytes),
        Message::Frame(_) => return None,
    })
}

/// A final, unmasked frame's header (RFC 6455, 5.2).
fn head(opcode: u8, len: usize) -> Chunk {
    let mut bytes = [0; 10];
    bytes[0] = 0x80 | opcode;
    let end = match len {
        0..=125 => {
            bytes[1] = len as u8;
            2
        }
        126..=0xFFFF => {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    Chunk::Head { bytes, start: 0, end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    /// A writer on one end of a loopback TCP connection and a client
    /// reading it with tungstenite on the other.
    async fn pair() -> (Writer, WebSocketStream<TcpStream>) {
        // Small socket buffers: a large write has to wait for the reader.
        let listening = tokio::net::TcpSocket::new_v4().unwrap();
        listening.set_recv_buffer_size(64 << 10).unwrap();
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listening.listen(1).unwrap();
        let connecting = tokio::net::TcpSocket::new_v4().unwrap();
        connecting.set_send_buffer_size(64 << 10).unwrap();
        let server = connecting.connect(listener.local_addr().unwrap()).await.unwrap();
        let (client, _) = listener.accept().await.unwrap();
        let (_, write) = server.into_split();
        let writer = Writer { write: Box::new(write), control: Arc::default(), unsent: VecDeque::new() };
        (writer, WebSocketStream::from_raw_socket(client, Role::Client, None).await)
    }

    #[tokio::test]
    async fn frames_of_every_length_form_arrive_whole_and_in_order() {
        let (mut writer, mut client) = pair().await;
        // 125 and 126 straddle the one-byte length, 65,535 and 65,536 the
        // two-byte one; 4 MiB cannot leave in one write.
        let sizes = [0usize, 1, 125, 126, 65_535, 65_536, 4 << 20];
        let frames: Vec<Message> = sizes
            .iter()
            .enumerate()
            .map(|(index, &size)| {
                let body: Vec<u8> = (0..size).map(|byte| (byte % 251) as u8 ^ index as u8).collect();
                if index % 2 == 0 { Message::Binary(body.into()) } else { Message::Text("é".repeat(size / 2).into()) }
            })
            .collect();
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 8 {
                got.push(client.next().await.unwrap().unwrap());
            }
            got
        });
        writer.write(frames.clone()).await.unwrap();
        let close = CloseFrame { code: CloseCode::Policy, reason: "bye".into() };
        writer.send(Message::Close(Some(close.clone()))).await.unwrap();
        let got = reading.await.unwrap();
        assert_eq!(&got[..7], frames.as_slice());
        assert_eq!(got[7], Message::Close(Some(close)));
    }

    #[tokio::test]
    async fn a_write_given_up_half_way_is_finished_before_the_next_frame() {
        let (mut writer, mut client) = pair().await;
        // Far more than the sockets' buffers take while nobody reads.
        let big = Message::Binary(vec![7u8; 4 << 20].into());
        let given_up =
            tokio::time::timeout(std::time::Duration::from_millis(200), writer.write(vec![big.clone()])).await;
        assert!(given_up.is_err(), "the write should still be waiting for the reader");
        assert!(!writer.unsent.is_empty(), "part of the frame is left");
        let reading = tokio::spawn(async move { (client.next().await, client.next().await) });
        let close = CloseFrame { code: CloseCode::Away, reason: "slow".into() };
        writer.send(Message::Close(Some(close.clone()))).await.unwrap();
        let (first, second) = reading.await.unwrap();
        assert!(first.unwrap().unwrap() == big, "the big frame arrives whole");
        assert_eq!(second.unwrap().unwrap(), Message::Close(Some(close)));
    }

    #[tokio::test]
    async fn a_raw_frame_is_refused_without_writing_anything() {
        let (mut writer, _client) = pair().await;
        let raw = tokio_tungstenite::tungstenite::protocol::frame::Frame::ping(vec![1]);
        let error = writer.send(Message::Frame(raw)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Other);
        assert!(writer.unsent.is_empty());
    }

    #[tokio::test]
    async fn control_frames_queued_by_the_reader_go_out_first() {
        let (mut writer, mut client) = pair().await;
        let pong = [0x8A, 0x02, b'h', b'i'];
        writer.control.lock().unwrap().extend_from_slice(&pong);
        assert!(writer.control_pending());
        writer.send(Message::Text("after".into())).await.unwrap();
        assert!(!writer.control_pending());
        assert_eq!(client.next().await.unwrap().unwrap(), Message::Pong(b"hi".to_vec().into()));
        assert_eq!(client.next().await.unwrap().unwrap(), Message::Text("after".into()));
    }
}
