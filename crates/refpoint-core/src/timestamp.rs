//! [`Timestamp`]: a UTC instant with microsecond precision (the precision of a
//! CIM datetime, DSP0004), stored in the catalog as RFC 3339 text.

use std::fmt;

use refpoint_cim::CimDateTime;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A UTC instant, microsecond precision (e.g. `CreationTime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current time, truncated to microseconds.
    pub fn now() -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }

    /// Converts to UTC and truncates to microseconds.
    pub fn from_datetime(t: OffsetDateTime) -> Timestamp {
        let t = t.to_offset(UtcOffset::UTC);
        let micros = t.microsecond();
        // `replace_microsecond` only fails for values > 999_999, which
        // `microsecond()` never returns; keep `t` unchanged in that case.
        Timestamp(t.replace_microsecond(micros).unwrap_or(t))
    }

    /// The instant as a `time` value (UTC).
    pub fn datetime(&self) -> OffsetDateTime {
        self.0
    }

    /// The instant as a CIM datetime (DSP0004), UTC. Falls back to the
    /// "unknown" datetime for years outside 0..=9999, which RFC 3339 text and
    /// the system clock never produce.
    pub fn to_cim(&self) -> CimDateTime {
        CimDateTime::try_from(self.0).unwrap_or(CimDateTime::unknown())
    }

    /// Human form used in snapshot names: `YYYY-MM-DD - HH:MM:SS` (UTC).
    pub fn to_display_string(&self) -> String {
        let t = self.0;
        format!(
            "{:04}-{:02}-{:02} - {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}", self.to_cim()),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.0.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let t = OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time: {e}"))
        })?;
        Ok(Timestamp::from_datetime(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn cim_string_has_dmtf_form() {
        let t = Timestamp::from_datetime(datetime!(2024-03-14 10:22:33.123456789 +01:00));
        assert_eq!(t.to_cim().to_string(), "20240314092233.123456+000");
    }

    #[test]
    fn serde_round_trips_through_rfc3339() {
        let t = Timestamp::from_datetime(datetime!(2024-03-14 10:22:33.5 UTC));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2024-03-14T10:22:33.5Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn non_rfc3339_text_is_refused_with_the_text() {
        let err = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(err.to_string().contains("yesterday"), "{err}");
    }
}
