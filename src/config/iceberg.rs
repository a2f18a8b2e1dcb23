//! The `[iceberg]` section: the Iceberg REST catalog and object store the per-table jobs write to.

use serde::{Deserialize, Serialize};

use super::check::{Checks, check_fields};
use super::{ConfigError, Section, shown_url};
use crate::model::TableName;

/// The `[iceberg]` section: what the per-table jobs' Iceberg catalog connects to.
///
/// These addresses are used by Flink, not by the sidecar, so they name hosts as Flink sees them. The catalog's
/// credentials are not here: they are read from the environment when statements are rendered (see `sql`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IcebergConfig {
    /// Iceberg REST catalog endpoint (Apache Polaris: `http://<host>:8181/api/catalog`).
    #[serde(serialize_with = "shown_url::serialize")]
    pub catalog_uri: String,
    /// The REST catalog's warehouse, i.e. the Polaris catalog name.
    pub warehouse: String,
    /// OAuth2 scope requested with the client credentials.
    pub scope: String,
    /// Iceberg namespace (Flink database) the tables are created in.
    pub database: String,
    /// S3 endpoint of the object store (MinIO).
    #[serde(serialize_with = "shown_url::serialize")]
    pub s3_endpoint: String,
    /// S3 region; MinIO ignores it but the AWS SDK requires one.
    pub s3_region: String,
    /// Path-style bucket addressing, which MinIO needs.
    pub s3_path_style_access: bool,
}

impl Default for IcebergConfig {
    fn default() -> Self {
        Self {
            catalog_uri: "http://127.0.0.1:8181/api/catalog".to_owned(),
            warehouse: "polariscatalog".to_owned(),
            scope: "PRINCIPAL_ROLE:ALL".to_owned(),
            database: "university".to_owned(),
            s3_endpoint: "http://127.0.0.1:9000".to_owned(),
            s3_region: "us-east-1".to_owned(),
            s3_path_style_access: true,
        }
    }
}

impl Section for IcebergConfig {
    const KEY: &'static str = "iceberg";

    fn validate(&self, errors: &mut Vec<ConfigError>) {
        check_fields!(errors.http_url, "iceberg", self: catalog_uri, s3_endpoint);
        check_fields!(errors.not_blank, "iceberg", self: warehouse, scope, s3_region);
        // A database name follows the same identifier rule as a table name.
        if !TableName::is_valid(&self.database) {
            errors.invalid(
                "iceberg.database",
                &self.database,
                "not a valid database name (letters, digits and _, not starting with a digit, at most 63)",
            );
        }
    }
}
