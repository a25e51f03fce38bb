"""Footage and annotation files: frame sources (videos, MOTChallenge folders, image folders), MOT
result / ground-truth files, and synthetic sequences for tests and demos."""
