//! DSP0004 `datetime` values: timestamps `yyyymmddHHMMSS.mmmmmmsUUU` and
//! intervals `ddddddddHHMMSS.mmmmmm:000` (DSP0004 §5.2.4; WMI "Interval
//! Format"; MS-WMI 2.2.2 DATETIME).
//!
//! Precision is one microsecond; finer parts of a `time::OffsetDateTime` or
//! `std::time::Duration` are truncated. The UTC offset `sUUU` is in minutes.
//!
//! Asterisks (DSP0004 "not significant" fields) are handled as follows:
//! * a timestamp whose date and time digits are all `*` or all `0`
//!   (`00000000000000.000000+000`, which `Msvm_ConcreteJob` uses for "not
//!   known") parses as [`CimDateTime::unknown`]; it displays as the all-zero form;
//! * trailing asterisks in the microseconds field (reduced precision,
//!   `20240102030405.123***+000`) read as zeros;
//! * an asterisk anywhere else is an error ([`DateTimeError::Wildcard`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Length in characters of both DMTF forms.
const DMTF_LEN: usize = 25;
/// Largest day count an interval can hold (8 digits).
const MAX_INTERVAL_DAYS: u64 = 99_999_999;
/// Largest UTC offset a timestamp can carry (3 digits of minutes).
const MAX_OFFSET_MINUTES: i32 = 999;

/// Why a DMTF datetime or interval string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateTimeError {
    /// Both forms are exactly 25 characters long.
    #[error("DMTF datetime must be {DMTF_LEN} characters, found {found}")]
    Length {
        /// Characters found.
        found: usize,
    },
    /// A character outside ASCII (the DMTF forms are ASCII only).
    #[error("non-ASCII character at byte {offset}")]
    NotAscii {
        /// Byte offset of the first non-ASCII character.
        offset: usize,
    },
    /// A fixed separator (`.`, `+`/`-`, `:`) is missing.
    #[error("expected {expected} at character {offset}, found {found:?}")]
    Separator {
        /// Character index (0-based).
        offset: usize,
        /// What the format requires there.
        expected: &'static str,
        /// What was found.
        found: char,
    },
    /// A field holds something other than decimal digits.
    #[error("field {field} at character {offset} is not decimal digits")]
    NotDigit {
        /// Field name (`year`, `month`, `minutes`, …).
        field: &'static str,
        /// Character index of the field.
        offset: usize,
    },
    /// A field is an asterisk wildcard where this implementation requires a value.
    #[error(
        "field {field} is a '*' wildcard; only an all-unknown timestamp or trailing microsecond wildcards are supported"
    )]
    Wildcard {
        /// Field name.
        field: &'static str,
    },
    /// A field is out of its range (month 13, hour 24, …).
    #[error("field {field} value {value} is out of range")]
    OutOfRange {
        /// Field name.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// The text is an interval where a timestamp is required, or vice versa.
    #[error("expected a {expected}, found a {found}")]
    WrongForm {
        /// `"timestamp"` or `"interval"`.
        expected: &'static str,
        /// The other one.
        found: &'static str,
    },
    /// The value cannot be represented in DMTF form (year outside 0..=9999,
    /// offset beyond ±999 minutes, interval beyond 99999999 days).
    #[error("{what} cannot be represented in DMTF form")]
    Unrepresentable {
        /// What overflowed.
        what: &'static str,
    },
}

/// A DSP0004 timestamp `yyyymmddHHMMSS.mmmmmmsUUU`, or "unknown"
/// (`00000000000000.000000+000`).
///
/// Equality and hashing compare instants, as `time::OffsetDateTime` does:
/// `20240101120000.000000+060` equals `20240101110000.000000+000` although
/// the texts differ. The offset is kept and written back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CimDateTime {
    at: Option<OffsetDateTime>,
}

impl CimDateTime {
    /// The "not known" timestamp, displayed `00000000000000.000000+000`.
    pub const fn unknown() -> CimDateTime {
        CimDateTime { at: None }
    }

    /// True for [`CimDateTime::unknown`].
    pub fn is_unknown(&self) -> bool {
        self.at.is_none()
    }

    /// The current time in UTC, truncated to microseconds.
    pub fn now_utc() -> CimDateTime {
        // The current year is always representable.
        CimDateTime::try_from(OffsetDateTime::now_utc()).unwrap_or(CimDateTime::unknown())
    }

    /// The instant with its offset, or `None` when unknown.
    pub fn to_offset_date_time(&self) -> Option<OffsetDateTime> {
        self.at
    }
}

impl TryFrom<OffsetDateTime> for CimDateTime {
    type Error = DateTimeError;

    /// Truncates to microseconds and the offset to whole minutes.
    ///
    /// # Errors
    /// [`DateTimeError::Unrepresentable`] for years outside 0..=9999 or
    /// offsets beyond ±999 minutes.
    fn try_from(dt: OffsetDateTime) -> Result<Self, Self::Error> {
        let minutes = dt.offset().whole_minutes();
        if i32::from(minutes).abs() > MAX_OFFSET_MINUTES {
            return Err(DateTimeError::Unrepresentable { what: "UTC offset" });
        }
        let offset = UtcOffset::from_whole_seconds(i32::from(minutes) * 60)
            .map_err(|_| DateTimeError::Unrepresentable { what: "UTC offset" })?;
        let dt = dt.to_offset(offset);
        if !(0..=9999).contains(&dt.year()) {
            return Err(DateTimeError::Unrepresentable { what: "year" });
        }
        let micros = dt.microsecond();
        let dt = dt
            .replace_microsecond(micros)
            .map_err(|_| DateTimeError::Unrepresentable {
                what: "microseconds",
            })?;
        Ok(CimDateTime { at: Some(dt) })
    }
}

impl fmt::Display for CimDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            None => f.write_str("00000000000000.000000+000"),
            Some(dt) => {
                let minutes = dt.offset().whole_minutes();
                let sign = if minutes < 0 { '-' } else { '+' };
                write!(
                    f,
                    "{:04}{:02}{:02}{:02}{:02}{:02}.{:06}{}{:03}",
                    dt.year(),
                    u8::from(dt.month()),
                    dt.day(),
                    dt.hour(),
                    dt.minute(),
                    dt.second(),
                    dt.microsecond(),
                    sign,
                    minutes.unsigned_abs()
                )
            }
        }
    }
}

/// Character-level view of a 25-character DMTF string.
struct Fields<'a> {
    chars: &'a [u8],
}

impl Fields<'_> {
    fn new(text: &str) -> Result<Fields<'_>, DateTimeError> {
        let chars = text.as_bytes();
        if let Some(offset) = chars.iter().position(|b| !b.is_ascii()) {
            return Err(DateTimeError::NotAscii { offset });
        }
        if chars.len() != DMTF_LEN {
            return Err(DateTimeError::Length { found: chars.len() });
        }
        Ok(Fields { chars })
    }

    fn slice(&self, start: usize, len: usize) -> &[u8] {
        self.chars.get(start..start + len).unwrap_or(&[])
    }

    fn at(&self, offset: usize) -> char {
        self.chars.get(offset).map_or('\0', |&b| char::from(b))
    }

    fn all_wild(&self, start: usize, len: usize) -> bool {
        self.slice(start, len).iter().all(|&b| b == b'*')
    }

    /// Reads a decimal field; wildcards are rejected.
    fn number(&self, field: &'static str, start: usize, len: usize) -> Result<u64, DateTimeError> {
        let bytes = self.slice(start, len);
        if bytes.contains(&b'*') {
            return Err(DateTimeError::Wildcard { field });
        }
        digits(bytes).ok_or(DateTimeError::NotDigit {
            field,
            offset: start,
        })
    }

    /// Reads the 6-digit microsecond field at `start`; trailing `*` read as 0.
    fn micros(&self, start: usize) -> Result<u64, DateTimeError> {
        let bytes = self.slice(start, 6);
        let significant = bytes.iter().take_while(|&&b| b != b'*').count();
        let (head, tail) = bytes.split_at(significant);
        if tail.iter().any(|&b| b != b'*') {
            return Err(DateTimeError::Wildcard {
                field: "microseconds",
            });
        }
        let head_value = if head.is_empty() {
            0
        } else {
            digits(head).ok_or(DateTimeError::NotDigit {
                field: "microseconds",
                offset: start,
            })?
        };
        Ok(head_value * 10u64.pow(u32::try_from(tail.len()).unwrap_or(0)))
    }

    fn separator(
        &self,
        offset: usize,
        expected: &'static str,
        ok: &[u8],
    ) -> Result<u8, DateTimeError> {
        match self.chars.get(offset) {
            Some(b) if ok.contains(b) => Ok(*b),
            _ => Err(DateTimeError::Separator {
                offset,
                expected,
                found: self.at(offset),
            }),
        }
    }
}

fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn in_range(field: &'static str, value: u64, max: u64) -> Result<u8, DateTimeError> {
    u8::try_from(value)
        .ok()
        .filter(|_| value <= max)
        .ok_or(DateTimeError::OutOfRange { field, value })
}

impl FromStr for CimDateTime {
    type Err = DateTimeError;

    /// Parses `yyyymmddHHMMSS.mmmmmmsUUU` (see the module docs for asterisks).
    ///
    /// # Errors
    /// [`DateTimeError`] naming the field or character offset.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let f = Fields::new(s)?;
        if f.at(21) == ':' {
            return Err(DateTimeError::WrongForm {
                expected: "timestamp",
                found: "interval",
            });
        }
        f.separator(14, "'.'", b".")?;
        let sign = f.separator(21, "'+' or '-'", b"+-")?;
        let date_time = [f.slice(0, 14), f.slice(15, 6)].concat();
        if date_time.iter().all(|&b| b == b'*') || date_time.iter().all(|&b| b == b'0') {
            return Ok(CimDateTime::unknown());
        }
        let year = f.number("year", 0, 4)?;
        let month = f.number("month", 4, 2)?;
        let day = f.number("day", 6, 2)?;
        let hour = f.number("hours", 8, 2)?;
        let minute = f.number("minutes", 10, 2)?;
        let second = f.number("seconds", 12, 2)?;
        let micros = f.micros(15)?;
        let offset_minutes = f.number("UTC offset", 22, 3)?;

        let month = Month::try_from(in_range("month", month, 12)?).map_err(|_| {
            DateTimeError::OutOfRange {
                field: "month",
                value: month,
            }
        })?;
        let year = i32::try_from(year).map_err(|_| DateTimeError::OutOfRange {
            field: "year",
            value: year,
        })?;
        let date =
            Date::from_calendar_date(year, month, in_range("day", day, 31)?).map_err(|_| {
                DateTimeError::OutOfRange {
                    field: "day",
                    value: day,
                }
            })?;
        let micros_u32 = u32::try_from(micros).map_err(|_| DateTimeError::OutOfRange {
            field: "microseconds",
            value: micros,
        })?;
        let time = Time::from_hms_micro(
            in_range("hours", hour, 23)?,
            in_range("minutes", minute, 59)?,
            in_range("seconds", second, 59)?,
            micros_u32,
        )
        .map_err(|_| DateTimeError::OutOfRange {
            field: "time",
            value: hour,
        })?;
        let minutes = i32::try_from(offset_minutes).unwrap_or(i32::MAX);
        let minutes = if sign == b'-' { -minutes } else { minutes };
        let offset =
            UtcOffset::from_whole_seconds(minutes * 60).map_err(|_| DateTimeError::OutOfRange {
                field: "UTC offset",
                value: offset_minutes,
            })?;
        Ok(CimDateTime {
            at: Some(PrimitiveDateTime::new(date, time).assume_offset(offset)),
        })
    }
}

/// A DSP0004 interval `ddddddddHHMMSS.mmmmmm:000`: a non-negative duration of
/// at most 99 999 999 days, with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CimInterval {
    micros: u64,
}

impl CimInterval {
    /// The zero interval `00000000000000.000000:000`.
    pub const ZERO: CimInterval = CimInterval { micros: 0 };

    /// The interval as a `Duration`.
    pub fn as_duration(&self) -> Duration {
        Duration::from_micros(self.micros)
    }

    /// Converts a `Duration`, truncating to microseconds and saturating at the
    /// largest representable interval (99 999 999 days 23:59:59.999999).
    pub fn saturating_from_duration(d: Duration) -> CimInterval {
        CimInterval::try_from(d).unwrap_or(CimInterval {
            micros: max_interval_micros(),
        })
    }

    /// Total microseconds.
    pub fn as_micros(&self) -> u64 {
        self.micros
    }
}

const fn max_interval_micros() -> u64 {
    (MAX_INTERVAL_DAYS + 1) * 86_400_000_000 - 1
}

impl TryFrom<Duration> for CimInterval {
    type Error = DateTimeError;

    /// Truncates to microseconds.
    ///
    /// # Errors
    /// [`DateTimeError::Unrepresentable`] beyond 99 999 999 days.
    fn try_from(d: Duration) -> Result<Self, Self::Error> {
        let micros = u64::try_from(d.as_micros())
            .ok()
            .filter(|&m| m <= max_interval_micros())
            .ok_or(DateTimeError::Unrepresentable { what: "interval" })?;
        Ok(CimInterval { micros })
    }
}

impl From<CimInterval> for Duration {
    fn from(i: CimInterval) -> Duration {
        i.as_duration()
    }
}

impl fmt::Display for CimInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.micros % 1_000_000;
        let secs = self.micros / 1_000_000;
        let days = secs / 86_400;
        let hours = secs / 3_600 % 24;
        let minutes = secs / 60 % 60;
        let seconds = secs % 60;
        write!(
            f,
            "{days:08}{hours:02}{minutes:02}{seconds:02}.{micros:06}:000"
        )
    }
}

impl FromStr for CimInterval {
    type Err = DateTimeError;

    /// Parses `ddddddddHHMMSS.mmmmmm:000`; trailing microsecond asterisks read
    /// as zeros, any other asterisk is [`DateTimeError::Wildcard`].
    ///
    /// # Errors
    /// [`DateTimeError`] naming the field or character offset.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let f = Fields::new(s)?;
        if matches!(f.at(21), '+' | '-') {
            return Err(DateTimeError::WrongForm {
                expected: "interval",
                found: "timestamp",
            });
        }
        f.separator(14, "'.'", b".")?;
        f.separator(21, "':'", b":")?;
        if f.slice(22, 3) != b"000" {
            return Err(DateTimeError::Separator {
                offset: 22,
                expected: "\"000\"",
                found: f.at(22),
            });
        }
        if f.all_wild(0, 8) {
            return Err(DateTimeError::Wildcard { field: "days" });
        }
        let days = f.number("days", 0, 8)?;
        let hours = u64::from(in_range("hours", f.number("hours", 8, 2)?, 23)?);
        let minutes = u64::from(in_range("minutes", f.number("minutes", 10, 2)?, 59)?);
        let seconds = u64::from(in_range("seconds", f.number("seconds", 12, 2)?, 59)?);
        let micros = f.micros(15)?;
        // days ≤ 99 999 999, so this stays far below u64::MAX.
        let total_secs = ((days * 24 + hours) * 60 + minutes) * 60 + seconds;
        Ok(CimInterval {
            micros: total_secs * 1_000_000 + micros,
        })
    }
}

macro_rules! serde_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_text!(CimDateTime);
serde_as_text!(CimInterval);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamp_parses_fields_and_negative_offset() {
        let text = "20240229235958.123456-300";

        let dt: CimDateTime = text.parse().unwrap();

        let odt = dt.to_offset_date_time().unwrap();
        assert_eq!(odt.year(), 2024);
        assert_eq!(u8::from(odt.month()), 2);
        assert_eq!(odt.day(), 29);
        assert_eq!(odt.microsecond(), 123_456);
        assert_eq!(odt.offset().whole_minutes(), -300);
        assert_eq!(dt.to_string(), text);
    }

    #[test]
    fn all_zero_timestamp_is_unknown_and_round_trips() {
        let dt: CimDateTime = "00000000000000.000000+000".parse().unwrap();

        assert!(dt.is_unknown());
        assert_eq!(dt.to_string(), "00000000000000.000000+000");
    }

    #[test]
    fn all_asterisk_timestamp_is_unknown() {
        let dt: CimDateTime = "**************.******+000".parse().unwrap();

        assert!(dt.is_unknown());
    }

    #[test]
    fn trailing_microsecond_asterisks_read_as_zero() {
        let dt: CimDateTime = "20240102030405.12****+000".parse().unwrap();

        assert_eq!(dt.to_offset_date_time().unwrap().microsecond(), 120_000);
    }

    #[test]
    fn asterisk_in_hours_is_wildcard_error() {
        let err = "20240102**0405.000000+000"
            .parse::<CimDateTime>()
            .unwrap_err();

        assert_eq!(err, DateTimeError::Wildcard { field: "hours" });
    }

    #[test]
    fn timestamp_with_wrong_length_is_rejected() {
        let err = "20240102030405.000000+00"
            .parse::<CimDateTime>()
            .unwrap_err();

        assert_eq!(err, DateTimeError::Length { found: 24 });
    }

    #[test]
    fn timestamp_with_month_13_is_out_of_range() {
        let err = "20241302030405.000000+000"
            .parse::<CimDateTime>()
            .unwrap_err();

        assert_eq!(
            err,
            DateTimeError::OutOfRange {
                field: "month",
                value: 13
            }
        );
    }

    #[test]
    fn timestamp_feb_30_is_out_of_range_day() {
        let err = "20230230030405.000000+000"
            .parse::<CimDateTime>()
            .unwrap_err();

        assert_eq!(
            err,
            DateTimeError::OutOfRange {
                field: "day",
                value: 30
            }
        );
    }

    #[test]
    fn timestamp_with_letter_names_field() {
        let err = "2024010203x405.000000+000"
            .parse::<CimDateTime>()
            .unwrap_err();

        assert_eq!(
            err,
            DateTimeError::NotDigit {
                field: "minutes",
                offset: 10
            }
        );
    }

    #[test]
    fn timestamp_missing_dot_names_offset() {
        let err = "20240102030405-000000+000"
            .parse::<CimDateTime>()
            .unwrap_err();

        assert_eq!(
            err,
            DateTimeError::Separator {
                offset: 14,
                expected: "'.'",
                found: '-'
            }
        );
    }

    #[test]
    fn interval_text_is_not_a_timestamp() {
        let err = "00000000000500.000000:000"
            .parse::<CimDateTime>()
            .unwrap_err();

        assert_eq!(
            err,
            DateTimeError::WrongForm {
                expected: "timestamp",
                found: "interval"
            }
        );
    }

    #[test]
    fn five_minute_interval_is_300_seconds() {
        let i: CimInterval = "00000000000500.000000:000".parse().unwrap();

        assert_eq!(i.as_duration(), Duration::from_secs(300));
        assert_eq!(i.to_string(), "00000000000500.000000:000");
    }

    #[test]
    fn interval_with_days_and_micros_formats_all_fields() {
        let d = Duration::from_micros(((3 * 86_400 + 4 * 3600 + 5 * 60 + 6) * 1_000_000) + 7);

        let i = CimInterval::try_from(d).unwrap();

        assert_eq!(i.to_string(), "00000003040506.000007:000");
    }

    #[test]
    fn interval_with_hours_24_is_out_of_range() {
        let err = "00000000240000.000000:000"
            .parse::<CimInterval>()
            .unwrap_err();

        assert_eq!(
            err,
            DateTimeError::OutOfRange {
                field: "hours",
                value: 24
            }
        );
    }

    #[test]
    fn interval_with_nonzero_suffix_is_rejected() {
        let err = "00000000000500.000000:001"
            .parse::<CimInterval>()
            .unwrap_err();

        assert!(matches!(err, DateTimeError::Separator { offset: 22, .. }));
    }

    #[test]
    fn interval_with_wildcard_days_is_rejected() {
        let err = "********000500.000000:000"
            .parse::<CimInterval>()
            .unwrap_err();

        assert_eq!(err, DateTimeError::Wildcard { field: "days" });
    }

    #[test]
    fn timestamp_text_is_not_an_interval() {
        let err = "20240102030405.000000+000"
            .parse::<CimInterval>()
            .unwrap_err();

        assert_eq!(
            err,
            DateTimeError::WrongForm {
                expected: "interval",
                found: "timestamp"
            }
        );
    }

    #[test]
    fn duration_beyond_max_days_is_unrepresentable_and_saturates() {
        let d = Duration::from_secs(100_000_000 * 86_400);

        let err = CimInterval::try_from(d).unwrap_err();
        let sat = CimInterval::saturating_from_duration(d);

        assert_eq!(err, DateTimeError::Unrepresentable { what: "interval" });
        assert_eq!(sat.to_string(), "99999999235959.999999:000");
    }

    #[test]
    fn offset_beyond_999_minutes_is_unrepresentable() {
        let odt = OffsetDateTime::UNIX_EPOCH.to_offset(UtcOffset::from_hms(17, 0, 0).unwrap());

        let err = CimDateTime::try_from(odt).unwrap_err();

        assert_eq!(err, DateTimeError::Unrepresentable { what: "UTC offset" });
    }

    #[test]
    fn non_ascii_text_is_rejected_without_panic() {
        let err = "2024010203040é.000000+000"
            .parse::<CimDateTime>()
            .unwrap_err();

        assert_eq!(err, DateTimeError::NotAscii { offset: 13 });
    }

    #[test]
    fn same_instant_in_two_offsets_is_equal_but_keeps_its_text() {
        let a: CimDateTime = "20240101120000.000000+060".parse().unwrap();
        let b: CimDateTime = "20240101110000.000000+000".parse().unwrap();

        assert_eq!(a, b);
        assert_eq!(a.to_string(), "20240101120000.000000+060");
    }

    proptest! {
        #[test]
        fn timestamp_round_trips_through_text(
            secs in 0i64..253_402_300_799, micros in 0u32..1_000_000, offset in -999i32..=999
        ) {
            let odt = OffsetDateTime::from_unix_timestamp(secs).unwrap()
                .replace_microsecond(micros).unwrap()
                .to_offset(UtcOffset::from_whole_seconds(offset * 60).unwrap());
            prop_assume!((0..=9999).contains(&odt.year()));
            let dt = CimDateTime::try_from(odt).unwrap();

            let back: CimDateTime = dt.to_string().parse().unwrap();

            prop_assert_eq!(back, dt);
            prop_assert_eq!(back.to_string(), dt.to_string());
            prop_assert_eq!(back.to_offset_date_time().unwrap().offset(), odt.offset());
            prop_assert_eq!(back.to_offset_date_time().unwrap(), odt);
        }

        #[test]
        fn interval_round_trips_through_text(micros in 0u64..=max_interval_micros()) {
            let i = CimInterval::try_from(Duration::from_micros(micros)).unwrap();

            let back: CimInterval = i.to_string().parse().unwrap();

            prop_assert_eq!(back, i);
            prop_assert_eq!(back.as_micros(), micros);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,30}") {
            let _ = s.parse::<CimDateTime>();
            let _ = s.parse::<CimInterval>();
        }
    }
}
