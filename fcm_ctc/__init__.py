"""The layer above the encoder and decoder: rate points (encode, decode, track, score), common-test-
condition runs on Dask and their reports, and QACT calibration (fcm-ctc, fcm-calibrate)."""
