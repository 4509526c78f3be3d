//! `CommandName`: the name of a registered command, as a [`Call`](super::Call) and an
//! [`OutstandingCall`](super::OutstandingCall) carry it.
//!
//! The registry makes one per command when it is registered; every call issued for the command
//! shares it. Issuing a call therefore costs a reference-count increment instead of allocating
//! and copying the name twice (the call handed to the embedder and the core's own record of it),
//! which was a quarter of the allocations of a pipelined `query-status`.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name of a command, cheap to clone. Reads as a `&str` (`Deref`, [`as_str`], `Display`)
/// and compares with strings; serialises as a JSON string.
///
/// [`as_str`]: CommandName::as_str
///
/// ```
/// use qmp_core::server::CommandName;
/// let name = CommandName::from("query-status");
/// let copy = name.clone(); // shares the text
/// assert_eq!(copy, "query-status");
/// assert_eq!(name.as_str(), "query-status");
/// assert!(name.starts_with("query-"));
/// assert_eq!(format!("{name}"), "query-status");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandName(Arc<str>);

impl CommandName {
    /// The name's text.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for CommandName {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for CommandName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for CommandName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for CommandName {
    fn from(name: &str) -> CommandName {
        CommandName(Arc::from(name))
    }
}

impl From<String> for CommandName {
    fn from(name: String) -> CommandName {
        CommandName(Arc::from(name))
    }
}

impl From<CommandName> for String {
    fn from(name: CommandName) -> String {
        name.as_str().to_owned()
    }
}

impl fmt::Display for CommandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CommandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for CommandName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for CommandName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for CommandName {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<CommandName> for str {
    fn eq(&self, other: &CommandName) -> bool {
        *self == *other.0
    }
}

impl PartialEq<CommandName> for &str {
    fn eq(&self, other: &CommandName) -> bool {
        **self == *other.0
    }
}

impl PartialEq<CommandName> for String {
    fn eq(&self, other: &CommandName) -> bool {
        **self == *other.0
    }
}

impl Serialize for CommandName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CommandName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CommandName, D::Error> {
        String::deserialize(d).map(CommandName::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_text() {
        let a = CommandName::from("query-status");
        let b = a.clone();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }

    #[test]
    fn serialises_as_a_json_string() {
        let a = CommandName::from("x-oob-test");
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(text, "\"x-oob-test\"");
        let back: CommandName = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
        assert_eq!(String::from(back), "x-oob-test");
    }
}
