//! How one Postgres column becomes Flink columns: the type the Kafka source reads (what Debezium's JSON sends under
//! the connector's settings), the sink's type (Postgres's own, as Flink names it), the INSERT's conversion between
//! them, and the JDBC sink database's column type. Pure: no catalog, no files; unit-tested per setting.
//!
//! Debezium's JSON forms come from its Postgres connector documentation ("Data type mappings"), written by Kafka
//! Connect's JsonConverter without schemas: INT64/INT32 logical types as JSON numbers, BYTES as base64 strings,
//! Decimal as base64 of the unscaled value unless the converter's `decimal.format` is `NUMERIC`.

use std::collections::BTreeMap;

/// The connector settings that change a field's JSON form, read from the Debezium connector config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebeziumSettings {
    /// `decimal.handling.mode`: `precise` (default), `double` or `string`.
    pub decimal: DecimalMode,
    /// `time.precision.mode`: `adaptive` (default), `adaptive_time_microseconds` or `connect`.
    pub time: TimeMode,
    /// `binary.handling.mode`: `bytes` (default), `base64`, `base64-url-safe` or `hex`.
    pub binary: BinaryMode,
    /// `interval.handling.mode`: `numeric` (default, microseconds) or `string` (ISO 8601).
    pub interval_string: bool,
    /// `hstore.handling.mode`: `json` (default, a JSON text) or `map`.
    pub hstore_map: bool,
    /// `value.converter.decimal.format` is `NUMERIC`: a precise decimal is then a JSON number, not base64 bytes.
    pub decimal_numeric_json: bool,
}

/// `decimal.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalMode {
    /// Connect's Decimal (bytes, or a JSON number with `decimal.format=NUMERIC`).
    Precise,
    /// A JSON double.
    Double,
    /// A JSON string, e.g. `"12.50"`.
    String,
}

/// `time.precision.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// Milliseconds up to precision 3, microseconds above.
    Adaptive,
    /// As adaptive, but TIME always in microseconds.
    AdaptiveTimeMicroseconds,
    /// Kafka Connect's logical types: milliseconds always.
    Connect,
}

/// `binary.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryMode {
    /// Connect bytes, which the JsonConverter writes as standard base64.
    Bytes,
    /// A standard base64 string.
    Base64,
    /// A URL-safe base64 string.
    Base64UrlSafe,
    /// A hex string.
    Hex,
}

impl Default for DebeziumSettings {
    fn default() -> Self {
        Self {
            decimal: DecimalMode::Precise,
            time: TimeMode::Adaptive,
            binary: BinaryMode::Bytes,
            interval_string: false,
            hstore_map: false,
            decimal_numeric_json: false,
        }
    }
}

impl DebeziumSettings {
    /// Reads the settings from a connector config's keys; an unknown value is `Err((key, value))`.
    pub fn from_config(config: &BTreeMap<String, String>) -> Result<Self, (String, String)> {
        let get = |key: &str| config.get(key).map(|v| v.trim().to_owned());
        let bad = |key: &str, value: String| (key.to_owned(), value);
        let mut settings = Self::default();
        if let Some(v) = get("decimal.handling.mode") {
            settings.decimal = match v.as_str() {
                "precise" => DecimalMode::Precise,
                "double" => DecimalMode::Double,
                "string" => DecimalMode::String,
                _ => return Err(bad("decimal.handling.mode", v)),
            };
        }
        if let Some(v) = get("time.precision.mode") {
            settings.time = match v.as_str() {
                "adaptive" => TimeMode::Adaptive,
                "adaptive_time_microseconds" => TimeMode::AdaptiveTimeMicroseconds,
                "connect" => TimeMode::Connect,
                _ => return Err(bad("time.precision.mode", v)),
            };
        }
        if let Some(v) = get("binary.handling.mode") {
            settings.binary = match v.as_str() {
                "bytes" => BinaryMode::Bytes,
                "base64" => BinaryMode::Base64,
                "base64-url-safe" => BinaryMode::Base64UrlSafe,
                "hex" => BinaryMode::Hex,
                _ => return Err(bad("binary.handling.mode", v)),
            };
        }
        if let Some(v) = get("interval.handling.mode") {
            settings.interval_string = match v.as_str() {
                "numeric" => false,
                "string" => true,
                _ => return Err(bad("interval.handling.mode", v)),
            };
        }
        if let Some(v) = get("hstore.handling.mode") {
            settings.hstore_map = match v.as_str() {
                "json" => false,
                "map" => true,
                _ => return Err(bad("hstore.handling.mode", v)),
            };
        }
        if let Some(v) = get("value.converter.decimal.format") {
            settings.decimal_numeric_json = match v.to_ascii_uppercase().as_str() {
                "NUMERIC" => true,
                "BASE64" => false,
                _ => return Err(bad("value.converter.decimal.format", v)),
            };
        }
        Ok(settings)
    }
}

/// A column's type as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    /// `format_type()` of the column's type, through one domain to its base type: `numeric(12,2)`,
    /// `character varying(20)`, `timestamp(3) without time zone`, `integer[]`.
    pub formatted: String,
    /// The (base) type is an enum, or an array of enums.
    pub is_enum: bool,
    /// The type's name in pg_type (`hstore` is an extension type: recognised by name).
    pub type_name: String,
}

/// What a column becomes in the generated SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The Kafka source's Flink type.
    pub source: String,
    /// The sink's Flink type.
    pub sink: String,
    /// The INSERT's expression, `{}` standing for the quoted source column; `None` passes it as is.
    pub conversion: Option<String>,
    /// The JDBC sink database's column type (Postgres).
    pub jdbc: String,
}

/// Why a column cannot be mapped: one sentence naming the setting or the type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmappable(pub String);

const MILLIS_TO_TIMESTAMP: &str = "CAST(TO_TIMESTAMP_LTZ({}, 3) AS TIMESTAMP({p}))";
// Flink 1.18's TO_TIMESTAMP_LTZ takes seconds or milliseconds only: microseconds are cut to milliseconds.
const MICROS_TO_TIMESTAMP: &str = "CAST(TO_TIMESTAMP_LTZ({} / 1000, 3) AS TIMESTAMP({p}))";
const DAYS_TO_DATE: &str = "CAST(TO_TIMESTAMP_LTZ(CAST({} AS BIGINT) * 86400000, 3) AS DATE)";
const MILLIS_TO_TIME: &str = "CAST(TO_TIMESTAMP_LTZ(CAST({} AS BIGINT), 3) AS TIME(3))";
const MICROS_TO_TIME: &str = "CAST(TO_TIMESTAMP_LTZ({} / 1000, 3) AS TIME(3))";
// Debezium's ZonedTimestamp: ISO 8601 in UTC, `2024-01-31T10:00:00.123456Z`; read in the session's zone (UTC).
const ZONED_TO_LTZ: &str =
    "CAST(CAST(REPLACE(REPLACE({}, 'T', ' '), 'Z', '') AS TIMESTAMP({p})) AS TIMESTAMP_LTZ({p}))";

/// The name and the numbers in parentheses of a formatted type: `timestamp(3) without time zone` is
/// (`timestamp without time zone`, [3]).
fn split_modifiers(formatted: &str) -> (String, Vec<u32>) {
    let (name, mods) = match (formatted.find('('), formatted.find(')')) {
        (Some(open), Some(close)) if open < close => {
            let mods = formatted[open + 1..close]
                .split(',')
                .filter_map(|m| m.trim().parse().ok())
                .collect();
            (format!("{}{}", &formatted[..open], &formatted[close + 1..]), mods)
        }
        _ => (formatted.to_owned(), Vec::new()),
    };
    (name.split_whitespace().collect::<Vec<_>>().join(" "), mods)
}

fn same(flink: &str, jdbc: &str) -> Mapped {
    Mapped {
        source: flink.to_owned(),
        sink: flink.to_owned(),
        conversion: None,
        jdbc: jdbc.to_owned(),
    }
}

fn converted(source: &str, sink: String, conversion: String, jdbc: &str) -> Mapped {
    Mapped {
        source: source.to_owned(),
        sink,
        conversion: Some(conversion),
        jdbc: jdbc.to_owned(),
    }
}

/// Maps a column's type under `settings`.
pub fn map_type(pg: &PgType, settings: &DebeziumSettings) -> Result<Mapped, Unmappable> {
    let formatted = pg.formatted.trim();
    if let Some(element) = formatted.strip_suffix("[]") {
        let element_type = PgType {
            formatted: element.to_owned(),
            is_enum: pg.is_enum,
            type_name: pg.type_name.trim_start_matches('_').to_owned(),
        };
        let inner = map_type(&element_type, settings)?;
        if inner.conversion.is_some() || inner.source != inner.sink {
            return Err(Unmappable(format!(
                "an array of {element}: its elements need a conversion ({} to {}) that Flink SQL cannot apply \
                 per element",
                inner.source, inner.sink
            )));
        }
        // The element's JDBC type: an enum is text in the sink database, which has no such type.
        return Ok(same(&format!("ARRAY<{}>", inner.source), &format!("{}[]", inner.jdbc)));
    }
    if pg.is_enum {
        // io.debezium.data.Enum: the label as a string. The sink database has no such enum type: text.
        return Ok(same("STRING", "text"));
    }
    let (name, mods) = split_modifiers(formatted);
    let precision = |default: u32| mods.first().copied().unwrap_or(default);
    let mapped = match name.as_str() {
        "boolean" => same("BOOLEAN", "boolean"),
        "smallint" => same("SMALLINT", "smallint"),
        "integer" => same("INT", "integer"),
        "bigint" => same("BIGINT", "bigint"),
        "oid" => same("BIGINT", "bigint"),
        "real" => same("FLOAT", "real"),
        "double precision" => same("DOUBLE", "double precision"),
        "numeric" => return numeric(formatted, &mods, settings),
        "money" => {
            return numeric("numeric(19,2)", &[19, 2], settings).map(|m| Mapped {
                jdbc: "money".into(),
                ..m
            });
        }
        "character varying" | "character" | "text" | "name" | "citext" | "xml" | "inet" | "cidr" | "macaddr"
        | "macaddr8" | "ltree" | "bpchar" => same("STRING", formatted),
        // Ranges: Debezium's string form (`[1,5)`), kept as text: the sink database's range type would need it cast.
        "int4range" | "int8range" | "numrange" | "tsrange" | "tstzrange" | "daterange" => same("STRING", "text"),
        "\"char\"" => same("STRING", "\"char\""),
        "uuid" => same("STRING", "uuid"),
        "json" | "jsonb" => same("STRING", formatted),
        "bytea" => match settings.binary {
            // Connect bytes reach JSON as standard base64, which Flink's JSON format decodes into BYTES.
            BinaryMode::Bytes | BinaryMode::Base64 => same("BYTES", "bytea"),
            BinaryMode::Base64UrlSafe | BinaryMode::Hex => same("STRING", "text"),
        },
        "bit" if precision(1) == 1 => same("BOOLEAN", "boolean"),
        "bit" | "bit varying" => same("BYTES", "bytea"),
        "date" => converted("INT", "DATE".into(), DAYS_TO_DATE.into(), "date"),
        "timestamp without time zone" => {
            let p = precision(6);
            let micros = p > 3 && settings.time != TimeMode::Connect;
            let (template, sink_p) = if micros {
                (MICROS_TO_TIMESTAMP, p)
            } else {
                (MILLIS_TO_TIMESTAMP, p.min(3))
            };
            converted(
                "BIGINT",
                format!("TIMESTAMP({sink_p})"),
                template.replace("{p}", &sink_p.to_string()),
                &format!("timestamp({p}) without time zone"),
            )
        }
        "timestamp with time zone" => {
            let p = precision(6);
            converted(
                "STRING",
                format!("TIMESTAMP_LTZ({p})"),
                ZONED_TO_LTZ.replace("{p}", &p.to_string()),
                &format!("timestamp({p}) with time zone"),
            )
        }
        "time without time zone" => {
            let p = precision(6);
            let micros = match settings.time {
                TimeMode::Connect => false,
                TimeMode::Adaptive => p > 3,
                TimeMode::AdaptiveTimeMicroseconds => true,
            };
            // Flink's TIME holds milliseconds: TIME(3) whatever Postgres's precision.
            let (source, template) = if micros {
                ("BIGINT", MICROS_TO_TIME)
            } else {
                ("INT", MILLIS_TO_TIME)
            };
            converted(
                source,
                "TIME(3)".into(),
                template.into(),
                &format!("time({p}) without time zone"),
            )
        }
        // io.debezium.time.ZonedTime: `HH:mm:ss.SSSSSSZ`; Flink has no time with a zone: kept as the text.
        "time with time zone" => same("STRING", "text"),
        "interval" => {
            if settings.interval_string {
                same("STRING", "text")
            } else {
                // io.debezium.time.MicroDuration: microseconds, approximating a month as 30.4375 days.
                same("BIGINT", "bigint")
            }
        }
        "hstore" => {
            if settings.hstore_map {
                same("MAP<STRING, STRING>", "hstore")
            } else {
                same("STRING", "text")
            }
        }
        other if pg.type_name == "hstore" => {
            return Err(Unmappable(format!("hstore under the name {other}")));
        }
        "point" | "geometry" | "geography" | "line" | "box" | "polygon" | "circle" | "path" | "lseg" => {
            return Err(Unmappable(
                "a geometric type: Debezium sends a struct (wkb and srid, x and y for a point) or nothing, and \
                 this command does not generate ROW types; declare the column by hand"
                    .to_owned(),
            ));
        }
        _ => {
            return Err(Unmappable(
                "a type Debezium's Postgres connector does not send by default, or this command does not know; \
                 write the column by hand"
                    .to_owned(),
            ));
        }
    };
    Ok(mapped)
}

fn numeric(formatted: &str, mods: &[u32], settings: &DebeziumSettings) -> Result<Mapped, Unmappable> {
    // Flink's DECIMAL holds at most 38 digits; an unconstrained numeric has no fixed scale.
    let fixed = match mods {
        [p, s] if *p <= 38 => Some(format!("DECIMAL({p},{s})")),
        [p] if *p <= 38 => Some(format!("DECIMAL({p},0)")),
        _ => None,
    };
    match (settings.decimal, fixed) {
        // `"12.50"`, which Flink's JSON format parses into DECIMAL(p,s) (the shipped templates read it so).
        (DecimalMode::String, Some(decimal)) => Ok(same(&decimal, formatted)),
        // Every digit, as written: the sink keeps the text (the JDBC sink's column too).
        (DecimalMode::String, None) => Ok(same("STRING", "text")),
        (DecimalMode::Double, Some(decimal)) => Ok(converted(
            "DOUBLE",
            decimal.clone(),
            format!("CAST({{}} AS {decimal})"),
            formatted,
        )),
        (DecimalMode::Double, None) => Ok(same("DOUBLE", "double precision")),
        (DecimalMode::Precise, Some(decimal)) if settings.decimal_numeric_json => Ok(same(&decimal, formatted)),
        (DecimalMode::Precise, Some(_)) => Err(Unmappable(format!(
            "{formatted} under decimal.handling.mode=precise: the JsonConverter writes the unscaled value as base64 \
             bytes, which Flink's JSON format cannot read as DECIMAL; set decimal.handling.mode=string (or \
             value.converter.decimal.format=NUMERIC)"
        ))),
        (DecimalMode::Precise, None) => Err(Unmappable(format!(
            "{formatted} without a precision of at most 38 under decimal.handling.mode=precise: Debezium sends a \
             struct of scale and base64 bytes; set decimal.handling.mode=string"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(formatted: &str) -> PgType {
        PgType {
            formatted: formatted.to_owned(),
            is_enum: false,
            type_name: String::new(),
        }
    }

    fn settings(pairs: &[(&str, &str)]) -> DebeziumSettings {
        let map = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        DebeziumSettings::from_config(&map).unwrap()
    }

    fn shipped() -> DebeziumSettings {
        settings(&[("decimal.handling.mode", "string"), ("time.precision.mode", "connect")])
    }

    fn triple(m: &Mapped) -> (&str, &str, Option<&str>) {
        (m.source.as_str(), m.sink.as_str(), m.conversion.as_deref())
    }

    #[test]
    fn the_university_types_map_as_the_shipped_templates_declare_them() {
        let s = shipped();
        let m = |t: &str| map_type(&pg(t), &s).unwrap();
        assert_eq!(triple(&m("integer")), ("INT", "INT", None));
        assert_eq!(triple(&m("character varying(20)")), ("STRING", "STRING", None));
        assert_eq!(triple(&m("text")), ("STRING", "STRING", None));
        assert_eq!(triple(&m("boolean")), ("BOOLEAN", "BOOLEAN", None));
        assert_eq!(triple(&m("numeric(12,2)")), ("DECIMAL(12,2)", "DECIMAL(12,2)", None));
        assert_eq!(
            triple(&m("timestamp without time zone")),
            (
                "BIGINT",
                "TIMESTAMP(3)",
                Some("CAST(TO_TIMESTAMP_LTZ({}, 3) AS TIMESTAMP(3))")
            )
        );
        assert_eq!(triple(&m("date")), ("INT", "DATE", Some(DAYS_TO_DATE)));
    }

    #[test]
    fn decimals_follow_decimal_handling_mode() {
        let string = shipped();
        assert_eq!(map_type(&pg("numeric"), &string).unwrap().source, "STRING");
        assert_eq!(map_type(&pg("numeric(5)"), &string).unwrap().sink, "DECIMAL(5,0)");
        assert_eq!(map_type(&pg("numeric(60,2)"), &string).unwrap().sink, "STRING");
        let double = settings(&[("decimal.handling.mode", "double")]);
        assert_eq!(
            triple(&map_type(&pg("numeric(12,2)"), &double).unwrap()),
            ("DOUBLE", "DECIMAL(12,2)", Some("CAST({} AS DECIMAL(12,2))"))
        );
        assert_eq!(
            triple(&map_type(&pg("numeric"), &double).unwrap()),
            ("DOUBLE", "DOUBLE", None)
        );
        let precise = settings(&[("decimal.handling.mode", "precise")]);
        let err = map_type(&pg("numeric(12,2)"), &precise).unwrap_err();
        assert!(err.0.contains("base64"), "{err:?}");
        assert!(map_type(&pg("numeric"), &precise).unwrap_err().0.contains("struct"));
        let numeric_json = settings(&[("value.converter.decimal.format", "NUMERIC")]);
        assert_eq!(
            map_type(&pg("numeric(12,2)"), &numeric_json).unwrap().source,
            "DECIMAL(12,2)"
        );
        assert_eq!(map_type(&pg("money"), &string).unwrap().sink, "DECIMAL(19,2)");
    }

    #[test]
    fn times_follow_time_precision_mode() {
        let connect = shipped();
        let adaptive = settings(&[("decimal.handling.mode", "string")]);
        let micro_time = settings(&[("time.precision.mode", "adaptive_time_microseconds")]);
        // connect: milliseconds whatever the precision.
        assert_eq!(
            map_type(&pg("timestamp(6) without time zone"), &connect).unwrap().sink,
            "TIMESTAMP(3)"
        );
        assert_eq!(map_type(&pg("time without time zone"), &connect).unwrap().source, "INT");
        // adaptive: microseconds above precision 3.
        let ts = map_type(&pg("timestamp(6) without time zone"), &adaptive).unwrap();
        assert_eq!(
            triple(&ts),
            (
                "BIGINT",
                "TIMESTAMP(6)",
                Some("CAST(TO_TIMESTAMP_LTZ({} / 1000, 3) AS TIMESTAMP(6))")
            )
        );
        let ts3 = map_type(&pg("timestamp(3) without time zone"), &adaptive).unwrap();
        assert_eq!(ts3.sink, "TIMESTAMP(3)");
        assert_eq!(
            ts3.conversion.as_deref(),
            Some("CAST(TO_TIMESTAMP_LTZ({}, 3) AS TIMESTAMP(3))")
        );
        assert_eq!(
            map_type(&pg("time(3) without time zone"), &adaptive).unwrap().source,
            "INT"
        );
        assert_eq!(
            map_type(&pg("time without time zone"), &adaptive).unwrap().source,
            "BIGINT"
        );
        assert_eq!(
            map_type(&pg("time(3) without time zone"), &micro_time).unwrap().source,
            "BIGINT"
        );
        assert_eq!(
            map_type(&pg("time(3) without time zone"), &micro_time).unwrap().sink,
            "TIME(3)"
        );
        // Zoned kinds are strings in every mode.
        for s in [&connect, &adaptive, &micro_time] {
            let tz = map_type(&pg("timestamp with time zone"), s).unwrap();
            assert_eq!((tz.source.as_str(), tz.sink.as_str()), ("STRING", "TIMESTAMP_LTZ(6)"));
            assert_eq!(map_type(&pg("time with time zone"), s).unwrap().sink, "STRING");
            assert_eq!(map_type(&pg("date"), s).unwrap().sink, "DATE");
        }
    }

    #[test]
    fn binary_interval_and_hstore_follow_their_modes() {
        let bytes = DebeziumSettings::default();
        assert_eq!(map_type(&pg("bytea"), &bytes).unwrap().source, "BYTES");
        let hex = settings(&[("binary.handling.mode", "hex")]);
        assert_eq!(map_type(&pg("bytea"), &hex).unwrap().source, "STRING");
        assert_eq!(map_type(&pg("interval"), &bytes).unwrap().source, "BIGINT");
        let interval = settings(&[("interval.handling.mode", "string")]);
        assert_eq!(map_type(&pg("interval"), &interval).unwrap().source, "STRING");
        let hstore = PgType {
            type_name: "hstore".into(),
            ..pg("hstore")
        };
        assert_eq!(map_type(&hstore, &bytes).unwrap().source, "STRING");
        let map = settings(&[("hstore.handling.mode", "map")]);
        assert_eq!(map_type(&hstore, &map).unwrap().source, "MAP<STRING, STRING>");
        assert_eq!(
            DebeziumSettings::from_config(&BTreeMap::from([("time.precision.mode".into(), "nanos".into())])),
            Err(("time.precision.mode".into(), "nanos".into()))
        );
    }

    #[test]
    fn other_common_types_arrays_and_enums() {
        let s = shipped();
        for (t, flink) in [
            ("uuid", "STRING"),
            ("json", "STRING"),
            ("jsonb", "STRING"),
            ("smallint", "SMALLINT"),
            ("bigint", "BIGINT"),
            ("real", "FLOAT"),
            ("double precision", "DOUBLE"),
            ("character(3)", "STRING"),
            ("oid", "BIGINT"),
            ("int4range", "STRING"),
            ("tstzrange", "STRING"),
            ("integer[]", "ARRAY<INT>"),
            ("text[]", "ARRAY<STRING>"),
            ("numeric(5,2)[]", "ARRAY<DECIMAL(5,2)>"),
        ] {
            let m = map_type(&pg(t), &s).unwrap();
            assert_eq!((m.source.as_str(), m.sink.as_str()), (flink, flink), "{t}");
        }
        let mood = PgType {
            formatted: "mood".into(),
            is_enum: true,
            type_name: "mood".into(),
        };
        assert_eq!(triple(&map_type(&mood, &s).unwrap()), ("STRING", "STRING", None));
        assert_eq!(map_type(&mood, &s).unwrap().jdbc, "text");
        let moods = PgType {
            formatted: "mood[]".into(),
            ..mood
        };
        assert_eq!(map_type(&moods, &s).unwrap().sink, "ARRAY<STRING>");
        assert_eq!(map_type(&moods, &s).unwrap().jdbc, "text[]");
        let dates = map_type(&pg("date[]"), &s).unwrap_err();
        assert!(dates.0.contains("per element"), "{dates:?}");
        assert!(map_type(&pg("point"), &s).unwrap_err().0.contains("geometric"));
        assert!(map_type(&pg("tsvector"), &s).unwrap_err().0.contains("does not send"));
    }
}
