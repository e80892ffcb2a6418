//! What a bundle's data files hold.

/// What the data files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Parquet, the SQL tables' columns and types.
    Parquet,
    /// The same rows as JSON lines.
    Ndjson,
    /// OCSF 1.8.0 API Activity (class 6003) JSON lines.
    Ocsf,
}

impl Format {
    /// The name in the manifest and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Ndjson => "ndjson",
            Format::Ocsf => "ocsf",
        }
    }

    /// The format of this name.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "parquet" => Some(Format::Parquet),
            "ndjson" => Some(Format::Ndjson),
            "ocsf" => Some(Format::Ocsf),
            _ => None,
        }
    }

    /// The data files' extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Ndjson => "ndjson",
            Format::Ocsf => "jsonl",
        }
    }

    /// The tables a bundle of this format has files for.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Format::Parquet | Format::Ndjson => &["events", "delegation_hops"],
            Format::Ocsf => &["ocsf"],
        }
    }
}
