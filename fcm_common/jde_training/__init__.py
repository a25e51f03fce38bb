"""Training a JDE-family network (any Darknet cfg that :mod:`fcm_common.model` builds) the way JDE is
trained: anchor targets by IoU, smooth-L1 box deltas, foreground cross-entropy, identity
cross-entropy through a classifier on scaled embeddings, learned uncertainty weights per head;
plus optional teacher labels (YOLOX-Nano boxes, OSNet appearance distilled into the embedding)."""
