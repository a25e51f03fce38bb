"""Feature coding: feature methods (anchor, advMSFC), packing into frames, 10-bit quantisation, inner
VVC codecs, the self-describing bitstream and rate accounting."""
