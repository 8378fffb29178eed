//! Sweeps: lists of parameter values that expand one stage into many instances.

use std::ops::Index;
use std::sync::Arc;

use super::Span;

/// One sweep point (or the inherited coordinates of an instance): parameter name
/// to value, sorted by name so instance ids read the same every time.
///
/// A sorted vector with shared keys rather than a `BTreeMap<String, _>`: a plan
/// keeps one point per instance, points hold a handful of keys, and a B-tree
/// node alone costs ~600 bytes, which dominated the memory of million-instance
/// plans. Lookups are linear scans over those few keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    entries: Vec<(Arc<str>, toml::Value)>,
}

impl Point {
    pub fn new() -> Point {
        Point::default()
    }

    /// An empty point with room for `n` keys.
    pub fn with_capacity(n: usize) -> Point {
        Point {
            entries: Vec::with_capacity(n),
        }
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&toml::Value> {
        self.entries
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets a key, replacing its value if present; keys stay sorted.
    pub fn insert(&mut self, key: Arc<str>, value: toml::Value) {
        match self.entries.binary_search_by(|(k, _)| (**k).cmp(&*key)) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    /// Keys and values, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &toml::Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| &**k)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Index<&str> for Point {
    type Output = toml::Value;

    fn index(&self, key: &str) -> &toml::Value {
        self.get(key).expect("the point has this key")
    }
}

/// How the axes of a sweep combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepMode {
    /// Every combination of values (cartesian product).
    Grid,
    /// The i-th values of every axis together; all axes have the same length.
    Zip,
}

/// One swept parameter and its values.
#[derive(Debug, Clone)]
pub struct Axis {
    pub key: String,
    pub values: Vec<toml::Value>,
    /// Where the values are written, for errors about them.
    pub span: Option<Span>,
}

/// A stage's `[stages.<name>.sweep]` table, and its `seeds = K` replicates.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub mode: SweepMode,
    pub axes: Vec<Axis>,
    /// `seeds = K`: a `seed` axis of K values crossed with every point of the
    /// axes (whatever their mode), so each replicate is its own instance.
    pub seeds: Option<Axis>,
}

impl Sweep {
    /// The sweep's points, in the order the values are written (last axis
    /// fastest), each repeated for every seed replicate.
    pub fn points(&self) -> Vec<Point> {
        let points = if self.axes.is_empty() {
            vec![Point::new()]
        } else {
            self.axis_points()
        };
        let Some(seeds) = &self.seeds else {
            return points;
        };
        let key: Arc<str> = Arc::from(seeds.key.as_str());
        let mut out = Vec::with_capacity(points.len() * seeds.values.len());
        for point in &points {
            for value in &seeds.values {
                let mut p = point.clone();
                p.insert(key.clone(), value.clone());
                out.push(p);
            }
        }
        out
    }

    /// Every axis, the seed replicates' last.
    pub fn all_axes(&self) -> impl Iterator<Item = &Axis> {
        self.axes.iter().chain(&self.seeds)
    }

    fn axis_points(&self) -> Vec<Point> {
        // One shared key per axis, not one string per point.
        let keys: Vec<Arc<str>> = self
            .axes
            .iter()
            .map(|a| Arc::from(a.key.as_str()))
            .collect();
        match self.mode {
            SweepMode::Grid => {
                let mut points = vec![Point::new()];
                for (axis, key) in self.axes.iter().zip(&keys) {
                    let mut next = Vec::with_capacity(points.len() * axis.values.len());
                    for point in &points {
                        for value in &axis.values {
                            let mut p = Point::with_capacity(keys.len());
                            p.entries.extend(point.entries.iter().cloned());
                            p.insert(key.clone(), value.clone());
                            next.push(p);
                        }
                    }
                    points = next;
                }
                points
            }
            SweepMode::Zip => {
                let len = self.axes.first().map_or(0, |a| a.values.len());
                (0..len)
                    .map(|i| {
                        let mut point = Point::with_capacity(keys.len());
                        for (axis, key) in self.axes.iter().zip(&keys) {
                            point.insert(key.clone(), axis.values[i].clone());
                        }
                        point
                    })
                    .collect()
            }
        }
    }

    /// The axis for a parameter, if it is swept.
    pub fn axis(&self, key: &str) -> Option<&Axis> {
        self.all_axes().find(|a| a.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(key: &str, values: &[i64]) -> Axis {
        Axis {
            key: key.into(),
            values: values.iter().map(|v| toml::Value::Integer(*v)).collect(),
            span: None,
        }
    }

    #[test]
    fn grid_is_the_cartesian_product_and_zip_pairs_values() {
        let axes = vec![axis("a", &[1, 2, 3]), axis("b", &[10, 20, 30])];
        let grid = Sweep {
            mode: SweepMode::Grid,
            axes: axes.clone(),
            seeds: None,
        };
        assert_eq!(grid.points().len(), 9);
        let mut zip = Sweep {
            mode: SweepMode::Zip,
            axes,
            seeds: None,
        };
        let points = zip.points();
        assert_eq!(points.len(), 3);
        assert_eq!(points[2]["a"], toml::Value::Integer(3));
        assert_eq!(points[2]["b"], toml::Value::Integer(30));

        // Seed replicates cross every zipped point.
        zip.seeds = Some(axis("seed", &[7, 8]));
        let points = zip.points();
        assert_eq!(points.len(), 6);
        assert_eq!(points[5]["a"], toml::Value::Integer(3));
        assert_eq!(points[5]["seed"], toml::Value::Integer(8));
    }

    #[test]
    fn points_keep_keys_sorted_and_insert_replaces() {
        let mut p = Point::new();
        p.insert("width".into(), toml::Value::Integer(64));
        p.insert("depth".into(), toml::Value::Integer(2));
        p.insert("lr".into(), toml::Value::Float(0.1));
        assert_eq!(p.keys().collect::<Vec<_>>(), ["depth", "lr", "width"]);
        p.insert("lr".into(), toml::Value::Float(0.2));
        assert_eq!(p.len(), 3);
        assert_eq!(p["lr"], toml::Value::Float(0.2));
        assert!(p.contains_key("depth") && !p.contains_key("seed"));
        assert_eq!(p.get("seed"), None);
    }
}
