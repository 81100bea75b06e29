//! Nelder-Mead minimisation with box bounds, for fitting smoothing and ARMA parameters.

/// Minimises `f` from `start`, keeping every coordinate within `bounds`; returns the best point
/// and its value.
pub fn nelder_mead(
    f: impl Fn(&[f64]) -> f64,
    start: &[f64],
    bounds: &[(f64, f64)],
    max_evaluations: usize,
) -> (Vec<f64>, f64) {
    let n = start.len();
    let clamp = |x: &mut Vec<f64>| {
        for (v, &(lo, hi)) in x.iter_mut().zip(bounds) {
            *v = v.clamp(lo, hi);
        }
    };
    let mut simplex: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
    simplex.push(start.to_vec());
    for i in 0..n {
        let mut point = start.to_vec();
        let (lo, hi) = bounds[i];
        let step = 0.1 * (hi - lo);
        point[i] = if point[i] + step <= hi {
            point[i] + step
        } else {
            point[i] - step
        };
        clamp(&mut point);
        simplex.push(point);
    }
    let mut values: Vec<f64> = simplex.iter().map(|p| f(p)).collect();
    let mut evaluations = n + 1;
    while evaluations < max_evaluations {
        let mut order: Vec<usize> = (0..=n).collect();
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        simplex = order.iter().map(|&i| simplex[i].clone()).collect();
        values = order.iter().map(|&i| values[i]).collect();
        if (values[n] - values[0]).abs() <= 1e-12 * (values[0].abs() + 1e-12) {
            break;
        }
        let centroid: Vec<f64> = (0..n)
            .map(|j| simplex[..n].iter().map(|p| p[j]).sum::<f64>() / n as f64)
            .collect();
        let towards = |t: f64| {
            let mut p: Vec<f64> = (0..n)
                .map(|j| centroid[j] + t * (simplex[n][j] - centroid[j]))
                .collect();
            clamp(&mut p);
            p
        };
        let reflected = towards(-1.0);
        let reflected_value = f(&reflected);
        evaluations += 1;
        if reflected_value < values[0] {
            let expanded = towards(-2.0);
            let expanded_value = f(&expanded);
            evaluations += 1;
            if expanded_value < reflected_value {
                simplex[n] = expanded;
                values[n] = expanded_value;
            } else {
                simplex[n] = reflected;
                values[n] = reflected_value;
            }
        } else if reflected_value < values[n - 1] {
            simplex[n] = reflected;
            values[n] = reflected_value;
        } else {
            let contracted = towards(0.5);
            let contracted_value = f(&contracted);
            evaluations += 1;
            if contracted_value < values[n] {
                simplex[n] = contracted;
                values[n] = contracted_value;
            } else {
                for i in 1..=n {
                    let shrunk: Vec<f64> = (0..n)
                        .map(|j| simplex[0][j] + 0.5 * (simplex[i][j] - simplex[0][j]))
                        .collect();
                    values[i] = f(&shrunk);
                    simplex[i] = shrunk;
                    evaluations += 1;
                }
            }
        }
    }
    let best = (0..=n)
        .min_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap_or(0);
    (simplex[best].clone(), values[best])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_bowl_inside_bounds() {
        let (x, v) = nelder_mead(
            |p| (p[0] - 0.3).powi(2) + (p[1] + 0.2).powi(2),
            &[0.9, 0.9],
            &[(-1.0, 1.0), (-1.0, 1.0)],
            2000,
        );
        assert!(
            (x[0] - 0.3).abs() < 1e-4 && (x[1] + 0.2).abs() < 1e-4,
            "{x:?}"
        );
        assert!(v < 1e-8);
    }

    #[test]
    fn respects_bounds() {
        let (x, _) = nelder_mead(|p| (p[0] - 5.0).powi(2), &[0.5], &[(0.0, 1.0)], 500);
        assert!((x[0] - 1.0).abs() < 1e-6);
    }
}
