//! vmail-maildir's tests' helpers: directory listings, Maildir assertions and synthetic
//! inputs (generated, chunked and failing readers).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Sorted file names in `dir` (empty if it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Asserts that tmp/, new/ and cur/ of `maildir` are all empty.
pub fn assert_no_messages(maildir: &Path) {
    for sub in ["tmp", "new", "cur"] {
        let n = names(&maildir.join(sub));
        assert!(n.is_empty(), "{sub}/ not empty: {n:?}");
    }
}

/// The single file in `dir`.
pub fn only_file(dir: &Path) -> PathBuf {
    let n = names(dir);
    assert_eq!(n.len(), 1, "expected one file in {}: {n:?}", dir.display());
    dir.join(&n[0])
}

/// The `S=` value of a Maildir file name.
pub fn s_size(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    let at = name.rfind(",S=").expect("no ,S=");
    name[at + 3..]
        .split([':', ','])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A deterministic message of `total` input bytes with CRLF line endings, produced on the
/// fly (never held in memory). Records the largest read buffer it was handed and how many
/// bytes were taken.
pub struct GenReader {
    pub total: u64,
    pub pos: u64,
    pub max_buf: usize,
    pub reads: usize,
}

/// One line of the generated body: 78 bytes + CRLF.
const LINE: &[u8] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+.,\r\n";
const HEAD: &[u8] = b"Subject: generated\r\nFrom: gen@example.org\r\n\r\n";

impl GenReader {
    pub fn new(total: u64) -> Self {
        GenReader {
            total,
            pos: 0,
            max_buf: 0,
            reads: 0,
        }
    }

    /// The byte at input offset `i`.
    pub fn byte_at(i: u64) -> u8 {
        if (i as usize) < HEAD.len() {
            HEAD[i as usize]
        } else {
            LINE[((i - HEAD.len() as u64) % LINE.len() as u64) as usize]
        }
    }

    /// The stored (LF) form of the first `total` input bytes.
    pub fn expected(total: u64) -> Vec<u8> {
        let mut input = Vec::with_capacity(total as usize);
        for i in 0..total {
            input.push(Self::byte_at(i));
        }
        lf_reference(&input)
    }
}

impl Read for GenReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        self.max_buf = self.max_buf.max(buf.len());
        let n = (buf.len() as u64).min(self.total - self.pos) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = Self::byte_at(self.pos + k as u64);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Independent reference for the stored form: every CR LF pair becomes LF, in one pass.
pub fn lf_reference(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'\r' && input.get(i + 1) == Some(&b'\n') {
            out.push(b'\n');
            i += 2;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

/// Hands out the data in the given chunk sizes (cycling), to exercise chunk boundaries.
pub struct ChunkReader<'a> {
    pub data: &'a [u8],
    pub sizes: Vec<usize>,
    pub i: usize,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Yields `ok_bytes` of data, then fails.
pub struct FailingReader {
    pub ok_bytes: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ok_bytes == 0 {
            return Err(io::Error::other("injected read failure"));
        }
        let n = self.ok_bytes.min(buf.len());
        buf[..n].fill(b'x');
        self.ok_bytes -= n;
        Ok(n)
    }
}

/// Mode bits of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}
