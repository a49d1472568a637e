"""devicesim."""
