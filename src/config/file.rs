//! Reading the configuration file named by `--config` / `CDC_CONFIG`: a regular file, at most
//! [`MAX_CONFIG_BYTES`], in UTF-8, each refusal a one-line error naming the path.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map};
use figment::{Metadata, Profile, Provider};

use super::ConfigError;

/// The largest configuration file read. The example with every key set and commented is about 10 KiB, and even a
/// thousand tables with their own overrides stay far below a megabyte; a larger file is a mistake (the wrong path,
/// a generated file gone wrong), and reading it whole would cost memory many times its size once parsed.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The configuration file's text, read once with the bounds above, as a figment provider whose values say they
/// come from the file (errors then name it).
pub(super) struct ConfigFile {
    path: PathBuf,
    text: String,
}

impl ConfigFile {
    /// Reads `path`: it must be a regular file (not a directory, device or pipe, which could be endless or block),
    /// readable, at most [`MAX_CONFIG_BYTES`] long and UTF-8.
    pub(super) fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let unreadable = |source| ConfigError::Unreadable {
            path: path.to_owned(),
            source,
        };
        // Checked before opening: opening a FIFO would block until a writer comes.
        let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ConfigError::FileNotFound(path.to_owned()),
            _ => unreadable(e),
        })?;
        if metadata.is_dir() {
            return Err(ConfigError::IsDirectory(path.to_owned()));
        }
        if !metadata.is_file() {
            return Err(ConfigError::NotAFile(path.to_owned()));
        }
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let mut bytes = Vec::new();
        // One byte more than allowed tells a file at the limit from a larger one, whatever its size claimed.
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::NotUtf8 {
            path: path.to_owned(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        Ok(ConfigFile {
            path: path.to_owned(),
            text,
        })
    }

    /// The file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Its text.
    pub(super) fn text(&self) -> &str {
        &self.text
    }
}

impl Provider for ConfigFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Toml::string(&self.text).data()
    }
}
