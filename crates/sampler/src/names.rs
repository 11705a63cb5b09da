//! User names for uids, looked up once (NSS can be slow: LDAP, sssd) and then shared.

use std::collections::HashMap;
use std::sync::Arc;

/// Most names remembered; beyond it the cache starts over, so churned uids cannot grow it.
const MAX_NAMES: usize = 4096;

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
        let name: Arc<str> = crate::user_name(uid).unwrap_or_else(|| uid.to_string()).into();
        self.names.insert(uid, name.clone());
        name
    }
}
