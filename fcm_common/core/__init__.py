"""The base every role stands on: the error type, atomic output files, shipped resources, the torch
device, stage timing. Imports nothing else of fcm."""
