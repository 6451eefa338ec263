//! Time windows of a rule: days of the week and a time-of-day range, in UTC.
use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// `{days: [mon, tue], start: "09:00", end: "17:30"}`, UTC. `start` is inclusive and `end`
/// exclusive; an `end` before `start` wraps past midnight (`22:00`–`06:00`). Without days, every
/// day; without start/end, the whole day.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    pub days: Vec<Weekday>,
    /// Minutes after midnight.
    pub start: u16,
    pub end: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    days: Vec<Day>,
    start: Option<String>,
    end: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl From<Day> for Weekday {
    fn from(d: Day) -> Self {
        match d {
            Day::Mon => Weekday::Mon,
            Day::Tue => Weekday::Tue,
            Day::Wed => Weekday::Wed,
            Day::Thu => Weekday::Thu,
            Day::Fri => Weekday::Fri,
            Day::Sat => Weekday::Sat,
            Day::Sun => Weekday::Sun,
        }
    }
}

const DAY_END: u16 = 24 * 60;

fn hhmm(s: &str) -> Result<u16, String> {
    let bad = || format!("invalid time of day {s:?}: use HH:MM in UTC, 00:00 to 24:00");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h * 60 + m > DAY_END {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl TimeWindow {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let minute = (t.hour() * 60 + t.minute()) as u16;
        let day = t.weekday();
        if self.start <= self.end {
            (self.days.is_empty() || self.days.contains(&day))
                && minute >= self.start
                && minute < self.end
        } else if minute >= self.start {
            self.days.is_empty() || self.days.contains(&day)
        } else {
            // After midnight: the window began the day before.
            minute < self.end && (self.days.is_empty() || self.days.contains(&day.pred()))
        }
    }
}

impl<'de> Deserialize<'de> for TimeWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Raw::deserialize(d)?;
        let start = raw.start.as_deref().map(hhmm).transpose();
        let end = raw.end.as_deref().map(hhmm).transpose();
        let (start, end) = match (start, end) {
            (Ok(s), Ok(e)) => (s.unwrap_or(0), e.unwrap_or(DAY_END)),
            (Err(e), _) | (_, Err(e)) => return Err(de::Error::custom(e)),
        };
        if start == end {
            return Err(de::Error::custom(
                "the time window is empty: start and end are the same",
            ));
        }
        Ok(TimeWindow {
            days: raw.days.into_iter().map(Weekday::from).collect(),
            start,
            end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        // 2026-11-16 is a Monday.
        Utc.with_ymd_and_hms(2026, 11, 16 + d, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    fn w(yaml: &str) -> TimeWindow {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    #[test]
    fn office_hours() {
        let win = w("{days: [mon, tue, wed, thu, fri], start: '09:00', end: '17:30'}");
        assert!(win.contains(at(0, 9, 0)));
        assert!(win.contains(at(4, 17, 29)));
        assert!(!win.contains(at(0, 17, 30)));
        assert!(!win.contains(at(0, 8, 59)));
        assert!(!win.contains(at(5, 12, 0)), "saturday");
    }

    #[test]
    fn overnight_wraps() {
        let win = w("{days: [fri], start: '22:00', end: '06:00'}");
        assert!(win.contains(at(4, 23, 0)), "friday night");
        assert!(
            win.contains(at(5, 5, 59)),
            "saturday early belongs to friday"
        );
        assert!(
            !win.contains(at(4, 5, 0)),
            "friday early belongs to thursday"
        );
        assert!(!win.contains(at(5, 22, 30)));
    }

    #[test]
    fn bad_windows() {
        for bad in [
            "{start: '9:00'}",
            "{start: '24:01'}",
            "{start: '10:00', end: '10:00'}",
            "{days: [funday]}",
            "{weekdays: [mon]}",
        ] {
            assert!(serde_yaml::from_str::<TimeWindow>(bad).is_err(), "{bad}");
        }
        assert!(w("{}").contains(at(6, 0, 0)));
    }
}
