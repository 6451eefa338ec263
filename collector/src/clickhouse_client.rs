//! The ClickHouse HTTP client built from the configuration, and the classification of its errors
//! into "the rows are bad" (never retried) and everything else (retried).
use crate::config::{ClickHouseArgs, Compression};

/// A client for `args`, optionally without a database (to create it).
pub fn client(args: &ClickHouseArgs, with_database: bool) -> clickhouse::Client {
    let mut c = clickhouse::Client::default()
        .with_url(args.clickhouse_url.clone())
        .with_compression(match args.clickhouse_compression {
            Compression::Lz4 => clickhouse::Compression::Lz4,
            Compression::None => clickhouse::Compression::None,
        });
    if with_database {
        c = c.with_database(args.clickhouse_database.clone());
    }
    if let Some(user) = &args.clickhouse_user {
        c = c.with_user(user.clone());
    }
    if let Some(password) = &args.clickhouse_password {
        c = c.with_password(password.clone());
    }
    c
}

/// ClickHouse error codes that mean the data itself was refused (parse errors, type mismatch,
/// values out of range, violated constraints): retrying the same rows cannot succeed.
const DATA_ERROR_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    469, // VIOLATED_CONSTRAINT
    691, // UNKNOWN_ELEMENT_OF_ENUM
];

/// The `Code: N` of a ClickHouse error reply, if the error is one.
pub fn error_code(e: &clickhouse::error::Error) -> Option<u32> {
    let clickhouse::error::Error::BadResponse(msg) = e else {
        return None;
    };
    let rest = msg.split_once("Code: ")?.1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// True when the rows themselves were refused: they go to the dead-letter file.
pub fn is_data_error(e: &clickhouse::error::Error) -> bool {
    // A client-side schema check failing is the same fault as ClickHouse's TYPE_MISMATCH.
    matches!(e, clickhouse::error::Error::SchemaMismatch(_))
        || error_code(e).is_some_and(|c| DATA_ERROR_CODES.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_error_replies() {
        let bad = clickhouse::error::Error::BadResponse(
            "Code: 117. DB::Exception: Incorrect data. (INCORRECT_DATA)".into(),
        );
        assert_eq!(error_code(&bad), Some(117));
        assert!(is_data_error(&bad));
        let missing = clickhouse::error::Error::BadResponse(
            "Code: 60. DB::Exception: Unknown table. (UNKNOWN_TABLE)".into(),
        );
        assert!(!is_data_error(&missing));
        assert!(!is_data_error(&clickhouse::error::Error::TimedOut));
    }
}
