"""fcm's configuration files (network cfgs, split and rate-point tables, dataset definitions).

This folder is installed as the package ``fcm_cfg`` so that an installed fcm finds the same files
as a source checkout; read them through :mod:`fcm_common.core.resources`.
"""
