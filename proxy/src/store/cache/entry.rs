//! A cached answer and its binary Redis format.

use bytes::Bytes;

/// A complete 2xx response as the client received it. For a stream, `body` is
/// the exact SSE bytes sent, replayed as-is on a hit.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
    pub stream: bool,
    /// The upstream that produced the original answer.
    pub upstream: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Start of every encoded entry; bumping the digit retires old entries as misses.
const ENTRY_MAGIC: &[u8; 4] = b"SYC1";
const FLAG_STREAM: u8 = 1;

/// Why a stored entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt cache entry: {0}")]
pub struct CorruptEntry(&'static str);

impl CachedResponse {
    /// The Redis value format, all integers big-endian:
    ///
    /// ```text
    /// "SYC1"                      4 bytes, magic and format version
    /// status                      u16
    /// flags                       u8, bit 0 = stream, other bits zero
    /// prompt_tokens               u64
    /// completion_tokens           u64
    /// content_type length, bytes  u64 + UTF-8
    /// upstream length, bytes      u64 + UTF-8
    /// body length, bytes          u64 + raw bytes, which end the value
    /// ```
    ///
    /// Binary rather than JSON so an SSE or JSON body is stored verbatim,
    /// without escaping or base64.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            ENTRY_MAGIC.len()
                + 2
                + 1
                + 8 * 5
                + self.content_type.len()
                + self.upstream.len()
                + self.body.len(),
        );
        out.extend_from_slice(ENTRY_MAGIC);
        out.extend_from_slice(&self.status.to_be_bytes());
        out.push(if self.stream { FLAG_STREAM } else { 0 });
        out.extend_from_slice(&self.prompt_tokens.to_be_bytes());
        out.extend_from_slice(&self.completion_tokens.to_be_bytes());
        for field in [
            self.content_type.as_bytes(),
            self.upstream.as_bytes(),
            &self.body,
        ] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// Parses [`encode`](Self::encode)'s format. Anything else (truncated,
    /// trailing bytes, another version, an impossible status) is rejected so
    /// that the caller treats it as a miss; the body is sliced, not copied.
    pub fn decode(bytes: Bytes) -> Result<CachedResponse, CorruptEntry> {
        let mut reader = EntryReader { bytes, at: 0 };
        if reader.take(ENTRY_MAGIC.len())? != ENTRY_MAGIC[..] {
            return Err(CorruptEntry("unknown format"));
        }
        let status = u16::from_be_bytes(reader.array()?);
        if !(100..=999).contains(&status) {
            return Err(CorruptEntry("invalid status"));
        }
        let [flags] = reader.array()?;
        if flags & !FLAG_STREAM != 0 {
            return Err(CorruptEntry("unknown flags"));
        }
        let prompt_tokens = u64::from_be_bytes(reader.array()?);
        let completion_tokens = u64::from_be_bytes(reader.array()?);
        let content_type = reader.text()?;
        let upstream = reader.text()?;
        let body = reader.sized()?;
        if reader.at != reader.bytes.len() {
            return Err(CorruptEntry("trailing bytes"));
        }
        Ok(CachedResponse {
            status,
            content_type,
            body,
            stream: flags & FLAG_STREAM != 0,
            upstream,
            prompt_tokens,
            completion_tokens,
        })
    }
}

struct EntryReader {
    bytes: Bytes,
    at: usize,
}

impl EntryReader {
    fn take(&mut self, len: usize) -> Result<Bytes, CorruptEntry> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(CorruptEntry("truncated"))?;
        let slice = self.bytes.slice(self.at..end);
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CorruptEntry> {
        let slice = self.take(N)?;
        <[u8; N]>::try_from(slice.as_ref()).map_err(|_| CorruptEntry("truncated"))
    }

    fn sized(&mut self) -> Result<Bytes, CorruptEntry> {
        let len = u64::from_be_bytes(self.array()?);
        let len = usize::try_from(len).map_err(|_| CorruptEntry("truncated"))?;
        self.take(len)
    }

    fn text(&mut self) -> Result<String, CorruptEntry> {
        let raw = self.sized()?;
        String::from_utf8(raw.to_vec()).map_err(|_| CorruptEntry("invalid UTF-8"))
    }
}

/// A streamed entry of the given body, as the cache's tests store it.
#[cfg(test)]
pub fn sample(body: &str) -> CachedResponse {
    CachedResponse {
        status: 200,
        content_type: "text/event-stream".into(),
        body: Bytes::copy_from_slice(body.as_bytes()),
        stream: true,
        upstream: "mock-a".into(),
        prompt_tokens: 12,
        completion_tokens: u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips() {
        for response in [
            sample("data: {\"x\":1}\n\ndata: [DONE]\n\n"),
            CachedResponse {
                status: 201,
                content_type: String::new(),
                body: Bytes::new(),
                stream: false,
                upstream: "é".into(),
                prompt_tokens: 0,
                completion_tokens: 0,
            },
        ] {
            let encoded = Bytes::from(response.encode());
            assert_eq!(CachedResponse::decode(encoded), Ok(response));
        }
    }

    #[test]
    fn corrupt_entries_are_rejected() {
        let good = sample("data: [DONE]\n\n").encode();
        let mut cases: Vec<Vec<u8>> = vec![Vec::new(), b"garbage".to_vec(), b"SYC2".to_vec()];
        // Every truncation, and one byte too many.
        cases.extend((0..good.len()).map(|len| good[..len].to_vec()));
        cases.push([good.as_slice(), b"!"].concat());
        // Wrong version, out-of-range status, unknown flag.
        for (index, byte) in [(3, b'2'), (4, 0xff), (6, 0x02)] {
            let mut bad = good.clone();
            bad[index] = byte;
            cases.push(bad);
        }
        // A length that points past the end, and one that overflows usize arithmetic.
        let content_type_len_at = 4 + 2 + 1 + 8 + 8;
        for len in [1_000_000u64, u64::MAX] {
            let mut bad = good.clone();
            bad[content_type_len_at..content_type_len_at + 8].copy_from_slice(&len.to_be_bytes());
            cases.push(bad);
        }
        // Invalid UTF-8 in the upstream name.
        let mut bad = sample("x").encode();
        let upstream_at = content_type_len_at + 8 + "text/event-stream".len() + 8;
        bad[upstream_at] = 0xff;
        cases.push(bad);

        for case in cases {
            assert!(
                CachedResponse::decode(Bytes::from(case.clone())).is_err(),
                "accepted {case:?}"
            );
        }
    }
}
