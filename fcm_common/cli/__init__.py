"""What the commands share (one-line errors, options, progress bars, tables) and the commands that do
not drive the encoder or decoder: fcm-track, fcm-eval, fcm-bdrate, fcm-train."""
