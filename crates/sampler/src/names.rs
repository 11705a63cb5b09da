//! User names for uids, looked up once (NSS can be slow: LDAP, sssd) and then shared.
//!
//! On a host the names come from NSS. In a container watching its node (`--path.rootfs`),
//! they come from the host's passwd file instead: the image's own has none of the node's
//! users ([`use_passwd_file`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Most names remembered; beyond it the cache starts over, so churned uids cannot grow it.
const MAX_NAMES: usize = 4096;

/// Most of a passwd file read: a host's is kilobytes; a bigger one is someone's mistake or
/// attack, and its first 4 MiB still name most users.
const MAX_PASSWD_BYTES: u64 = 4 << 20;

/// The passwd file names come from instead of NSS (`None`: NSS).
static PASSWD: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Takes user names from `path` (a passwd file, such as the host's `/host/etc/passwd`)
/// instead of NSS, for the whole process; `None` goes back to NSS.
pub fn use_passwd_file(path: Option<PathBuf>) {
    *PASSWD.write().unwrap_or_else(|p| p.into_inner()) = path;
}

fn passwd_file() -> Option<PathBuf> {
    PASSWD.read().unwrap_or_else(|p| p.into_inner()).clone()
}

#[derive(Debug, Default)]
pub struct UserNames {
    names: HashMap<u32, Arc<str>>,
}

impl UserNames {
    /// The user name of `uid`, or the uid itself where none resolves.
    pub fn name(&mut self, uid: u32) -> Arc<str> {
        if let Some(n) = self.names.get(&uid) {
            return n.clone();
        }
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        let name = match passwd_file() {
            // One read names every user of the file; an unknown uid then costs one more read
            // the first time it is seen.
            Some(path) => {
                for (u, n) in read_passwd(&path).into_iter().take(MAX_NAMES - self.names.len()) {
                    self.names.entry(u).or_insert_with(|| n.into());
                }
                self.names.get(&uid).cloned()
            }
            None => crate::user_name(uid).map(Arc::from),
        };
        let name = name.unwrap_or_else(|| uid.to_string().into());
        self.names.insert(uid, name.clone());
        name
    }
}

/// Every `uid -> name` of a passwd file (`name:x:uid:...` lines); unreadable: none.
pub fn read_passwd(path: &Path) -> Vec<(u32, String)> {
    let mut text = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(MAX_PASSWD_BYTES).read_to_end(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    parse_passwd(&String::from_utf8_lossy(&text))
}

pub fn parse_passwd(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next().filter(|n| !n.is_empty())?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// A file or queue name as text, losslessly: invalid UTF-8 bytes become `\xNN` and a
/// backslash `\\`, so two names that differ in bytes never read alike (`dup\xff` and
/// `dup\xfe`, which a lossy conversion would both turn into `dup\u{fffd}`).
pub fn lossless(name: &std::ffi::OsStr) -> String {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::with_capacity(name.len());
    for chunk in name.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_differ_in_bytes_read_differently() {
        use std::os::unix::ffi::OsStrExt;
        let name = |b: &[u8]| lossless(std::ffi::OsStr::from_bytes(b));
        assert_eq!(name(b"dup\xff"), "dup\\xff");
        assert_eq!(name(b"dup\xfe"), "dup\\xfe");
        assert_eq!(name(b"dup\\xff"), "dup\\\\xff", "a literal backslash cannot pose as a byte");
        assert_eq!(name("caf\u{e9}".as_bytes()), "caf\u{e9}");
    }

    #[test]
    fn passwd_lines_give_uid_and_name_and_odd_lines_are_skipped() {
        let text = "root:x:0:0:root:/root:/bin/bash\n# comment\n:x:5::\npostgres:x:106:113::/var/lib/postgresql:/bin/bash\nbroken\nweird:x:notanumber:1\n";
        assert_eq!(parse_passwd(text), [(0, "root".to_string()), (106, "postgres".to_string())]);
    }
}
