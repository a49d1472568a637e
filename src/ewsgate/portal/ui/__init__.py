"""The portal's server-rendered web UI."""
