//! The guest's standard streams, in memory: stdout and stderr captured under
//! one cap, and a stdin the host can refill between test cases.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// Which standard stream an [`OutputStreamHandle`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Stdout,
    Stderr,
}

/// stdout and stderr of one run, in memory, with one cap on both together.
/// A write past the cap keeps what fits, records the overflow and traps the
/// guest.
#[derive(Clone)]
pub(crate) struct Output {
    shared: Arc<Mutex<OutputBuffers>>,
}

struct OutputBuffers {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl OutputBuffers {
    fn remaining(&self) -> usize {
        self.cap.saturating_sub(self.stdout.len() + self.stderr.len())
    }

    /// Appends what fits of `bytes`; false when not all of it did.
    fn append(&mut self, channel: Channel, bytes: &[u8]) -> bool {
        let fits = bytes.len().min(self.remaining());
        let buffer = match channel {
            Channel::Stdout => &mut self.stdout,
            Channel::Stderr => &mut self.stderr,
        };
        buffer.extend_from_slice(&bytes[..fits]);
        if fits < bytes.len() {
            self.overflowed = true;
        }
        !self.overflowed
    }
}

impl Output {
    pub(crate) fn new(cap: usize) -> Output {
        Output {
            shared: Arc::new(Mutex::new(OutputBuffers {
                stdout: Vec::new(),
                stderr: Vec::new(),
                cap,
                overflowed: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutputBuffers> {
        // A panic while holding the lock leaves whole appends only.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stream(&self, channel: Channel) -> OutputStreamHandle {
        OutputStreamHandle {
            output: self.clone(),
            channel,
        }
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Takes what was written so far and empties both buffers, so the cap
    /// starts afresh (one test case's output ends, the next one's begins).
    /// The overflow flag stays until [`Output::reset`].
    pub(crate) fn take(&self) -> (Vec<u8>, Vec<u8>) {
        let mut buffers = self.lock();
        (
            std::mem::take(&mut buffers.stdout),
            std::mem::take(&mut buffers.stderr),
        )
    }

    /// Empties both buffers and clears the overflow flag.
    pub(crate) fn reset(&self) {
        let mut buffers = self.lock();
        buffers.stdout.clear();
        buffers.stderr.clear();
        buffers.overflowed = false;
    }
}

/// One of the two guest streams of an [`Output`].
#[derive(Clone)]
pub(crate) struct OutputStreamHandle {
    output: Output,
    channel: Channel,
}

fn output_limit_trap() -> StreamError {
    StreamError::Trap(wasmtime::format_err!("output limit reached"))
}

impl IsTerminal for OutputStreamHandle {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputStreamHandle {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputStreamHandle {
    async fn ready(&mut self) {}
}

impl OutputStream for OutputStreamHandle {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.output.lock().append(self.channel, &bytes) {
            Ok(())
        } else {
            Err(output_limit_trap())
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let mut buffers = self.output.lock();
        match buffers.remaining() {
            0 => {
                // The guest wants to write and there is no room left.
                buffers.overflowed = true;
                Err(output_limit_trap())
            }
            room => Ok(room),
        }
    }
}

impl tokio::io::AsyncWrite for OutputStreamHandle {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.output.lock().append(self.channel, buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(std::io::Error::other("output limit reached")))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The guest's stdin: bytes the host can replace at any time (with the next
/// test case's input). Reading past the end is end-of-file, and a later
/// [`StdinPipe::refill`] makes data readable again.
#[derive(Clone)]
pub(crate) struct StdinPipe {
    buffer: Arc<Mutex<Bytes>>,
}

impl StdinPipe {
    pub(crate) fn new(bytes: impl Into<Bytes>) -> StdinPipe {
        StdinPipe {
            buffer: Arc::new(Mutex::new(bytes.into())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Bytes> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces whatever is left unread with `bytes`.
    pub(crate) fn refill(&self, bytes: impl Into<Bytes>) {
        *self.lock() = bytes.into();
    }
}

impl IsTerminal for StdinPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for StdinPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StdinPipe {
    async fn ready(&mut self) {}
}

impl InputStream for StdinPipe {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let mut buffer = self.lock();
        if buffer.is_empty() {
            return Err(StreamError::Closed);
        }
        let size = size.min(buffer.len());
        Ok(buffer.split_to(size))
    }
}

impl tokio::io::AsyncRead for StdinPipe {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut buffer = self.lock();
        let size = buf.remaining().min(buffer.len());
        buf.put_slice(&buffer.split_to(size));
        Poll::Ready(Ok(()))
    }
}
