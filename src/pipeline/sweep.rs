//! Sweeps: lists of parameter values that expand one stage into many instances.

use std::collections::BTreeMap;

use super::Span;

/// One sweep point (or the inherited coordinates of an instance): parameter name
/// to value, sorted by name so instance ids read the same every time.
pub type Point = BTreeMap<String, toml::Value>;

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

/// A stage's `[stages.<name>.sweep]` table.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub mode: SweepMode,
    pub axes: Vec<Axis>,
}

impl Sweep {
    /// The sweep's points, in the order the values are written (last axis fastest).
    pub fn points(&self) -> Vec<Point> {
        match self.mode {
            SweepMode::Grid => {
                let mut points = vec![Point::new()];
                for axis in &self.axes {
                    let mut next = Vec::with_capacity(points.len() * axis.values.len());
                    for point in &points {
                        for value in &axis.values {
                            let mut p = point.clone();
                            p.insert(axis.key.clone(), value.clone());
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
                        self.axes
                            .iter()
                            .map(|a| (a.key.clone(), a.values[i].clone()))
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// The axis for a parameter, if it is swept.
    pub fn axis(&self, key: &str) -> Option<&Axis> {
        self.axes.iter().find(|a| a.key == key)
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
        };
        assert_eq!(grid.points().len(), 9);
        let zip = Sweep {
            mode: SweepMode::Zip,
            axes,
        };
        let points = zip.points();
        assert_eq!(points.len(), 3);
        assert_eq!(points[2]["a"], toml::Value::Integer(3));
        assert_eq!(points[2]["b"], toml::Value::Integer(30));
    }
}
