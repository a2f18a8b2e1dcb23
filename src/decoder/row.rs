//! The field names of a change's row image, for schema drift: which columns the records carry. Names come from
//! outside, so what is kept is bounded: at most [`MAX_FIELD_NAMES`] distinct names of at most
//! [`MAX_FIELD_NAME_BYTES`] bytes each; the rest are counted, never stored.
//!
//! The decoder's own pass skips the row images without reading them; [`SeenFields::add`] reads one image's keys
//! (borrowed from the record unless escaped, values skipped) only for the records the watcher samples.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

use super::fields::Text;

/// Distinct field names kept per table and sample; more are counted in [`SeenFields::overflow`]. Postgres
/// allows 1,600 columns, but a table that wide is rare, and a hostile record must not grow the sidecar's memory.
pub const MAX_FIELD_NAMES: usize = 256;

/// Longest field name kept, in bytes; longer ones are counted in [`SeenFields::too_long`]. Postgres cuts
/// identifiers at 63 bytes, so no real column is that long.
pub const MAX_FIELD_NAME_BYTES: usize = 128;

/// Which image of the row a [`Row`] is; it decides what its absent fields mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowImage {
    /// An envelope's `after`: the Postgres connector writes every column of the row in it, so a declared column
    /// it lacks is missing from the records.
    After,
    /// A delete's `before`. Under `REPLICA IDENTITY DEFAULT` Postgres logs only the old key of a deleted row,
    /// so what `before` holds depends on the table's replica identity: its fields count as seen (a new column
    /// still shows), but a column it lacks says nothing.
    Before,
    /// A row unwrapped by ExtractNewRecordState (the record itself; `__` fields are the transform's): as
    /// [`RowImage::After`].
    Unwrapped,
    /// An unwrapped delete's row: as [`RowImage::Before`].
    UnwrappedBefore,
}

impl RowImage {
    /// Whether every column of the row is in the image, so that an absent one is missing.
    fn is_full(self) -> bool {
        matches!(self, RowImage::After | RowImage::Unwrapped)
    }

    /// Whether the image is a whole unwrapped record, whose `__` fields are the transform's.
    fn is_unwrapped(self) -> bool {
        matches!(self, RowImage::Unwrapped | RowImage::UnwrappedBefore)
    }
}

/// A change's row image, borrowed from the record and not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row<'a> {
    /// The JSON object.
    json: &'a str,
    /// Which image it is.
    image: RowImage,
}

impl<'a> Row<'a> {
    pub(super) fn new(json: &'a str, image: RowImage) -> Self {
        Self { json, image }
    }

    /// Which image it is.
    pub fn image(&self) -> RowImage {
        self.image
    }
}

/// How often one field name was seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FieldCount {
    /// Full images ([`RowImage::After`]) that hold the field.
    pub full_rows: u32,
    /// The last row that counted it (so a key repeated in one object counts once).
    #[serde(skip)]
    last_row: u32,
    /// The last full image that held it (0: none), numbered as [`SeenFields::rows`].
    #[serde(skip)]
    last_full: u32,
}

/// The field names of the sampled rows of one table, bounded: the union of their names, and in how many full
/// images each appeared (a name in fewer than [`SeenFields::full_rows`] is absent from some).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SeenFields {
    /// Rows read so far (every image), numbering them for [`FieldCount`].
    pub rows: u32,
    /// Full images read ([`RowImage::After`], [`RowImage::Unwrapped`]): those a missing column is judged on.
    pub full_rows: u32,
    /// Each name seen, at most [`MAX_FIELD_NAMES`].
    pub names: BTreeMap<String, FieldCount>,
    /// Occurrences of names longer than [`MAX_FIELD_NAME_BYTES`] (not stored).
    pub too_long: u32,
    /// Occurrences of new names past [`MAX_FIELD_NAMES`] (not stored): with any, absent names are not judged.
    pub overflow: u32,
    /// Row images that are not a JSON object of fields (counted, skipped).
    pub unreadable: u32,
    /// The number of the newest full image read (0: none): the shape the table's rows have now.
    #[serde(skip)]
    pub newest_full_row: u32,
}

impl SeenFields {
    /// Reads `row`'s field names into the set. Never fails: an unreadable image is counted.
    pub fn add(&mut self, row: &Row<'_>) {
        let row_number = self.rows.saturating_add(1);
        let mut keys = Keys {
            seen: self,
            row: row_number,
            full: row.image.is_full(),
            unwrapped: row.image.is_unwrapped(),
        };
        let mut de = serde_json::Deserializer::from_str(row.json);
        // The record's nesting was bounded before (`MAX_DEPTH`); values are skipped, never built.
        if de.deserialize_map(&mut keys).is_err() {
            self.unreadable = self.unreadable.saturating_add(1);
            return;
        }
        self.rows = row_number;
        if row.image.is_full() {
            self.full_rows = self.full_rows.saturating_add(1);
            self.newest_full_row = row_number;
        }
    }

    /// Adds `other`'s rows to these (the union of two samples), within the same bounds.
    pub fn merge(&mut self, other: &SeenFields) {
        let base = self.rows;
        for (name, count) in &other.names {
            let room = self.names.len() < MAX_FIELD_NAMES;
            // `other`'s rows come after these: its row numbers move up by `base`.
            let last_full = if count.last_full > 0 {
                base.saturating_add(count.last_full)
            } else {
                0
            };
            match self.names.get_mut(name.as_str()) {
                Some(mine) => {
                    mine.full_rows = mine.full_rows.saturating_add(count.full_rows);
                    mine.last_row = base.saturating_add(count.last_row);
                    mine.last_full = mine.last_full.max(last_full);
                }
                None if room => {
                    let count = FieldCount {
                        full_rows: count.full_rows,
                        last_row: base.saturating_add(count.last_row),
                        last_full,
                    };
                    self.names.insert(name.clone(), count);
                }
                None => self.overflow = self.overflow.saturating_add(1),
            }
        }
        self.rows = self.rows.saturating_add(other.rows);
        self.full_rows = self.full_rows.saturating_add(other.full_rows);
        self.too_long = self.too_long.saturating_add(other.too_long);
        self.overflow = self.overflow.saturating_add(other.overflow);
        self.unreadable = self.unreadable.saturating_add(other.unreadable);
        if other.newest_full_row > 0 {
            self.newest_full_row = base.saturating_add(other.newest_full_row);
        }
    }

    /// Whether `name` is in every full image read (and there was at least one): `false` means it is absent from
    /// some, or none was read.
    pub fn in_every_full_row(&self, name: &str) -> bool {
        self.full_rows > 0 && self.names.get(name).is_some_and(|c| c.full_rows >= self.full_rows)
    }

    /// Whether `name` is in the newest full image read (and there was one): the rows written before a column was
    /// added lack it, and those are older.
    pub fn in_newest_full_row(&self, name: &str) -> bool {
        self.newest_full_row > 0
            && self
                .names
                .get(name)
                .is_some_and(|c| c.last_full == self.newest_full_row)
    }

    /// Counts one key of row `row`.
    fn count(&mut self, name: &str, row: u32, full: bool) {
        if name.len() > MAX_FIELD_NAME_BYTES {
            self.too_long = self.too_long.saturating_add(1);
            return;
        }
        // Looked up borrowed: a name seen before costs no allocation.
        let room = self.names.len() < MAX_FIELD_NAMES;
        let count = match self.names.get_mut(name) {
            Some(count) => count,
            None if room => self.names.entry(name.to_owned()).or_default(),
            None => {
                self.overflow = self.overflow.saturating_add(1);
                return;
            }
        };
        if count.last_row != row {
            count.last_row = row;
            if full {
                count.full_rows = count.full_rows.saturating_add(1);
                count.last_full = row;
            }
        }
    }
}

/// Visits a row object's keys into a [`SeenFields`].
struct Keys<'s> {
    seen: &'s mut SeenFields,
    row: u32,
    full: bool,
    unwrapped: bool,
}

impl<'de> Visitor<'de> for &mut Keys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of row fields")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        // `Text` borrows the key from the record unless it holds escapes.
        while let Some(key) = map.next_key::<Text<'de>>()? {
            map.next_value::<IgnoredAny>()?;
            if self.unwrapped && key.starts_with("__") {
                continue;
            }
            self.seen.count(&key, self.row, self.full);
        }
        Ok(())
    }
}
