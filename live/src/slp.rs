//! Minecraft Java Edition "Server List Ping" client (1.7+ status protocol), for polling player counts.
//!
//! The exchange: handshake (next state 1) and status request in one write, then one status response frame whose
//! JSON gives `players.online` / `players.max`. We close after the status and never send the optional ping.
//! Every read is bounded: a frame longer than [`FRAME_LEN_MAX_BYTES`] is refused before it is buffered, and the
//! whole exchange runs under one timeout. VarInt and frame codecs are pure functions over byte slices so the
//! test responder shares them and most tests need no socket.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest accepted frame (packet id + data). The status JSON is at most 32767 UTF-16 units, which is at most
/// 98,301 bytes of UTF-8 plus a 3-byte length prefix, so 100 KiB admits every legal reply.
pub const FRAME_LEN_MAX_BYTES: usize = 100 * 1024;
/// A 32-bit VarInt takes at most 5 bytes.
pub const VARINT_LEN_MAX_BYTES: usize = 5;
/// The server address field of the handshake holds at most 255 characters.
pub const HOST_LEN_MAX: usize = 255;
/// Protocol version sent when only pinging.
pub const PROTOCOL_VERSION_PING: i32 = -1;

const PACKET_HANDSHAKE: i32 = 0x00;
const PACKET_STATUS: i32 = 0x00;
const NEXT_STATE_STATUS: i32 = 1;
const READ_CHUNK_BYTES: usize = 4096;

/// What a server reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub online: u32,
    pub max: u32,
    /// `version.name`: free text ("1.21.4", "Velocity 3.x", ...).
    pub version: String,
    /// `version.protocol`, when present and an int.
    pub protocol: Option<i32>,
    /// The description flattened to plain text, `§` formatting codes removed.
    pub motd: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SlpError {
    #[error("ping timed out after {after_ms} ms")]
    Timeout { after_ms: u64 },
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    #[error("i/o error: {0}")]
    Io(#[source] std::io::Error),
    #[error("connection closed before a full status response ({got_bytes} bytes received)")]
    Closed { got_bytes: usize },
    #[error("VarInt longer than {VARINT_LEN_MAX_BYTES} bytes")]
    VarIntTooLong,
    #[error("frame of {len} bytes exceeds the {max} byte limit")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame length {0} is invalid")]
    BadFrameLength(i32),
    #[error("unexpected packet id {0:#04x}")]
    UnexpectedPacket(i32),
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("status JSON is invalid: {0}")]
    InvalidJson(String),
    #[error("status JSON lacks a valid {0}")]
    MissingField(&'static str),
    #[error("server address longer than {HOST_LEN_MAX} characters")]
    HostTooLong,
}

/// One decoded frame: packet id and the data after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: i32,
    pub data: Vec<u8>,
}

/// Options for [`ping_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingOptions {
    /// Server Address sent in the handshake (routers such as mc-router choose the backend by it).
    pub host: String,
    /// Protocol version in the handshake; `-1` by convention, a real one (767, 769) for picky servers.
    pub protocol_version: i32,
    pub connect_timeout: Duration,
    /// Bound on the whole exchange, connect included.
    pub total_timeout: Duration,
}

impl PingOptions {
    /// Defaults for `addr`: its IP as the handshake address, version -1, the given overall timeout, and a
    /// connect timeout of at most 3 s.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        PingOptions {
            host: addr.ip().to_string(),
            protocol_version: PROTOCOL_VERSION_PING,
            connect_timeout: timeout.min(Duration::from_secs(3)),
            total_timeout: timeout,
        }
    }
}

/// Pings `addr` and returns its status, all within `timeout`.
pub async fn ping(addr: SocketAddr, timeout: Duration) -> Result<Status, SlpError> {
    ping_with(addr, &PingOptions::new(addr, timeout)).await
}

/// Pings `addr` with explicit options.
pub async fn ping_with(addr: SocketAddr, opts: &PingOptions) -> Result<Status, SlpError> {
    let request = status_request_bytes(&opts.host, addr.port(), opts.protocol_version)?;
    let exchange = async {
        let mut stream = match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(SlpError::Connect(e)),
            Err(_) => return Err(SlpError::Timeout { after_ms: ms(opts.connect_timeout) }),
        };
        stream.write_all(&request).await.map_err(SlpError::Io)?;
        let frame = read_frame(&mut stream, FRAME_LEN_MAX_BYTES).await?;
        if frame.id != PACKET_STATUS {
            return Err(SlpError::UnexpectedPacket(frame.id));
        }
        parse_status_data(&frame.data)
    };
    match tokio::time::timeout(opts.total_timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(SlpError::Timeout { after_ms: ms(opts.total_timeout) }),
    }
}

/// The bytes a client sends: handshake (next state 1) followed by the status request.
pub fn status_request_bytes(host: &str, port: u16, protocol_version: i32) -> Result<Vec<u8>, SlpError> {
    if host.chars().count() > HOST_LEN_MAX {
        return Err(SlpError::HostTooLong);
    }
    let mut body = Vec::with_capacity(host.len() + 16);
    encode_varint(protocol_version, &mut body);
    encode_string(host, &mut body);
    body.extend_from_slice(&port.to_be_bytes());
    encode_varint(NEXT_STATE_STATUS, &mut body);
    let mut out = encode_frame(PACKET_HANDSHAKE, &body);
    out.extend_from_slice(&encode_frame(PACKET_STATUS, &[]));
    Ok(out)
}

/// Appends `value` as a VarInt (LEB128 over the two's-complement bits; negatives take 5 bytes).
pub fn encode_varint(value: i32, out: &mut Vec<u8>) {
    let mut v = value as u32; // Reinterpret the bits: negatives are encoded as their two's complement.
    loop {
        if v & !0x7f == 0 {
            out.push(v as u8);
            return;
        }
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
}

/// Decodes a VarInt at the start of `buf`: `Ok(None)` if more bytes are needed, else the value and its length.
pub fn decode_varint(buf: &[u8]) -> Result<Option<(i32, usize)>, SlpError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().enumerate() {
        if i == VARINT_LEN_MAX_BYTES {
            return Err(SlpError::VarIntTooLong);
        }
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value as i32, i + 1)));
        }
    }
    if buf.len() >= VARINT_LEN_MAX_BYTES {
        return Err(SlpError::VarIntTooLong);
    }
    Ok(None)
}

/// Appends a protocol String: VarInt byte length, then UTF-8.
pub fn encode_string(s: &str, out: &mut Vec<u8>) {
    // Callers bound their strings far below i32::MAX (host ≤ 255 chars, JSON ≤ a frame).
    encode_varint(i32::try_from(s.len()).unwrap_or(i32::MAX), out);
    out.extend_from_slice(s.as_bytes());
}

/// `Length | Packet ID | Data`, Length counting the id and the data.
pub fn encode_frame(packet_id: i32, data: &[u8]) -> Vec<u8> {
    let mut id = Vec::with_capacity(VARINT_LEN_MAX_BYTES);
    encode_varint(packet_id, &mut id);
    let mut out = Vec::with_capacity(data.len() + id.len() + VARINT_LEN_MAX_BYTES);
    encode_varint(i32::try_from(id.len() + data.len()).unwrap_or(i32::MAX), &mut out);
    out.extend_from_slice(&id);
    out.extend_from_slice(data);
    out
}

/// Decodes one frame from the start of `buf`: `Ok(None)` until it has fully arrived, else the frame and the
/// bytes it used. A declared length above `len_max` fails at once, before any of it is buffered.
pub fn decode_frame(buf: &[u8], len_max: usize) -> Result<Option<(Frame, usize)>, SlpError> {
    let Some((len, prefix)) = decode_varint(buf)? else { return Ok(None) };
    let len = usize::try_from(len).map_err(|_| SlpError::BadFrameLength(len))?;
    if len == 0 {
        return Err(SlpError::BadFrameLength(0));
    }
    if len > len_max {
        return Err(SlpError::FrameTooLarge { len, max: len_max });
    }
    let Some(body) = buf.get(prefix..prefix + len) else { return Ok(None) };
    let Some((id, id_len)) = decode_varint(body)? else { return Err(SlpError::Malformed("packet id cut off")) };
    Ok(Some((Frame { id, data: body[id_len..].to_vec() }, prefix + len)))
}

/// Reads a protocol String from the start of `data`: the string and the bytes used.
pub fn decode_string(data: &[u8]) -> Result<(String, usize), SlpError> {
    let Some((len, prefix)) = decode_varint(data)? else { return Err(SlpError::Malformed("string length cut off")) };
    let len = usize::try_from(len).map_err(|_| SlpError::Malformed("negative string length"))?;
    let bytes = data.get(prefix..prefix + len).ok_or(SlpError::Malformed("string longer than its packet"))?;
    let s = std::str::from_utf8(bytes).map_err(|_| SlpError::Malformed("string is not UTF-8"))?;
    Ok((s.to_string(), prefix + len))
}

/// Parses a Status Response's data (one String of JSON).
pub fn parse_status_data(data: &[u8]) -> Result<Status, SlpError> {
    let (json, _) = decode_string(data)?;
    parse_status_json(&json)
}

/// Parses the status JSON defensively: missing or non-integer `players.online`/`players.max` is an error,
/// never "0 players". Unknown keys are ignored.
pub fn parse_status_json(json: &str) -> Result<Status, SlpError> {
    let root: Value = serde_json::from_str(json).map_err(|e| SlpError::InvalidJson(e.to_string()))?;
    let players = root.get("players").ok_or(SlpError::MissingField("players"))?;
    let count = |key: &'static str| {
        players.get(key).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).ok_or(SlpError::MissingField(key))
    };
    let online = count("online")?;
    let max = count("max")?;
    let version = root.get("version");
    let mut motd = String::new();
    if let Some(description) = root.get("description") {
        flatten_chat(description, &mut motd);
    }
    Ok(Status {
        online,
        max,
        version: version.and_then(|v| v.get("name")).and_then(Value::as_str).unwrap_or_default().to_string(),
        protocol: version.and_then(|v| v.get("protocol")).and_then(Value::as_i64).and_then(|p| i32::try_from(p).ok()),
        motd: strip_formatting(&motd),
    })
}

/// Reads until one whole frame is buffered. The buffer never grows past one maximal frame plus one read.
async fn read_frame(stream: &mut TcpStream, len_max: usize) -> Result<Frame, SlpError> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    loop {
        if let Some((frame, _used)) = decode_frame(&buf, len_max)? {
            return Ok(frame);
        }
        let n = stream.read(&mut chunk).await.map_err(SlpError::Io)?;
        if n == 0 {
            return Err(SlpError::Closed { got_bytes: buf.len() });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A chat component as plain text: a string, an object with `text` and `extra`, or an array of components.
fn flatten_chat(component: &Value, out: &mut String) {
    match component {
        Value::String(s) => out.push_str(s),
        Value::Array(parts) => parts.iter().for_each(|p| flatten_chat(p, out)),
        Value::Object(map) => {
            if let Some(Value::String(text)) = map.get("text") {
                out.push_str(text);
            }
            if let Some(Value::Array(extra)) = map.get("extra") {
                extra.iter().for_each(|p| flatten_chat(p, out));
            }
        }
        _ => {}
    }
}

/// Removes `§x` formatting codes.
fn strip_formatting(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '§' {
            chars.next();
        } else {
            out.push(c);
        }
    }
    out
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn varint_table_from_the_reference() {
        let table: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (255, &[0xff, 0x01]),
            (25565, &[0xdd, 0xc7, 0x01]),
            (2097151, &[0xff, 0xff, 0x7f]),
            (2147483647, &[0xff, 0xff, 0xff, 0xff, 0x07]),
            (-1, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            (-2147483648, &[0x80, 0x80, 0x80, 0x80, 0x08]),
        ];
        for &(value, bytes) in table {
            let mut out = Vec::new();
            encode_varint(value, &mut out);
            assert_eq!(out, bytes, "encode {value}");
            assert_eq!(decode_varint(bytes).ok().flatten(), Some((value, bytes.len())), "decode {value}");
            // Every strict prefix is "need more".
            for cut in 0..bytes.len() {
                assert!(matches!(decode_varint(&bytes[..cut]), Ok(None)), "prefix {cut} of {value}");
            }
        }
    }

    #[test]
    fn varint_rejects_a_sixth_byte() {
        assert!(matches!(decode_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Err(SlpError::VarIntTooLong)));
        assert!(matches!(decode_varint(&[0x80, 0x80, 0x80, 0x80, 0x80]), Err(SlpError::VarIntTooLong)));
    }

    #[test]
    fn handshake_bytes_match_the_reference() {
        let bytes = status_request_bytes("localhost", 25565, -1).ok();
        let expected: Vec<u8> = vec![
            0x13, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x09, b'l', b'o', b'c', b'a', b'l', b'h', b'o', b's', b't', 0x63,
            0xdd, 0x01, 0x01, 0x00,
        ];
        assert_eq!(bytes, Some(expected));
        assert!(matches!(status_request_bytes(&"a".repeat(256), 1, -1), Err(SlpError::HostTooLong)));
    }

    #[test]
    fn frames_split_and_merged() {
        let mut stream = encode_frame(0x00, b"hello");
        stream.extend_from_slice(&encode_frame(0x01, &[1, 2, 3, 4, 5, 6, 7, 8]));
        for cut in 0..7 {
            assert!(matches!(decode_frame(&stream[..cut], 100), Ok(None)), "cut {cut}");
        }
        let Ok(Some((first, used))) = decode_frame(&stream, 100) else { panic!("first frame") };
        assert_eq!(first, Frame { id: 0, data: b"hello".to_vec() });
        let Ok(Some((second, used2))) = decode_frame(&stream[used..], 100) else { panic!("second frame") };
        assert_eq!(second.id, 1);
        assert_eq!(used + used2, stream.len());
    }

    #[test]
    fn frame_limits() {
        // Declared length over the cap fails before the body arrives.
        let mut huge = Vec::new();
        encode_varint(2_000_000, &mut huge);
        assert!(matches!(decode_frame(&huge, FRAME_LEN_MAX_BYTES), Err(SlpError::FrameTooLarge { .. })));
        assert!(matches!(decode_frame(&[0x00], 10), Err(SlpError::BadFrameLength(0))));
        assert!(matches!(decode_frame(&[0xff, 0xff, 0xff, 0xff, 0x0f], 10), Err(SlpError::BadFrameLength(-1))));
    }

    #[test]
    fn status_json_parsing() {
        let full = r#"{"version":{"name":"1.21.4","protocol":769},
            "players":{"max":20,"online":2,"sample":[{"name":"Alex","id":"x"}]},
            "description":{"text":"A §aMinecraft","extra":[{"text":" Server"},"!"]},
            "favicon":"data:image/png;base64,AAAA","enforcesSecureChat":false,"forgeData":{}}"#;
        let status = parse_status_json(full).ok();
        let expected = Status {
            online: 2,
            max: 20,
            version: "1.21.4".into(),
            protocol: Some(769),
            motd: "A Minecraft Server!".into(),
        };
        assert_eq!(status, Some(expected));
        let plain = parse_status_json(r#"{"players":{"max":5,"online":0},"description":"§lHi"}"#).ok();
        assert_eq!(plain.map(|s| (s.online, s.max, s.motd, s.version)), Some((0, 5, "Hi".into(), String::new())));
        let failures = [
            ("not json", "{"),
            ("no players", r#"{"version":{"name":"x"}}"#),
            ("online missing", r#"{"players":{"max":5}}"#),
            ("online a string", r#"{"players":{"max":5,"online":"3"}}"#),
            ("online negative", r#"{"players":{"max":5,"online":-3}}"#),
            ("online a float", r#"{"players":{"max":5,"online":1.5}}"#),
            ("online too big", r#"{"players":{"max":5,"online":5000000000}}"#),
        ];
        for (name, json) in failures {
            assert!(parse_status_json(json).is_err(), "{name} parsed");
        }
    }

    #[test]
    fn string_decoding_is_bounded_by_the_packet() {
        assert!(matches!(decode_string(&[0x05, b'a']), Err(SlpError::Malformed(_))));
        assert!(matches!(decode_string(&[0x02, 0xff, 0xfe]), Err(SlpError::Malformed(_))));
        assert_eq!(decode_string(&[0x02, b'o', b'k', 9]).ok(), Some(("ok".to_string(), 3)));
    }

    /// How the fake server misbehaves.
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        None,
        NeverAnswer,
        CloseAfterHandshake,
        Truncated,
        Oversized,
        SixByteVarInt,
        InvalidJson,
        NoPlayers,
        Dribble,
        StringDescription,
        WrongPacket,
        HugeButAllowedThenMore,
    }

    const GOOD_JSON: &str = r#"{"version":{"name":"1.21.4","protocol":769},"players":{"max":20,"online":7},
        "description":{"text":"Fake"}}"#;

    /// A one-connection SLP responder on an ephemeral loopback port. It checks the client's handshake with the
    /// same frame decoder the client uses, then answers according to `fault`.
    async fn fake_server(fault: Fault) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback (test setup)");
        let addr = listener.local_addr().expect("local addr (test setup)");
        tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 512];
            // Read the handshake and the status request.
            let mut frames = Vec::new();
            while frames.len() < 2 {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                while let Ok(Some((frame, used))) = decode_frame(&buf, 1024) {
                    frames.push(frame);
                    buf.drain(..used);
                }
            }
            let handshake = &frames[0];
            assert_eq!(handshake.id, 0);
            // version -1 (5 bytes), then the address string, port, next state 1 at the end.
            assert_eq!(handshake.data.last(), Some(&1u8), "next state must be status");
            assert_eq!(frames[1], Frame { id: 0, data: vec![] });
            let mut status = Vec::new();
            let reply = match fault {
                Fault::None => {
                    encode_string(GOOD_JSON, &mut status);
                    encode_frame(0, &status)
                }
                Fault::NeverAnswer => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                Fault::CloseAfterHandshake => return,
                Fault::Truncated => {
                    encode_string(GOOD_JSON, &mut status);
                    let full = encode_frame(0, &status);
                    full[..full.len() / 2].to_vec()
                }
                Fault::Oversized => {
                    let mut b = Vec::new();
                    encode_varint(2_000_000, &mut b);
                    b.extend(std::iter::repeat_n(b'x', 64 * 1024));
                    b
                }
                Fault::SixByteVarInt => vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00],
                Fault::InvalidJson => {
                    encode_string("{\"players\": ", &mut status);
                    encode_frame(0, &status)
                }
                Fault::NoPlayers => {
                    encode_string(r#"{"version":{"name":"x","protocol":1}}"#, &mut status);
                    encode_frame(0, &status)
                }
                Fault::Dribble => {
                    encode_string(GOOD_JSON, &mut status);
                    for byte in encode_frame(0, &status) {
                        if sock.write_all(&[byte]).await.is_err() {
                            return;
                        }
                        let _ = sock.flush().await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    return;
                }
                Fault::StringDescription => {
                    encode_string(r#"{"players":{"max":10,"online":3},"description":"§6Plain motd"}"#, &mut status);
                    encode_frame(0, &status)
                }
                Fault::WrongPacket => {
                    encode_string(GOOD_JSON, &mut status);
                    encode_frame(0x05, &status)
                }
                Fault::HugeButAllowedThenMore => {
                    // A legal, large reply (a favicon of ~90 KB) split over many writes.
                    let favicon = "A".repeat(90 * 1024);
                    let json = format!(r#"{{"players":{{"max":1,"online":1}},"favicon":"{favicon}"}}"#);
                    encode_string(&json, &mut status);
                    encode_frame(0, &status)
                }
            };
            let _ = sock.write_all(&reply).await;
            let _ = sock.shutdown().await;
        });
        addr
    }

    async fn ping_fake(fault: Fault) -> Result<Status, SlpError> {
        let addr = fake_server(fault).await;
        ping(addr, Duration::from_secs(2)).await
    }

    #[tokio::test]
    async fn ping_healthy_server() {
        let status = ping_fake(Fault::None).await.ok();
        assert_eq!(status.map(|s| (s.online, s.max, s.version, s.motd)), Some((7, 20, "1.21.4".into(), "Fake".into())));
    }

    #[tokio::test]
    async fn ping_dribbled_and_large_replies() {
        assert_eq!(ping_fake(Fault::Dribble).await.ok().map(|s| s.online), Some(7));
        assert_eq!(ping_fake(Fault::HugeButAllowedThenMore).await.ok().map(|s| s.online), Some(1));
        assert_eq!(
            ping_fake(Fault::StringDescription).await.ok().map(|s| (s.online, s.motd)),
            Some((3, "Plain motd".into()))
        );
    }

    #[tokio::test]
    async fn ping_failures_are_errors_not_zero_players() {
        let started = std::time::Instant::now();
        assert!(matches!(ping_fake(Fault::NeverAnswer).await, Err(SlpError::Timeout { .. })));
        assert!(started.elapsed() < Duration::from_secs(5), "timeout must bound the exchange");
        assert!(matches!(ping_fake(Fault::CloseAfterHandshake).await, Err(SlpError::Closed { got_bytes: 0 })));
        assert!(matches!(ping_fake(Fault::Truncated).await, Err(SlpError::Closed { .. })));
        assert!(matches!(ping_fake(Fault::Oversized).await, Err(SlpError::FrameTooLarge { .. })));
        assert!(matches!(ping_fake(Fault::SixByteVarInt).await, Err(SlpError::VarIntTooLong)));
        assert!(matches!(ping_fake(Fault::InvalidJson).await, Err(SlpError::InvalidJson(_))));
        assert!(matches!(ping_fake(Fault::NoPlayers).await, Err(SlpError::MissingField("players"))));
        assert!(matches!(ping_fake(Fault::WrongPacket).await, Err(SlpError::UnexpectedPacket(5))));
    }

    #[tokio::test]
    async fn ping_refused_port() {
        // Bind then drop to get a port that is (almost certainly) closed.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback (test setup)");
        let addr = listener.local_addr().expect("local addr (test setup)");
        drop(listener);
        assert!(matches!(ping(addr, Duration::from_secs(2)).await, Err(SlpError::Connect(_))));
    }
}
