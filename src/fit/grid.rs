//! The initialisation grid of a multistart fit: one list of starting values per
//! parameter, whose cartesian product gives the starts.
//!
//! The Huber objective in log space has several local minima (and long flat
//! valleys where an exponent is near zero), so one start is not enough; Hoffmann et
//! al. and Besiroglu et al. start L-BFGS from every point of a grid and keep the
//! best. The default axes come from [`Form::default_axis`]; a pipeline may replace
//! any axis.

use std::collections::BTreeMap;

use super::form::Form;

/// Starting values per parameter, in parameter-vector order.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    names: Vec<&'static str>,
    axes: Vec<Vec<f64>>,
}

/// A grid override that does not fit the form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    #[error("`{name}` is not a parameter of this form (its parameters: {known})")]
    UnknownParameter { name: String, known: String },
    #[error("`{name}` needs at least one finite starting value")]
    EmptyAxis { name: String },
}

impl Grid {
    /// The default grid for `form`; for `chinchilla` with a free `E` it is
    /// Besiroglu et al.'s 6 x 6 x 5 x 5 x 5 = 4,500 starts.
    pub fn default_for(form: &Form) -> Grid {
        let names = form.param_names();
        let axes = names.iter().map(|n| Form::default_axis(n)).collect();
        Grid { names, axes }
    }

    /// The default grid with some axes replaced (`alpha = [0.2, 0.4]`).
    pub fn with_overrides(
        form: &Form,
        overrides: &BTreeMap<String, Vec<f64>>,
    ) -> Result<Grid, GridError> {
        let mut grid = Grid::default_for(form);
        for (name, values) in overrides {
            let Some(i) = grid.names.iter().position(|n| n == name) else {
                return Err(GridError::UnknownParameter {
                    name: name.clone(),
                    known: grid.names.join(", "),
                });
            };
            if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
                return Err(GridError::EmptyAxis { name: name.clone() });
            }
            grid.axes[i] = values.clone();
        }
        Ok(grid)
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Number of starts.
    pub fn len(&self) -> usize {
        self.axes.iter().map(Vec::len).product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start `i`, the last parameter varying fastest.
    pub fn point(&self, mut i: usize) -> Vec<f64> {
        let mut p = vec![0.0; self.axes.len()];
        for (j, axis) in self.axes.iter().enumerate().rev() {
            p[j] = axis[i % axis.len()];
            i /= axis.len();
        }
        p
    }

    /// Every start, in order.
    pub fn points(&self) -> Vec<Vec<f64>> {
        (0..self.len()).map(|i| self.point(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::form::{FormKind, Irreducible};

    #[test]
    fn default_chinchilla_grid_has_4500_distinct_starts() {
        let grid = Grid::default_for(&Form::new(FormKind::Chinchilla, Irreducible::Free));
        assert_eq!(grid.len(), 4500);
        let mut pts = grid.points();
        assert_eq!(pts[0], [0.0, 0.0, -1.0, 0.0, 0.0]);
        assert_eq!(pts[4499], [25.0, 25.0, 1.0, 2.0, 2.0]);
        pts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        pts.dedup();
        assert_eq!(pts.len(), 4500);
    }

    #[test]
    fn overrides_replace_axes_and_reject_unknown_names() {
        let form = Form::new(FormKind::PowerN, Irreducible::Free);
        let mut o = BTreeMap::new();
        o.insert("alpha".to_string(), vec![0.3]);
        let grid = Grid::with_overrides(&form, &o).unwrap();
        assert_eq!(grid.len(), 6 * 5);
        o.insert("beta".to_string(), vec![0.3]);
        let err = Grid::with_overrides(&form, &o).unwrap_err();
        assert!(err.to_string().contains("a, e, alpha"), "{err}");
    }
}
