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
        toml_edit::Item::Table(t) => Some(toml::Value::Table(
            t.iter()
                .filter_map(|(k, v)| from_item(v).map(|v| (k.to_string(), v)))
                .collect(),
        )),
        toml_edit::Item::ArrayOfTables(a) => Some(toml::Value::Array(
            a.iter()
                .map(|t| {
                    from_item(&toml_edit::Item::Table(t.clone()))
                        .unwrap_or(toml::Value::Boolean(false))
                })
                .collect(),
        )),
        toml_edit::Item::None => None,
    }
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
}
