//! Gathering raw setting values from the TOML file and the environment.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;

use super::ConfigError;
use super::keys::{KEYS, Key};

/// Variables of the client subcommands (`checkpassword`, `healthcheck`),
/// which may share an environment with the service; not settings of it.
const CLIENT_VARS: &[&str] = &["DP_CHECKPASSWORD_URL", "DP_HEALTHCHECK_URL"];

/// A raw value and the name it was given under (for error messages).
#[derive(Clone)]
pub struct Raw {
    pub value: String,
    pub origin: String,
}

/// Raw values by key, plus warnings about ignored settings.
pub struct Sources {
    pub values: HashMap<&'static str, Raw>,
    /// Values replaced by a later source (a file value under an
    /// environment variable), kept so they can be checked too.
    pub shadowed: Vec<(&'static str, Raw)>,
    pub warnings: Vec<String>,
}

impl Sources {
    /// The values found, and the errors met on the way (reported together
    /// with the values' own errors).
    pub fn gather<I, K, V>(file: Option<&Path>, vars: I) -> (Sources, Vec<ConfigError>)
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let mut sources = Sources {
            values: HashMap::new(),
            shadowed: Vec::new(),
            warnings: Vec::new(),
        };
        let mut errors = Vec::new();
        if let Some(path) = file {
            sources.read_file(path, &mut errors);
        }
        let env: Vec<(OsString, OsString)> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        sources.read_env(&env, &mut errors);
        (sources, errors)
    }

    fn read_file(&mut self, path: &Path, errors: &mut Vec<ConfigError>) {
        let origin = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => return errors.push(error(&origin, format!("cannot read file: {e}"))),
        };
        let table = match text.parse::<toml::Table>() {
            Ok(table) => table,
            // The parser's message quotes the offending line, which may
            // hold a secret: report only where it is.
            Err(e) => return errors.push(error(&origin, syntax_error(&text, &e))),
        };
        for (name, value) in table {
            let label = format!("{name} (in {origin})");
            let Some(key) = KEYS.iter().find(|k| k.name == name) else {
                errors.push(error(&label, "unknown setting".into()));
                continue;
            };
            match scalar(&value) {
                Some(value) => self.set(key, value, label),
                None => errors.push(error(&label, "must be a string, number or boolean".into())),
            }
        }
    }

    fn read_env(&mut self, env: &[(OsString, OsString)], errors: &mut Vec<ConfigError>) {
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        for key in KEYS {
            let mut found: Option<Raw> = None;
            for var in key.env {
                let file_var = format!("{var}_FILE");
                let value = match (lookup(var), lookup(&file_var)) {
                    (Some(_), Some(_)) if key.secret => {
                        errors.push(error(
                            &file_var,
                            format!("conflicts with {var}; set only one"),
                        ));
                        continue;
                    }
                    (Some(v), _) => text(var, v, errors),
                    (None, _) => read_secret_file(key, var, lookup, errors),
                };
                let Some(value) = value else { continue };
                match &found {
                    Some(first) if first.value != value => errors.push(error(
                        var,
                        format!("conflicts with {}; set only one", first.origin),
                    )),
                    Some(_) => {}
                    None => {
                        found = Some(Raw {
                            value,
                            origin: var.to_string(),
                        })
                    }
                }
            }
            if let Some(raw) = found {
                self.set(key, raw.value, raw.origin);
            }
        }
        self.warn_unknown(env, errors);
    }

    fn warn_unknown(&mut self, env: &[(OsString, OsString)], errors: &mut Vec<ConfigError>) {
        for (name, _) in env {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with("DP_") {
                continue;
            }
            if KEYS.iter().any(|k| k.env.contains(&name)) || CLIENT_VARS.contains(&name) {
                continue;
            }
            let base = name.strip_suffix("_FILE").unwrap_or(name);
            match KEYS.iter().find(|k| k.env.contains(&base)) {
                Some(key) if key.secret => {}
                Some(_) => errors.push(error(
                    name,
                    "only secret settings (DP_DATABASE_URL, DP_OIDC_CLIENT_SECRET) can be read from a file".into(),
                )),
                None => self
                    .warnings
                    .push(format!("{name}: unknown setting, ignored")),
            }
        }
    }

    fn set(&mut self, key: &Key, value: String, origin: String) {
        if let Some(old) = self.values.insert(key.name, Raw { value, origin }) {
            self.shadowed.push((key.name, old));
        }
    }
}

fn read_secret_file<'a>(
    key: &Key,
    var: &str,
    lookup: impl Fn(&str) -> Option<&'a OsString>,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    if !key.secret {
        return None;
    }
    let file_var = format!("{var}_FILE");
    let path = lookup(&file_var)?;
    match std::fs::read_to_string(path) {
        Ok(content) => Some(content.trim_end_matches(['\r', '\n']).to_string()),
        Err(e) => {
            errors.push(error(&file_var, format!("cannot read file: {e}")));
            None
        }
    }
}

fn text(var: &str, value: &OsString, errors: &mut Vec<ConfigError>) -> Option<String> {
    match value.to_str() {
        Some(v) => Some(v.to_string()),
        None => {
            errors.push(error(var, "is not valid UTF-8".into()));
            None
        }
    }
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            format!("TOML syntax error on line {line}")
        }
        None => "TOML syntax error".into(),
    }
}

pub(super) fn error(name: &str, reason: String) -> ConfigError {
    ConfigError {
        name: name.to_string(),
        reason,
    }
}
