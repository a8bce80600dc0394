//! When ephemeral environments expire: set by their first apply from the blueprint's `ttl`,
//! kept by later applies, moved only by `trails env extend`.

use std::time::{Duration, SystemTime};

use super::State;
use crate::blueprint::schema::EnvironmentSettings;

/// A day: an expiry closer than this is warned about.
pub const SOON: Duration = Duration::from_secs(24 * 60 * 60);

/// The environment's time to live, when it is ephemeral and has one.
pub fn ttl(settings: &EnvironmentSettings) -> Option<Duration> {
    if !settings.ephemeral {
        return None;
    }
    settings
        .ttl
        .as_deref()
        .and_then(|ttl| humantime::parse_duration(ttl).ok())
}

/// True when the state does not yet record what the blueprint says of the environment's
/// lifetime (ephemeral, and its first expiry).
pub fn unrecorded(state: &State, settings: &EnvironmentSettings) -> bool {
    state.ephemeral != settings.ephemeral
        || (ttl(settings).is_some() && state.expires_at.is_none())
        || (!settings.ephemeral && state.expires_at.is_some())
}

/// Records the environment's lifetime: ephemeral or not, and an expiry `ttl` from now if it
/// has none yet (re-applying never extends it).
pub fn record(state: &mut State, settings: &EnvironmentSettings) {
    state.ephemeral = settings.ephemeral;
    match ttl(settings) {
        Some(ttl) if state.expires_at.is_none() => {
            state.expires_at = Some(rfc3339(SystemTime::now() + ttl));
        }
        Some(_) => {}
        None => state.expires_at = None,
    }
}

/// Moves the expiry to `ttl` from now (`trails env extend`).
pub fn extend(state: &mut State, ttl: Duration) {
    state.expires_at = Some(rfc3339(SystemTime::now() + ttl));
}

/// How long ago the environment expired; `None` when it has not (or never does).
pub fn expired_for(state: &State, now: SystemTime) -> Option<Duration> {
    now.duration_since(state.expiry()?).ok()
}

/// One line on when the environment expires, and whether that is within a day; `None` for an
/// environment that does not expire. A state not yet applied tells when it will.
pub fn notice(
    state: &State,
    settings: &EnvironmentSettings,
    now: SystemTime,
) -> Option<(String, bool)> {
    let expiry = match state.expiry() {
        Some(expiry) => expiry,
        None => now + ttl(settings)?,
    };
    let (when, soon) = match expiry.duration_since(now) {
        Ok(left) => (format!("in {}", rounded(left)), left < SOON),
        Err(past) => (format!("{} ago", rounded(past.duration())), true),
    };
    let verb = if expiry <= now { "expired" } else { "expires" };
    Some((
        format!(
            "Environment `{}` {verb} at {} ({when}); `trails env extend -e {} --ttl 24h` \
             moves it",
            state.environment,
            rfc3339(expiry),
            state.environment
        ),
        soon,
    ))
}

/// An RFC 3339 time to the second.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// A duration to the minute, for people.
pub fn rounded(duration: Duration) -> String {
    let minutes = duration.as_secs() / 60;
    if minutes == 0 {
        return "less than a minute".to_string();
    }
    humantime::format_duration(Duration::from_secs(minutes * 60)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ephemeral(ttl: &str) -> EnvironmentSettings {
        EnvironmentSettings {
            ephemeral: true,
            ttl: Some(ttl.to_string()),
            ..EnvironmentSettings::default()
        }
    }

    #[test]
    fn the_first_apply_sets_the_expiry_and_later_ones_keep_it() {
        let settings = ephemeral("72h");
        let mut state = State::empty("demo", "pr-1");
        assert!(unrecorded(&state, &settings));
        record(&mut state, &settings);
        let first = state.expires_at.clone().expect("an expiry");
        let left = state
            .expiry()
            .and_then(|expiry| expiry.duration_since(SystemTime::now()).ok())
            .expect("in the future");
        assert!(left > Duration::from_secs(71 * 3600), "{left:?}");
        assert!(!unrecorded(&state, &settings));
        record(&mut state, &ephemeral("1h"));
        assert_eq!(state.expires_at.as_deref(), Some(first.as_str()));

        extend(&mut state, Duration::from_secs(3600));
        let (text, soon) = notice(&state, &settings, SystemTime::now()).expect("a notice");
        assert!(soon, "{text}");
        assert!(text.contains("expires at"), "{text}");
        assert!(expired_for(&state, SystemTime::now()).is_none());
        let later = SystemTime::now() + Duration::from_secs(2 * 3600);
        assert!(expired_for(&state, later).is_some());
        let (text, _) = notice(&state, &settings, later).expect("a notice");
        assert!(
            text.contains("expired at") && text.contains("ago"),
            "{text}"
        );
    }

    #[test]
    fn a_lasting_environment_never_expires() {
        let settings = EnvironmentSettings::default();
        let mut state = State::empty("demo", "prod");
        record(&mut state, &settings);
        assert!(state.expires_at.is_none() && !state.ephemeral);
        assert!(notice(&state, &settings, SystemTime::now()).is_none());
    }
}
