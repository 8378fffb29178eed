//! Conversions of TOML values: from the span-keeping parser's values to plain
//! `toml::Value`, to canonical JSON for fingerprints, and to text for instance ids.

/// Converts a parsed `toml_edit` value into a plain `toml::Value`.
pub(crate) fn from_edit(value: &toml_edit::Value) -> toml::Value {
    use toml_edit::Value as V;
    match value {
        V::String(s) => toml::Value::String(s.value().clone()),
        V::Integer(i) => toml::Value::Integer(*i.value()),
        V::Float(x) => toml::Value::Float(*x.value()),
        V::Boolean(b) => toml::Value::Boolean(*b.value()),
        V::Datetime(d) => toml::Value::String(d.value().to_string()),
        V::Array(items) => toml::Value::Array(items.iter().map(from_edit).collect()),
        V::InlineTable(table) => toml::Value::Table(
            table
                .iter()
                .map(|(k, v)| (k.to_string(), from_edit(v)))
                .collect(),
        ),
    }
}

/// Converts a parsed `toml_edit` item (a value or a `[table]`) into a `toml::Value`.
pub(crate) fn from_item(item: &toml_edit::Item) -> Option<toml::Value> {
    match item {
        toml_edit::Item::Value(v) => Some(from_edit(v)),
        toml_edit::Item::Table(t) => Some(from_table(t)),
        toml_edit::Item::ArrayOfTables(a) => {
            Some(toml::Value::Array(a.iter().map(from_table).collect()))
        }
        toml_edit::Item::None => None,
    }
}

/// Converts a `[table]` (or one entry of an `[[array of tables]]`).
fn from_table(table: &toml_edit::Table) -> toml::Value {
    toml::Value::Table(
        table
            .iter()
            .filter_map(|(k, v)| from_item(v).map(|v| (k.to_string(), v)))
            .collect(),
    )
}

/// Canonical JSON of a TOML value: keys sorted, floats in shortest round-trip
/// form. Two parameter sets that mean the same give the same bytes.
pub fn canonical_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(x.to_string())),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(canonical_json).collect())
        }
        toml::Value::Table(table) => {
            let sorted: std::collections::BTreeMap<&String, serde_json::Value> =
                table.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
    }
}

/// A TOML value that serializes as its [`canonical_json`]: keys sorted, floats
/// as serde_json numbers, datetimes as strings.
///
/// Serializing it gives byte for byte what serializing `canonical_json(value)`
/// gives, without building that intermediate `serde_json::Value` tree: a plan
/// writes one per instance, and the tree's allocations were a large share of
/// planning time.
pub struct Canonical<'a>(pub &'a toml::Value);

/// [`Canonical`] for a table (an instance's parameters).
pub struct CanonicalTable<'a>(pub &'a toml::Table);

impl serde::Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self.0 {
            toml::Value::String(s) => serializer.serialize_str(s),
            toml::Value::Integer(i) => serializer.serialize_i64(*i),
            toml::Value::Float(x) => match serde_json::Number::from_f64(*x) {
                Some(n) => n.serialize(serializer),
                None => serializer.serialize_str(&x.to_string()),
            },
            toml::Value::Boolean(b) => serializer.serialize_bool(*b),
            toml::Value::Datetime(d) => serializer.serialize_str(&d.to_string()),
            toml::Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Canonical(item))?;
                }
                seq.end()
            }
            toml::Value::Table(table) => CanonicalTable(table).serialize(serializer),
        }
    }
}

impl serde::Serialize for CanonicalTable<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut entries: Vec<(&String, &toml::Value)> = self.0.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (key, value) in entries {
            map.serialize_entry(key, &Canonical(value))?;
        }
        map.end()
    }
}

/// The compact text of [`canonical_json`].
pub fn canonical_json_text(value: &toml::Value) -> String {
    serde_json::to_string(&Canonical(value)).expect("TOML values serialize")
}

/// Short text of a value as it appears in an instance id (`width=64`).
pub fn display_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(x) => format_float(*x),
        toml::Value::Boolean(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Appends [`display_value`] to `out` (instance ids are built this way, without
/// a temporary string per value).
pub fn write_display_value(out: &mut String, value: &toml::Value) {
    use std::fmt::Write;
    match value {
        toml::Value::String(s) => out.push_str(s),
        toml::Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        other => out.push_str(&display_value(other)),
    }
}

/// Floats as people write them in sweeps: `0.001`, `1e6`, `2.5e-5`.
fn format_float(x: f64) -> String {
    let plain = x.to_string();
    let sci = format!("{x:e}");
    if sci.len() + 1 < plain.len() {
        sci
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_display_in_their_shortest_form() {
        assert_eq!(display_value(&toml::Value::Float(1e6)), "1e6");
        assert_eq!(display_value(&toml::Value::Float(0.001)), "0.001");
        assert_eq!(display_value(&toml::Value::Float(2.5e-5)), "2.5e-5");
        assert_eq!(display_value(&toml::Value::Float(3.0)), "3");
    }

    /// The direct serialization must give exactly the bytes the
    /// `serde_json::Value` path gave, or every fingerprint (and so every cache entry) would change.
    #[test]
    fn canonical_text_matches_serialized_canonical_json() {
        let doc: toml::Table = toml::from_str(
            r#"
            zeta = "quote \" backslash \\ tab \t newline \n unicode é ✓ \u0001"
            alpha = 1
            neg = -9223372036854775808
            f1 = 0.1
            f2 = 1e300
            f3 = 3.0
            f4 = -2.5e-8
            inf = inf
            nan = nan
            yes = true
            no = false
            when = 1979-05-27T07:32:00Z
            list = [1, "two", 3.5, [true], { b = 1, a = 2 }]
            empty = []
            [nested]
            y = { z = 1, "a b" = "c" }
            x = []
            "Ünï" = 1
            "" = "empty key"
            "#,
        )
        .unwrap();
        let expected =
            serde_json::to_string(&canonical_json(&toml::Value::Table(doc.clone()))).unwrap();
        assert_eq!(
            serde_json::to_string(&CanonicalTable(&doc)).unwrap(),
            expected
        );
        for value in doc.values() {
            let mut shown = String::from(">");
            write_display_value(&mut shown, value);
            assert_eq!(shown, format!(">{}", display_value(value)));
            assert_eq!(
                canonical_json_text(value),
                serde_json::to_string(&canonical_json(value)).unwrap()
            );
        }
    }
}
