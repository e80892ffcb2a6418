//! C2SP tlog-tiles paths (contract §11): which tile a path names, and the
//! one spelling of each tile.
//!
//! A tile of height 8 at level `L` and index `N` holds up to 256 hashes:
//! hash `i` is the root of the complete subtree of 256^L leaves starting at
//! leaf `(N·256 + i)·256^L`, which is the Merkle node at tree level `8L` and
//! index `N·256 + i`. A partial tile (width `W` < 256) holds the first `W`.
//! Entry bundles hold the leaves of level-0 tile `N`, each behind a
//! big-endian u16 length.
//!
//! Paths are strict, as `golang.org/x/mod/sumdb/tlog.ParseTilePath` is: the
//! same tile has exactly one spelling, so caches never hold two copies.
//!
//! The store keeps the tree as these tiles (storage format 2): full tiles,
//! and the open tile of each level, rewritten as it grows. [`TileEdges`]
//! builds them from the nodes the Merkle frontier completes.

use crate::leaf::Hash;

/// Tile height: 8 tree levels, 256 hashes per full tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// The highest tile level whose tiles can hold a hash (8 · 7 = 56 < 64).
pub const TILE_LEVEL_MAX: u8 = 7;

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileKind {
    /// Hashes of tile level `L` (tree level `8L`).
    Hashes(u8),
    /// Leaves: the entry bundle beside level-0 tile `N`.
    Entries,
}

/// One tile, as a path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Hashes of a level, or entries.
    pub kind: TileKind,
    /// `N`: the tile's index within its level.
    pub index: u64,
    /// `W`: 1..=256 items; 256 is a full tile.
    pub width: u16,
}

/// Why a path names no tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TilePathError(pub String);

impl std::fmt::Display for TilePathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TilePathError {}

impl Tile {
    /// Whether it holds all 256 items (and so never changes).
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// Tree level of the hashes (0 for entries, whose leaf hashes are level 0).
    pub fn tree_level(&self) -> u8 {
        match self.kind {
            TileKind::Hashes(l) => l * TILE_HEIGHT,
            TileKind::Entries => 0,
        }
    }

    /// Index, at [`Tile::tree_level`], of the tile's first item.
    pub fn first(&self) -> u64 {
        self.index << TILE_HEIGHT
    }

    /// Leaves the tree must hold for every item of this tile to exist, or
    /// `None` when that overflows (no such tree can exist).
    pub fn leaves_needed(&self) -> Option<u64> {
        let items = self.first().checked_add(u64::from(self.width))?;
        let shift = u32::from(self.tree_level());
        let needed = items.checked_shl(shift)?;
        (needed >> shift == items).then_some(needed)
    }

    /// The path after `tile/`, in the C2SP spelling: `0/x001/234.p/5`,
    /// `entries/000`.
    pub fn path(&self) -> String {
        let kind = match self.kind {
            TileKind::Hashes(l) => l.to_string(),
            TileKind::Entries => "entries".to_string(),
        };
        let mut p = format!("{kind}/{}", format_index(self.index));
        if !self.is_full() {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }
}

/// `N` in 3-digit groups, each but the last behind an `x`:
/// 1234067 → `x001/x234/067`.
pub fn format_index(mut n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        groups.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

fn bad(path: &str, why: &str) -> TilePathError {
    TilePathError(format!("`tile/{path}` is not a tile path: {why}"))
}

/// Parses the path after `tile/`: `<L>/<N>[.p/<W>]`, `entries/<N>[.p/<W>]`,
/// or Go's `8/<L>/<N>[.p/<W>]` (tile height 8 spelled in the path).
pub fn parse_tile_path(path: &str) -> Result<Tile, TilePathError> {
    let parts: Vec<&str> = path.split('/').collect();
    // Go's spelling: a leading `8` then a level. A level is 1 or 2 digits;
    // index groups are 3 digits or `x` and 3 digits, so the two never clash.
    let rest = match parts.as_slice() {
        ["8", level, _, ..] if level.len() <= 2 => &parts[1..],
        _ => &parts[..],
    };
    let (kind, rest) = match rest.split_first() {
        Some((&"entries", rest)) => (TileKind::Entries, rest),
        Some((level, rest)) => {
            let l = parse_decimal(level).ok_or_else(|| bad(path, "the level is not a decimal number"))?;
            if l > u64::from(TILE_LEVEL_MAX) {
                return Err(bad(path, &format!("level {l} is above {TILE_LEVEL_MAX}, the highest with a hash")));
            }
            (TileKind::Hashes(l as u8), rest)
        }
        None => return Err(bad(path, "it is empty")),
    };
    // `.p/<W>` splits the last index group from the width.
    let (groups, width) = match rest {
        [groups @ .., last, w] if last.ends_with(".p") => {
            let w = parse_decimal(w).filter(|w| (1..TILE_WIDTH).contains(w));
            let w = w.ok_or_else(|| bad(path, "a partial width is 1 to 255, without leading zeroes"))?;
            let mut g = groups.to_vec();
            g.push(&last[..last.len() - 2]);
            (g, w as u16)
        }
        groups => (groups.to_vec(), TILE_WIDTH as u16),
    };
    if groups.is_empty() {
        return Err(bad(path, "it has no index"));
    }
    let mut index: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let last = i + 1 == groups.len();
        let digits = if last { Some(*g) } else { g.strip_prefix('x') };
        let digits = digits.filter(|d| d.len() == 3 && d.bytes().all(|b| b.is_ascii_digit()));
        let digits = digits.ok_or_else(|| bad(path, "index groups are `xDDD/` … `DDD`"))?;
        let v: u64 = digits.parse().expect("three digits");
        if i == 0 && v == 0 && !last {
            return Err(bad(path, "an index has no leading zero group"));
        }
        index = index
            .checked_mul(1000)
            .and_then(|x| x.checked_add(v))
            .ok_or_else(|| bad(path, "the index does not fit 64 bits"))?;
    }
    let tile = Tile { kind, index, width };
    // No tree reaches a tile whose items overflow; refuse it here.
    if tile.leaves_needed().is_none() {
        return Err(bad(path, "no tree of 2^64 leaves holds this tile"));
    }
    Ok(tile)
}

/// A decimal number without leading zeroes.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Every tile (hash tiles, then entry bundles) a tree of `size` leaves
/// has, full and partial, as tlog-tiles lists them.
pub fn tiles_for_size(size: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    for level in 0..=TILE_LEVEL_MAX {
        let m = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
        if m == 0 {
            break;
        }
        for n in 0..m / TILE_WIDTH {
            out.push(Tile { kind: TileKind::Hashes(level), index: n, width: TILE_WIDTH as u16 });
        }
        if !m.is_multiple_of(TILE_WIDTH) {
            out.push(Tile { kind: TileKind::Hashes(level), index: m / TILE_WIDTH, width: (m % TILE_WIDTH) as u16 });
        }
    }
    for n in 0..size / TILE_WIDTH {
        out.push(Tile { kind: TileKind::Entries, index: n, width: TILE_WIDTH as u16 });
    }
    if !size.is_multiple_of(TILE_WIDTH) {
        out.push(Tile { kind: TileKind::Entries, index: size / TILE_WIDTH, width: (size % TILE_WIDTH) as u16 });
    }
    out
}

/// Appends one entry to a bundle: its big-endian u16 length, then its bytes.
/// Entries are leaves, far below 64 KiB; a longer one is a bug.
pub fn push_entry(bundle: &mut Vec<u8>, entry: &[u8]) {
    let len = u16::try_from(entry.len()).expect("a leaf fits an entry bundle's u16 length");
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(entry);
}

/// The root of the perfect subtree over `hashes` (a power of two of them,
/// at least one), hashed pairwise upward.
pub fn fold(hashes: &[Hash]) -> Hash {
    assert!(hashes.len().is_power_of_two(), "a perfect subtree has 2^k hashes");
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| crate::merkle::node_hash(&p[0], &p[1])).collect();
    }
    level[0]
}

/// Where the Merkle node at tree `level` and `index` lives in tiles: its
/// tile level `L`, tile index `N`, and the range of that tile's entries it
/// is the root of (one entry when `level` is a multiple of 8).
pub fn node_location(level: u8, index: u64) -> (u8, u64, std::ops::Range<usize>) {
    let (l, r) = (level / TILE_HEIGHT, u32::from(level % TILE_HEIGHT));
    let first = index << r;
    let off = (first % TILE_WIDTH) as usize;
    (l, first / TILE_WIDTH, off..off + (1usize << r))
}

/// The hashes of a tile's bytes (a multiple of 32 bytes).
pub fn hashes_of(bytes: &[u8]) -> Vec<Hash> {
    bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect()
}

/// The tiles at the right edge of a growing tree: for each tile level, the
/// entries of its last, not yet full, tile. The writer feeds it every node
/// the Merkle frontier completes and stores the tiles it returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TileEdges {
    /// `edges[L]`: the entries of the open tile of level `L`.
    edges: Vec<Vec<Hash>>,
    /// Levels whose open tile changed since [`TileEdges::take_changed`].
    changed: std::collections::BTreeSet<u8>,
    /// Leaves so far.
    size: u64,
}

impl TileEdges {
    /// The edges of a tree of `size` leaves, from its stored edge tiles:
    /// `edge(L, N, width)` returns the first `width` entries of tile (L, N).
    pub fn load<E>(size: u64, mut edge: impl FnMut(u8, u64, usize) -> Result<Vec<Hash>, E>) -> Result<TileEdges, E> {
        let mut edges = Vec::new();
        for level in 0..=TILE_LEVEL_MAX {
            let m = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
            if m == 0 {
                break;
            }
            let width = (m % TILE_WIDTH) as usize;
            edges.push(if width == 0 { Vec::new() } else { edge(level, m / TILE_WIDTH, width)? });
        }
        Ok(TileEdges { edges, changed: Default::default(), size })
    }

    /// Takes a node the frontier emitted (tree level, index, hash). Returns
    /// the tile it completes, if any: (tile level, tile index, 8,192 bytes).
    pub fn push(&mut self, level: u8, index: u64, hash: Hash) -> Option<(u8, u64, Vec<u8>)> {
        if level == 0 {
            assert_eq!(index, self.size, "leaves are pushed in order");
            self.size += 1;
        }
        if !level.is_multiple_of(TILE_HEIGHT) {
            return None;
        }
        let l = level / TILE_HEIGHT;
        if self.edges.len() <= l as usize {
            self.edges.resize_with(l as usize + 1, Vec::new);
        }
        let edge = &mut self.edges[l as usize];
        assert_eq!(index % TILE_WIDTH, edge.len() as u64, "tile entries arrive in order");
        edge.push(hash);
        self.changed.insert(l);
        if edge.len() as u64 == TILE_WIDTH {
            let bytes = edge.concat();
            edge.clear();
            return Some((l, index / TILE_WIDTH, bytes));
        }
        None
    }

    /// The open (partial) tiles that changed since the last call, as
    /// (tile level, tile index, bytes); a level whose tile just filled has
    /// no open tile.
    pub fn take_changed(&mut self) -> Vec<(u8, u64, Vec<u8>)> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter(|l| !self.edges[*l as usize].is_empty())
            .map(|l| {
                let n = (self.size >> (u32::from(l) * u32::from(TILE_HEIGHT))) / TILE_WIDTH;
                (l, n, self.edges[l as usize].concat())
            })
            .collect()
    }

    /// Every open (partial) tile, as (tile level, tile index, bytes), and
    /// the number of tile levels the tree has.
    pub fn open_tiles(&self) -> (Vec<(u8, u64, Vec<u8>)>, u8) {
        let open = (0..self.edges.len() as u8)
            .filter(|l| !self.edges[*l as usize].is_empty())
            .map(|l| {
                let n = (self.size >> (u32::from(l) * u32::from(TILE_HEIGHT))) / TILE_WIDTH;
                (l, n, self.edges[l as usize].concat())
            })
            .collect();
        (open, self.edges.len() as u8)
    }

    /// The entries of the open tile of level `l`.
    pub fn edge(&self, l: u8) -> &[Hash] {
        self.edges.get(l as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(level: u8, index: u64, width: u16) -> Tile {
        Tile { kind: TileKind::Hashes(level), index, width }
    }

    #[test]
    fn indexes_are_spelled_in_groups_of_three() {
        assert_eq!(format_index(0), "000");
        assert_eq!(format_index(999), "999");
        assert_eq!(format_index(1000), "x001/000");
        assert_eq!(format_index(1_234_067), "x001/x234/067");
    }

    #[test]
    fn the_spec_examples_parse_and_print() {
        let t = hashes(0, 1_234_067, 256);
        assert_eq!(parse_tile_path("0/x001/x234/067"), Ok(t));
        assert_eq!(parse_tile_path("8/0/x001/x234/067"), Ok(t), "Go's spelling");
        assert_eq!(t.path(), "0/x001/x234/067");
        let p = hashes(0, 1_234_067, 100);
        assert_eq!(parse_tile_path("0/x001/x234/067.p/100"), Ok(p));
        assert_eq!(p.path(), "0/x001/x234/067.p/100");
        let e = Tile { kind: TileKind::Entries, index: 1_234_067, width: 256 };
        assert_eq!(parse_tile_path("entries/x001/x234/067"), Ok(e));
        // Level 8 in the C2SP spelling is not Go's alias.
        assert_eq!(parse_tile_path("8/000"), Err(bad("8/000", "level 8 is above 7, the highest with a hash")));
        assert_eq!(parse_tile_path("1/000.p/17"), Ok(hashes(1, 0, 17)));
    }

    #[test]
    fn every_other_spelling_is_refused() {
        for p in [
            "",
            "0",
            "0/",
            "0/00",
            "0/0000",
            "0/x000/001",
            "0/001/000",
            "0/x001",
            "0/x001/x002",
            "00/000",
            "01/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/01",
            "0/000.p/",
            "0/000.p",
            "0/000/p/5",
            "x/000",
            "-1/000",
            "data/000",
            "8/data/000",
            "0/+01",
            "0/ 01",
            "entries",
            "entries/",
            "0/000.p/5/6",
            "0/x999/x999/x999/x999/x999/x999/999",
        ] {
            assert!(parse_tile_path(p).is_err(), "{p:?} should be refused");
        }
    }

    #[test]
    fn paths_round_trip() {
        for n in [0u64, 1, 999, 1000, 1001, 999_999, 1_000_000, u64::MAX >> 8] {
            for w in [1u16, 100, 255, 256] {
                for kind in [TileKind::Hashes(0), TileKind::Hashes(3), TileKind::Entries] {
                    let t = Tile { kind, index: n, width: w };
                    if t.leaves_needed().is_some() {
                        assert_eq!(parse_tile_path(&t.path()), Ok(t), "{}", t.path());
                    } else {
                        assert!(parse_tile_path(&t.path()).is_err(), "{} is past 2^64 leaves", t.path());
                    }
                }
            }
        }
    }

    #[test]
    fn the_tiles_of_a_size_match_the_spec() {
        let names = |s: u64, kind: fn(&Tile) -> bool| {
            tiles_for_size(s).into_iter().filter(&kind).map(|t| t.path()).collect::<Vec<_>>()
        };
        let hash = |t: &Tile| matches!(t.kind, TileKind::Hashes(_));
        assert!(tiles_for_size(0).is_empty());
        assert_eq!(names(256, hash), ["0/000", "1/000.p/1"]);
        let t = names(70_000, hash);
        assert_eq!(t.len(), 273 + 1 + 2 + 1);
        assert_eq!(&t[272..], ["0/272", "0/273.p/112", "1/000", "1/001.p/17", "2/000.p/1"]);
        assert_eq!(names(70_000, |t| t.kind == TileKind::Entries).last().unwrap(), "entries/273.p/112");
    }

    #[test]
    fn leaves_needed_counts_subtrees_of_the_level() {
        assert_eq!(hashes(0, 0, 3).leaves_needed(), Some(3));
        assert_eq!(hashes(1, 0, 17).leaves_needed(), Some(17 * 256));
        assert_eq!(hashes(1, 1, 256).leaves_needed(), Some(512 * 256));
        assert_eq!(hashes(7, 1, 256).leaves_needed(), None);
    }

    /// Tiles built from the frontier's nodes hold what a tree kept in
    /// memory says, for sizes across tile boundaries at two levels, and a
    /// node read back from tiles is the tree's node.
    #[test]
    fn tile_edges_build_the_tiles_of_a_memory_tree() {
        use crate::merkle::{Frontier, MemTree, NodeReader};
        let mut tree = MemTree::new();
        let mut frontier = Frontier::default();
        let mut edges = TileEdges::default();
        let mut stored: std::collections::BTreeMap<(u8, u64), Vec<u8>> = Default::default();
        for i in 0..70_000u64 {
            let leaf = crate::merkle::leaf_hash(&i.to_be_bytes());
            tree.push(leaf);
            frontier.push(leaf, |level, index, hash| {
                if let Some((l, n, bytes)) = edges.push(level, index, hash) {
                    stored.insert((l, n), bytes);
                }
            });
            if i % 997 == 0 || i == 69_999 {
                for (l, n, bytes) in edges.take_changed() {
                    stored.insert((l, n), bytes);
                }
            }
        }
        let size = tree.size();
        for t in tiles_for_size(size).into_iter().filter(|t| t.kind != TileKind::Entries) {
            let l = match t.kind {
                TileKind::Hashes(l) => l,
                TileKind::Entries => unreachable!(),
            };
            let bytes = &stored[&(l, t.index)];
            assert!(bytes.len() >= usize::from(t.width) * 32, "{}", t.path());
            for (i, h) in hashes_of(&bytes[..usize::from(t.width) * 32]).iter().enumerate() {
                let want = tree.node(t.tree_level(), t.first() + i as u64).unwrap();
                assert_eq!(*h, want, "{} entry {i}", t.path());
            }
        }
        for (level, index) in [(0u8, 12_345u64), (3, 17), (7, 2), (8, 1), (9, 0), (12, 3)] {
            let (l, n, range) = node_location(level, index);
            let hashes = hashes_of(&stored[&(l, n)]);
            assert_eq!(fold(&hashes[range]), tree.node(level, index).unwrap(), "node ({level}, {index})");
        }
        let reloaded = TileEdges::load(size, |l, n, w| Ok::<_, ()>(hashes_of(&stored[&(l, n)][..w * 32]))).unwrap();
        assert_eq!(reloaded.edge(0), edges.edge(0));
        assert_eq!(reloaded.edge(1), edges.edge(1));
        assert_eq!(reloaded.edge(2), edges.edge(2));
    }

    #[test]
    fn bundles_prefix_each_entry_with_its_length() {
        let mut b = Vec::new();
        for e in [&b"entry one"[..], b"entry two", b"entry three"] {
            push_entry(&mut b, e);
        }
        assert_eq!(hex::encode(&b), "0009656e747279206f6e650009656e7472792074776f000b656e747279207468726565");
    }
}
