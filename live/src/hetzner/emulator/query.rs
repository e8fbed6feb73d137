//! Query strings, label selectors, sorting, pagination and name/label validation.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

/// A decoded query string that keeps repeated keys (`sort=a&sort=b`, `id=1&id=2`).
#[derive(Debug, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        Query(raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
}

/// One field error for `invalid_input`.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError { field: field.to_string(), message: message.into() }
    }
}

/// `details` for `invalid_input`: `{"fields": [{"name": ..., "messages": [...]}]}`.
pub fn fields_details(errors: &[FieldError]) -> Value {
    let mut fields: Vec<(String, Vec<String>)> = Vec::new();
    for e in errors {
        match fields.iter_mut().find(|(n, _)| *n == e.field) {
            Some((_, m)) => m.push(e.message.clone()),
            None => fields.push((e.field.clone(), vec![e.message.clone()])),
        }
    }
    json!({"fields": fields.into_iter().map(|(n, m)| json!({"name": n, "messages": m})).collect::<Vec<_>>()})
}

pub fn fields_message(errors: &[FieldError]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for e in errors {
        if !names.contains(&e.field.as_str()) {
            names.push(&e.field);
        }
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    if quoted.len() == 1 {
        format!("invalid input in field {}", quoted[0])
    } else {
        format!("invalid input in fields {}", quoted.join(", "))
    }
}

// ----- label selectors -----

#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Parses `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, joined by `,`.
pub fn parse_selector(sel: &str) -> Result<Vec<Term>, String> {
    let mut terms = Vec::new();
    for raw in split_top_level(sel)? {
        let t = raw.trim();
        if t.is_empty() {
            return Err("empty term in label selector".into());
        }
        let term = if let Some(k) = t.strip_prefix('!') {
            Term::Absent(check_key(k.trim())?)
        } else if let Some((k, v)) = t.split_once("!=") {
            Term::Ne(check_key(k.trim())?, check_value(v.trim())?)
        } else if let Some((k, v)) = t.split_once("==") {
            Term::Eq(check_key(k.trim())?, check_value(v.trim())?)
        } else if let Some((k, v)) = t.split_once('=') {
            Term::Eq(check_key(k.trim())?, check_value(v.trim())?)
        } else if let Some((k, set)) = split_set_op(t, " notin ") {
            Term::NotIn(check_key(k)?, parse_set(set)?)
        } else if let Some((k, set)) = split_set_op(t, " in ") {
            Term::In(check_key(k)?, parse_set(set)?)
        } else {
            Term::Exists(check_key(t)?)
        };
        terms.push(term);
    }
    Ok(terms)
}

fn split_top_level(sel: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in sel.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')' in label selector".into());
                }
            }
            ',' if depth == 0 => {
                out.push(&sel[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '(' in label selector".into());
    }
    out.push(&sel[start..]);
    Ok(out)
}

fn split_set_op<'a>(t: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    t.find(op).map(|i| (t[..i].trim(), t[i + op.len()..].trim()))
}

fn parse_set(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("expected '(v1,v2)' in label selector, got '{s}'"))?;
    inner.split(',').map(|v| check_value(v.trim())).collect()
}

fn check_key(k: &str) -> Result<String, String> {
    if valid_label_key(k) {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key '{k}' in label selector"))
    }
}

fn check_value(v: &str) -> Result<String, String> {
    if valid_label_value(v) {
        Ok(v.to_string())
    } else {
        Err(format!("invalid label value '{v}' in label selector"))
    }
}

pub fn matches(terms: &[Term], labels: &Map<String, Value>) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    terms.iter().all(|t| match t {
        Term::Eq(k, v) => get(k) == Some(v.as_str()),
        Term::Ne(k, v) => get(k) != Some(v.as_str()),
        Term::Exists(k) => get(k).is_some(),
        Term::Absent(k) => get(k).is_none(),
        Term::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Term::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
    })
}

// ----- labels and names -----

fn label_name_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Optional DNS-subdomain prefix + `/` + name (≤ 63, alphanumeric ends, `-_.` inside).
pub fn valid_label_key(k: &str) -> bool {
    match k.rsplit_once('/') {
        Some((prefix, name)) => valid_dns_name(prefix) && label_name_ok(name),
        None => label_name_ok(k),
    }
}

/// May be empty; otherwise the same rules as a key's name.
pub fn valid_label_value(v: &str) -> bool {
    v.is_empty() || label_name_ok(v)
}

/// RFC 1123 host name: labels of 1–63 letters, digits and `-` (not at either end), joined by `.`, ≤ 253 chars.
pub fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

pub fn validate_labels(v: &Value, errors: &mut Vec<FieldError>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(obj) = v.as_object() else {
        errors.push(FieldError::new("labels", "must be an object of strings"));
        return out;
    };
    for (k, v) in obj {
        let Some(v) = v.as_str() else {
            errors.push(FieldError::new("labels", format!("value of '{k}' must be a string")));
            continue;
        };
        if !valid_label_key(k) || k.starts_with("hetzner.cloud/") {
            errors.push(FieldError::new("labels", format!("label key '{k}' is invalid")));
        } else if !valid_label_value(v) {
            errors.push(FieldError::new("labels", format!("label value '{v}' is invalid")));
        } else {
            out.push((k.clone(), v.to_string()));
        }
    }
    out
}

// ----- sorting -----

/// Sorts by repeated `sort=field[:asc|:desc]`, restricted to `allowed` fields. Default: by id.
pub fn sort_items(items: &mut [Value], sorts: &[&str], allowed: &[&str]) -> Result<(), FieldError> {
    let mut keys = Vec::new();
    for s in sorts {
        let (field, desc) = match s.split_once(':') {
            Some((f, "asc")) => (f, false),
            Some((f, "desc")) => (f, true),
            Some(_) => return Err(FieldError::new("sort", format!("invalid sort '{s}'"))),
            None => (*s, false),
        };
        if !allowed.contains(&field) {
            return Err(FieldError::new("sort", format!("invalid sort field '{field}'")));
        }
        keys.push((field.to_string(), desc));
    }
    keys.push(("id".to_string(), false));
    items.sort_by(|a, b| {
        for (field, desc) in &keys {
            let o = cmp_values(&a[field.as_str()], &b[field.as_str()]);
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    Ok(())
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

// ----- pagination -----

pub const DEFAULT_PER_PAGE: u64 = 25;
pub const MAX_PER_PAGE: u64 = 50;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Page {
    pub page: u64,
    pub per_page: u64,
    pub last_page: u64,
    pub total: u64,
}

impl Page {
    /// Reads `page` and `per_page`; `per_page` is clamped to 1..=50.
    pub fn from_query(q: &Query, total: usize) -> Result<Page, FieldError> {
        let num = |key: &str, default: u64| -> Result<u64, FieldError> {
            match q.get(key) {
                None | Some("") => Ok(default),
                Some(v) => v.parse::<u64>().map_err(|_| FieldError::new(key, "must be a positive integer")),
            }
        };
        let page = num("page", 1)?.max(1);
        let per_page = num("per_page", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE);
        let total = total as u64;
        let last_page = total.div_ceil(per_page).max(1);
        Ok(Page { page, per_page, last_page, total })
    }

    pub fn slice<T: Clone>(&self, items: &[T]) -> Vec<T> {
        let start = ((self.page - 1).saturating_mul(self.per_page)).min(items.len() as u64) as usize;
        let end = (start as u64 + self.per_page).min(items.len() as u64) as usize;
        items[start..end].to_vec()
    }

    pub fn previous(&self) -> Option<u64> {
        (self.page > 1).then(|| (self.page - 1).min(self.last_page))
    }

    pub fn next(&self) -> Option<u64> {
        (self.page < self.last_page).then_some(self.page + 1)
    }

    pub fn meta(&self) -> Value {
        json!({"pagination": {
            "page": self.page, "per_page": self.per_page, "previous_page": self.previous(),
            "next_page": self.next(), "last_page": self.last_page, "total_entries": self.total,
        }})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn selector_grammar() {
        let l = labels(json!({"managed_by": "conductor", "role": "worker"}));
        let ok = |s: &str| matches(&parse_selector(s).expect(s), &l);
        assert!(ok("managed_by=conductor"));
        assert!(ok("managed_by==conductor"));
        assert!(ok("managed_by=conductor,role!=proxy"));
        assert!(!ok("managed_by=conductor,role!=worker"));
        assert!(ok("role"));
        assert!(!ok("!role"));
        assert!(ok("!zone"));
        assert!(ok("role in (proxy,worker)"));
        assert!(!ok("role notin (proxy, worker)"));
        assert!(ok("zone notin (a)"));
        assert!(parse_selector("a=b,,c").is_err());
        assert!(parse_selector("role in (a").is_err());
        assert!(parse_selector("bad key=x").is_err());
    }

    #[test]
    fn names_follow_rfc1123() {
        assert!(valid_dns_name("conductor-node-1"));
        assert!(valid_dns_name("a.b-c.d"));
        assert!(!valid_dns_name("bad_name"));
        assert!(!valid_dns_name("has space"));
        assert!(!valid_dns_name("-lead"));
        assert!(!valid_dns_name("trail-"));
        assert!(!valid_dns_name(&"a".repeat(64)));
        assert!(!valid_dns_name(""));
    }

    #[test]
    fn pagination_meta() {
        let q = Query::parse(Some("page=2&per_page=10"));
        let p = Page::from_query(&q, 25).expect("page");
        assert_eq!((p.previous(), p.next(), p.last_page), (Some(1), Some(3), 3));
        assert_eq!(p.slice(&(0..25).collect::<Vec<_>>()), (10..20).collect::<Vec<_>>());
        let p = Page::from_query(&Query::parse(Some("per_page=500")), 0).expect("page");
        assert_eq!((p.per_page, p.last_page, p.next(), p.previous()), (50, 1, None, None));
        assert!(Page::from_query(&Query::parse(Some("page=x")), 0).is_err());
    }
}
