"""Moving a feature stream: outputs (file, stdout, TCP) and inputs (file, stdin, a TCP listener), and
the measures of a live run (latency, pace). Bytes only: what the units mean is ``coding.segments``'s."""
