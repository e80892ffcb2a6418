//! API token roles (contract section 4): the one list, used by the
//! registry, the writer, `verify`, the server and the CLI.

use serde::{Deserialize, Serialize};

/// What a token may do, weakest first. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Appends events.
    Ingest,
    /// Runs SQL and reads events, chains and proofs.
    Query,
    /// Reads, exports and verifies evidence.
    Auditor,
    /// Manages keys and tokens, and may do everything else.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Query, Role::Auditor, Role::Admin];

    /// Its name, as in token records and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Query => "query",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// The role of this name, exactly as written.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Every role's name, for messages: `ingest, query, auditor, admin`.
    pub fn names() -> String {
        Role::ALL.map(Role::as_str).join(", ")
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_print_and_serialize_alike() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
            assert_eq!(serde_json::from_str::<Role>(&format!("\"{r}\"")).unwrap(), r);
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::names(), "ingest, query, auditor, admin");
        assert_eq!(format!("{:<8}|", Role::Query), "query   |");
    }
}
