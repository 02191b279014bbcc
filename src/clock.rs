//! Time as a parameter: logic that depends on "now" takes a [`Clock`], so
//! expiry and TTL behaviour is tested by setting the time, not by sleeping.

use std::sync::Mutex;

use chrono::{NaiveDateTime, TimeDelta, Utc};

/// A source of the current time, in UTC without a zone (as stored).
pub trait Clock: Send + Sync {
    fn now(&self) -> NaiveDateTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> NaiveDateTime {
        Utc::now().naive_utc()
    }
}

/// A clock that stands still until moved; for tests and tools.
#[derive(Debug)]
pub struct ManualClock(Mutex<NaiveDateTime>);

impl ManualClock {
    pub fn new(at: NaiveDateTime) -> Self {
        ManualClock(Mutex::new(at))
    }

    pub fn set(&self, at: NaiveDateTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> NaiveDateTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
