//! Reading columns portably: text that MySQL/MariaDB hand over as bytes, and JSON as text. The
//! row ⇄ struct mapping of each table sits next to its queries in `sql/<aggregate>.rs`.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{StoreError, StoreResult};

/// Parses a JSON text column; `Corrupt` names `what` when it does not parse.
pub fn json<T: serde::de::DeserializeOwned>(raw: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Reads a text column. MySQL/MariaDB report `TEXT`/`LONGTEXT` as `BLOB` through sqlx `Any`, so
/// a string that arrives as bytes is accepted when it is valid UTF-8.
pub fn opt_text(row: &AnyRow, col: &str) -> StoreResult<Option<String>> {
    match row.try_get::<Option<String>, _>(col) {
        Ok(v) => Ok(v),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let bytes: Option<Vec<u8>> = row.try_get(col)?;
            bytes
                .map(|b| {
                    String::from_utf8(b)
                        .map_err(|_| StoreError::Corrupt(format!("{col}: not UTF-8")))
                })
                .transpose()
        }
        Err(e) => Err(e.into()),
    }
}

pub fn text(row: &AnyRow, col: &str) -> StoreResult<String> {
    opt_text(row, col)?.ok_or_else(|| StoreError::Corrupt(format!("{col} is NULL")))
}

pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("model types always serialize")
}

/// Reads an integer column that may arrive as a 32-bit integer: an expression of integer
/// literals (a `CASE … THEN 3`) is `INT4` on PostgreSQL and `INT` on MySQL/MariaDB.
pub fn int(row: &AnyRow, col: &str) -> StoreResult<i64> {
    match row.try_get::<i64, _>(col) {
        Ok(v) => Ok(v),
        Err(sqlx::Error::ColumnDecode { .. }) => Ok(row.try_get::<i32, _>(col)?.into()),
        Err(e) => Err(e.into()),
    }
}
