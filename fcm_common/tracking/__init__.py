"""From JDE predictions to tracks: detection post-processing, the Kalman filter, association and the
JDE tracker, and the per-sequence glue that turns frames into MOTChallenge rows."""
