"""Constant-velocity Kalman filter on boxes, as used by JDE's tracker (DeepSORT's filter).

State: (cx, cy, a, h, vcx, vcy, va, vh) with a = w/h. Noise is proportional to the box height:
1/20 of h for positions, 1/160 for velocities; the aspect ratio gets fixed small noise. All in
float64.

Every product is evaluated in the order the official filter (``utils/kalman_filter.py``) evaluates
it, with the same numpy routines, so that the results agree to the last bit on the same machine:
the projected covariance and the covariance correction go through ``np.linalg.multi_dot`` (which,
for these shapes, multiplies the right pair first: ``H (P H^T)`` and ``K (S K^T)``), the gain and
the mean correction through ``np.dot``, the batched prediction through ``np.dot(F, P)`` then
``F^T``. Products with F and H are exact in any order; ``K S K^T`` is not: ``(K S) K^T`` differs by
~1e-12, enough to change the last bits of the boxes in about a third of the frames.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

# 0.95 quantile of the chi-square distribution with 4 degrees of freedom: the gate on the squared
# Mahalanobis distance of a (cx, cy, a, h) measurement.
CHI2_95_4DOF = 9.4877


class KalmanFilter:
    POSITION_STD = 1.0 / 20
    VELOCITY_STD = 1.0 / 160

    def __init__(self) -> None:
        self.motion = np.eye(8)
        self.motion[:4, 4:] = np.eye(4)  # dt = 1 frame
        self.observation = np.eye(4, 8)

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New state from an unassociated measurement; velocities start at zero."""
        h = z[3]
        mean = np.r_[z, np.zeros_like(z)]
        std = [
            2 * self.POSITION_STD * h,
            2 * self.POSITION_STD * h,
            1e-2,
            2 * self.POSITION_STD * h,
            10 * self.VELOCITY_STD * h,
            10 * self.VELOCITY_STD * h,
            1e-5,
            10 * self.VELOCITY_STD * h,
        ]
        return mean, np.diag(np.square(std))

    def multi_predict(self, means: np.ndarray, covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predict N states one frame ahead (N x 8 means, N x 8 x 8 covariances)."""
        h = means[:, 3]
        ones = np.ones_like(h)
        std = np.r_[
            [self.POSITION_STD * h, self.POSITION_STD * h, 1e-2 * ones, self.POSITION_STD * h],
            [self.VELOCITY_STD * h, self.VELOCITY_STD * h, 1e-5 * ones, self.VELOCITY_STD * h],
        ]  # 8 x N
        variances = np.square(std).T
        noise = np.asarray([np.diag(v) for v in variances])
        means = np.dot(means, self.motion.T)
        spread = np.dot(self.motion, covariances).transpose((1, 0, 2))
        return means, np.dot(spread, self.motion.T) + noise

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State distribution -> measurement-space distribution (with measurement noise)."""
        h = mean[3]
        noise = np.diag(np.square([self.POSITION_STD * h, self.POSITION_STD * h, 1e-1, self.POSITION_STD * h]))
        H = self.observation
        return np.dot(H, mean), np.linalg.multi_dot((H, covariance, H.T)) + noise

    def update(self, mean: np.ndarray, covariance: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct a predicted state with a measurement."""
        projected_mean, projected_cov = self.project(mean, covariance)
        factor = scipy.linalg.cho_factor(projected_cov, lower=True, check_finite=False)
        gain = scipy.linalg.cho_solve(factor, np.dot(covariance, self.observation.T).T, check_finite=False).T
        innovation = z - projected_mean
        new_mean = mean + np.dot(innovation, gain.T)
        new_cov = covariance - np.linalg.multi_dot((gain, projected_cov, gain.T))
        return new_mean, new_cov

    def gating_distance(self, mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each (cx, cy, a, h) measurement to the state."""
        projected_mean, projected_cov = self.project(mean, covariance)
        d = measurements - projected_mean
        chol = np.linalg.cholesky(projected_cov)
        z = scipy.linalg.solve_triangular(chol, d.T, lower=True, check_finite=False, overwrite_b=True)
        return np.sum(z * z, axis=0)
