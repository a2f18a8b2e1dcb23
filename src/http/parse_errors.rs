//! The JSON body of the answers hyper writes itself, before any routing, to a request it cannot parse: `400` (a
//! request line or header that does not parse), `414` (URI too long) and `431` (header too large or too many
//! fields).
//!
//! hyper writes those answers with an empty body and offers no hook to change them, so the connection's writes go
//! through [`ParseErrorBodies`], which recognises such an answer and adds the documented
//! `{"error_code": ..., "message": ...}`. hyper writes it last on the connection, right before flushing and closing,
//! as a head with `content-length: 0`; the API itself never answers these statuses without a body, and its bodies
//! (JSON, metrics text) never hold a raw CR LF CR LF, so the last head in what is about to be sent is hyper's
//! own answer exactly when it ends the buffer with one of these statuses and no body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use hyper::rt::{Read, ReadBufCursor, Write};

use super::api::ApiError;

/// Bytes buffered before a write goes on to the socket without waiting for hyper's flush, so a large answer (the
/// metrics) is not held whole twice.
const BUFFER_LIMIT: usize = 64 * 1024;

/// A connection whose writes are held until hyper flushes them, so that hyper's own error answer, always the last
/// thing written before a flush, can get its JSON body first. Reads pass straight through.
pub(super) struct ParseErrorBodies<I> {
    io: I,
    pending: Vec<u8>,
    sent: usize,
}

impl<I> ParseErrorBodies<I> {
    pub(super) fn new(io: I) -> Self {
        ParseErrorBodies {
            io,
            pending: Vec::new(),
            sent: 0,
        }
    }
}

impl<I: Write + Unpin> ParseErrorBodies<I> {
    /// Sends everything held, hyper's error answer given its body first.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(start) = automatic_answer(&self.pending[self.sent..]) {
            let start = self.sent + start;
            let with_body = with_json_body(&self.pending[start..]);
            self.pending.truncate(start);
            self.pending.extend_from_slice(&with_body);
        }
        while self.sent < self.pending.len() {
            let written = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.sent..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += written;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<I: Read + Unpin> Read for ParseErrorBodies<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: Write + Unpin> Write for ParseErrorBodies<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.len() >= BUFFER_LIMIT {
            ready!(this.poll_drain(cx))?;
        }
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Where hyper's own error answer starts in `pending`, if `pending` ends with one: the last response head, ending
/// the buffer, with status 400, 414 or 431 and `content-length: 0`.
fn automatic_answer(pending: &[u8]) -> Option<usize> {
    if !pending.ends_with(b"\r\n\r\n") {
        return None;
    }
    let start = memchr::memmem::rfind(pending, b"HTTP/1.1 ")?;
    let head = pending.get(start..)?;
    let status = head.get(9..13)?;
    let ours = matches!(status, b"400 " | b"414 " | b"431 ");
    let one_head = memchr::memmem::find(head, b"\r\n\r\n") == Some(head.len() - 4);
    let empty = head
        .split(|&b| b == b'\n')
        .any(|line| line.eq_ignore_ascii_case(b"content-length: 0\r"));
    (ours && one_head && empty).then_some(start)
}

/// hyper's `answer` (a head with `content-length: 0`) with the API's JSON error body.
fn with_json_body(answer: &[u8]) -> Vec<u8> {
    let status = answer
        .get(9..12)
        .and_then(|code| StatusCode::from_bytes(code).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    let message = match status {
        StatusCode::URI_TOO_LONG => "request URI too long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "request header too large or with too many fields",
        _ => "malformed request: its request line or a header does not parse",
    };
    let body = ApiError::new(status, message).body().to_string();
    let mut with_body = Vec::with_capacity(answer.len() + body.len() + 64);
    for line in answer.split_inclusive(|&b| b == b'\n') {
        if line.eq_ignore_ascii_case(b"content-length: 0\r\n") {
            with_body.extend_from_slice(b"content-type: application/json\r\n");
            with_body.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        } else {
            with_body.extend_from_slice(line);
        }
    }
    with_body.extend_from_slice(body.as_bytes());
    with_body
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPERS_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 07:39:34 GMT\r\n\r\n";

    #[test]
    fn hypers_own_answer_is_found_at_the_end_and_only_there() {
        assert_eq!(automatic_answer(HYPERS_400), Some(0));
        let after_an_answer = [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}"[..],
            HYPERS_400,
        ]
        .concat();
        assert_eq!(
            automatic_answer(&after_an_answer),
            Some(after_an_answer.len() - HYPERS_400.len())
        );
        // The API's own 400 has a body; a 404 without one, a 100 Continue, or an answer cut short are left alone.
        let api_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let empty_404 = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        for untouched in [
            &api_400[..],
            empty_404,
            b"HTTP/1.1 100 Continue\r\n\r\n",
            &HYPERS_400[..40],
            b"",
        ] {
            assert_eq!(
                automatic_answer(untouched),
                None,
                "{:?}",
                String::from_utf8_lossy(untouched)
            );
        }
    }

    #[test]
    fn the_answer_gets_the_documented_body() {
        let answer = String::from_utf8(with_json_body(HYPERS_400)).expect("text");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        assert!(
            head.starts_with("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error_code"], 400);
    }
}
