//! Fuzz properties of the client's reading of an egress proxy's `CONNECT` reply (`read_head`,
//! `Reply::parse`), with the reply delivered in chunks the input chooses.
//!
//! - No panic, whatever the bytes and however they are split.
//! - A head that is read is exactly the bytes before the first blank line (`\r\n\r\n`), and at
//!   most 16 KiB (the documented limit).
//! - A parsed reply has a status line `HTTP/1.0` or `HTTP/1.1` followed by exactly three
//!   digits, and the status is their value.
//! - For a 2xx reply (a tunnel), no byte past the head has been read and dropped: bytes the
//!   proxy sent after a success reply are refused, never silently lost.
//! - Header lookup is by lowercase name and returns the first occurrence, trimmed.
#![allow(dead_code)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use hookwarden_egress::fuzzing::{
    connect_reply_header, parse_connect_reply, read_connect_reply_head,
};
use tokio::io::{AsyncRead, ReadBuf};

use super::input::Input;

const MAX_REPLY_HEAD: usize = 16 * 1024;

/// A reader that hands out the stream in the given chunks, then EOF.
struct Chunks<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
    /// Bytes handed out so far.
    pos: usize,
}

impl AsyncRead for Chunks<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let size = if me.sizes.is_empty() {
            usize::MAX
        } else {
            me.sizes[me.next % me.sizes.len()]
        };
        me.next += 1;
        let n = size.min(buf.remaining()).min(me.data.len() - me.pos);
        buf.put_slice(&me.data[me.pos..me.pos + n]);
        me.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// The fuzz entry point.
pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let sizes: Vec<usize> = (0..input.u8() % 6)
        .map(|_| match input.u8() {
            0 => 4096,
            n => usize::from(n),
        })
        .collect();
    let stream = input.rest();

    // The head parser alone, on the stream as one head.
    check_parse(stream);

    let mut reader = Chunks {
        data: stream,
        sizes,
        next: 0,
        pos: 0,
    };
    let result = {
        let fut = read_connect_reply_head(&mut reader);
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("read_head waited on a reader that never blocks"),
        }
    };
    let end = stream.windows(4).position(|w| w == b"\r\n\r\n");
    match result {
        Ok(head) => {
            let end = end.expect("a head was returned without a blank line");
            assert_eq!(
                head,
                &stream[..end],
                "head is not the bytes before the blank line"
            );
            assert!(
                head.len() <= MAX_REPLY_HEAD,
                "a {}-byte head was accepted (limit {MAX_REPLY_HEAD})",
                head.len()
            );
            if let Some((status, _)) = parse_connect_reply(&head)
                && (200..300).contains(&status)
            {
                assert_eq!(
                    reader.pos,
                    end + 4,
                    "2xx reply: {} byte(s) after the head were read and dropped",
                    reader.pos - end - 4
                );
            }
            check_parse(&head);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn check_parse(head: &[u8]) {
    let Some((status, headers)) = parse_connect_reply(head) else {
        return;
    };
    let text = std::str::from_utf8(head).expect("a parsed head is UTF-8");
    let line = text.split("\r\n").next().unwrap_or("");
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    assert!(
        version == "HTTP/1.1" || version == "HTTP/1.0",
        "status line {line:?} accepted"
    );
    assert!(
        code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()),
        "status {code:?} in {line:?} accepted as {status}"
    );
    assert_eq!(code.parse::<u16>().ok(), Some(status));
    for (name, value) in &headers {
        assert_eq!(*name, name.to_ascii_lowercase());
        assert_eq!(value.trim(), value);
        let first = headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone());
        assert_eq!(connect_reply_header(head, name), first, "{name}");
    }
}
